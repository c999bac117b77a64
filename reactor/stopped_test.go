package reactor

import (
	"net"
	"runtime"
	"testing"
	"time"
)

// ReadsStopped under a flood: false while reading and after PauseRead
// until the pause is carried out, then true, and from then on no Poll
// hands out another Received event although the peer keeps writing;
// false again at ResumeRead, and reading goes on.
func TestReadsStopped(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		// The test goroutine owns the loop: on io_uring it must stay on
		// the thread that creates the ring.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		l, err := openLoop(b, Config{})
		if err != nil {
			t.Fatalf("open loop: %v", err)
		}
		defer l.Close()
		if !l.ReadsStopped() {
			t.Fatal("a loop with no connection reports reads running")
		}
		cl, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		flooded := make(chan struct{})
		go func() {
			defer close(flooded)
			chunk := testPattern(64<<10, 3)
			for {
				if _, err := cl.Write(chunk); err != nil {
					return // closed at the end of the test
				}
			}
		}()
		defer func() { cl.Close(); <-flooded }()

		events := make([]Event, 64)
		var conn *Conn
		// poll runs one Poll and returns how many bytes it received.
		poll := func() int {
			t.Helper()
			n, err := l.Poll(events, 10*time.Millisecond)
			if err != nil {
				t.Fatalf("Poll: %v", err)
			}
			got := 0
			for _, ev := range events[:n] {
				switch ev.Kind {
				case Opened:
					conn = ev.Conn
				case Received:
					got += len(ev.Data)
				case Closed:
					t.Fatalf("connection closed: %v", ev.Err)
				}
			}
			clear(events[:n])
			return got
		}
		deadline := time.Now().Add(5 * time.Second)
		for received := 0; conn == nil || received == 0; received += poll() {
			if time.Now().After(deadline) {
				t.Fatal("no connection or no data within 5s")
			}
		}
		if l.ReadsStopped() {
			t.Fatal("ReadsStopped while the connection is read")
		}
		// The pause must find a read in flight. On io_uring a multishot
		// recv ends when the buffer ring runs dry (a wide bundle can take
		// a quarter of it), and the next Poll arms it again.
		for !l.io.reading(conn) {
			if time.Now().After(deadline) {
				t.Fatal("no read in flight within 5s")
			}
			poll()
		}

		conn.PauseRead()
		if l.ReadsStopped() {
			t.Fatal("ReadsStopped right after PauseRead, before any Poll carried it out")
		}
		polls := 0
		for ; !l.ReadsStopped(); polls++ {
			if time.Now().After(deadline) {
				t.Fatal("reads not stopped within 5s of PauseRead")
			}
			poll() // data received before the pause took effect is fine
		}
		if polls == 0 {
			t.Fatal("ReadsStopped without a Poll after PauseRead")
		}
		// The peer keeps writing until the socket buffers are full.
		for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
			if n := poll(); n > 0 {
				t.Fatalf("%d bytes received after ReadsStopped reported true", n)
			}
			if !l.ReadsStopped() {
				t.Fatal("ReadsStopped went back to false with the connection still paused")
			}
		}

		conn.ResumeRead()
		if l.ReadsStopped() {
			t.Fatal("ReadsStopped still true after ResumeRead")
		}
		for received := 0; received == 0; received += poll() {
			if time.Now().After(deadline.Add(5 * time.Second)) {
				t.Fatal("no data after ResumeRead")
			}
		}
	})
}
