package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Progress shows one live status line. On a terminal the line is rewritten
// in place with \r; anywhere else (a log file, CI) it prints a plain line at
// most once a second so logs stay short.
type Progress struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	width int       // length of the line on screen, to blank leftovers
	last  time.Time // last plain line
}

// NewProgress writes to w, detecting whether it is a terminal.
func NewProgress(w io.Writer) *Progress {
	p := &Progress{w: w}
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		p.tty = err == nil
	}
	return p
}

// Show replaces the status line.
func (p *Progress) Show(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := fmt.Sprintf(format, args...)
	if !p.tty {
		if time.Since(p.last) >= time.Second {
			p.last = time.Now()
			fmt.Fprintln(p.w, line)
		}
		return
	}
	pad := max(0, p.width-len(line))
	fmt.Fprint(p.w, "\r"+line+strings.Repeat(" ", pad))
	p.width = len(line)
}

// Log prints a message on a line of its own, above the status line.
func (p *Progress) Log(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	fmt.Fprintf(p.w, format+"\n", args...)
	p.last = time.Time{}
}

// Done clears the status line.
func (p *Progress) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
}

func (p *Progress) clear() {
	if p.tty && p.width > 0 {
		fmt.Fprint(p.w, "\r"+strings.Repeat(" ", p.width)+"\r")
		p.width = 0
	}
}
