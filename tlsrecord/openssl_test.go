package tlsrecord

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestInteropOpenSSL checks the record layer against a TLS stack that is
// not Go's: openssl s_client, forced to each suite with -ciphersuites
// (the only way here to get TLS_AES_256_GCM_SHA384 negotiated), talks to
// a crypto/tls server handshake carried on by this record layer. s_client
// also sends what crypto/tls cannot: a client-initiated KeyUpdate with
// update_requested (its "K" command), which this side must follow and
// answer before its next application data.
func TestInteropOpenSSL(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed: the non-Go interop check cannot run here")
	}
	for _, id := range allSuites {
		t.Run(tls.CipherSuiteName(id), func(t *testing.T) { interopOpenSSL(t, bin, id) })
	}
}

func interopOpenSSL(t *testing.T, bin string, id uint16) {
	ctx, addr, served := serveInBackground(t)
	// -quiet prints only application data; -no_ign_eof (after it) keeps
	// the single-letter commands (K = KeyUpdate, update_requested; Q = quit).
	cmd := exec.CommandContext(ctx, bin, "s_client", "-connect", addr, "-servername", "localhost",
		"-tls1_3", "-ciphersuites", tls.CipherSuiteName(id), "-quiet", "-no_ign_eof")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	stderrPipe, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// s_client reads its stdin in chunks and drops the rest of a chunk
	// after a command, so the line after "K" is written only once stderr
	// says KEYUPDATE.
	keyUpdated := make(chan struct{}, 1)
	stderrText := make(chan string, 1)
	go func() {
		var all strings.Builder
		sc := bufio.NewScanner(stderrPipe)
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if sc.Text() == "KEYUPDATE" {
				keyUpdated <- struct{}{}
			}
		}
		stderrText <- all.String()
	}()
	defer func() {
		stdin.Close()
		cmd.Process.Kill()
		text := <-stderrText
		cmd.Wait()
		if t.Failed() {
			t.Logf("s_client stderr:\n%s", text)
		}
	}()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitLine := func(want string) {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("s_client ended before printing %q", want)
				}
				if l == want {
					return
				}
				t.Logf("s_client printed %q", l)
			case <-time.After(testDeadline):
				t.Fatalf("no %q from s_client", want)
			}
		}
	}
	h := served()
	if h.suite != id {
		t.Fatalf("negotiated %s, want %s", tls.CipherSuiteName(h.suite), tls.CipherSuiteName(id))
	}
	r := &reader{raw: h.raw, rec: h.rec}
	send := func(s string) {
		t.Helper()
		wire, err := h.rec.Seal(nil, []byte(s))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.raw.Write(wire); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(s string) {
		t.Helper()
		if err := r.readUntil(len(s)); err != nil {
			t.Fatalf("reading %q: %v", s, err)
		}
		if string(r.plain) != s {
			t.Fatalf("read %q, want %q", r.plain, s)
		}
		r.plain = r.plain[:0]
	}

	send("hello from tlsrecord\n")
	waitLine("hello from tlsrecord")
	io.WriteString(stdin, "ping\n")
	expect("ping\n")

	// The client rekeys and asks us to: the KeyUpdate goes out with its
	// next data line.
	io.WriteString(stdin, "K\n")
	select {
	case <-keyUpdated:
	case <-time.After(testDeadline):
		t.Fatal("s_client did not take the K command")
	}
	io.WriteString(stdin, "after client KeyUpdate\n")
	expect("after client KeyUpdate\n")
	if !h.rec.Pending() {
		t.Fatal("s_client's KeyUpdate(update_requested) left nothing pending")
	}
	send("answered\n") // our KeyUpdate goes first, then this under the new key
	waitLine("answered")
	if h.rec.Pending() {
		t.Fatal("still pending after the answer")
	}

	// Our own rekey, then more both ways.
	wire, _ := h.rec.SealKeyUpdate(nil, false)
	h.raw.Write(wire)
	send("after server KeyUpdate\n")
	waitLine("after server KeyUpdate")
	io.WriteString(stdin, "still readable\n")
	expect("still readable\n")

	// Q: s_client shuts down with close_notify.
	io.WriteString(stdin, "Q\n")
	if err := r.readUntil(1); !errors.Is(err, ErrPeerClosed) {
		t.Fatalf("after Q: %v, want ErrPeerClosed", err)
	}
}
