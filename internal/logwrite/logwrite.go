// Package logwrite is the broker's log output when it is a file (stderr,
// usually): a log call copies its line into a buffer and returns, and one
// goroutine writes whatever has gathered in a single write. Under load the
// lines of many requests go out in one system call instead of one each
// (issue 20: the write of the per-request "token" line was about 4 % of the
// CPU at the distinct-repository peak), and no request waits for the write.
//
// Nothing is dropped: the buffer is bounded in bytes (New's max), and a log
// call that finds it full waits for the writer, as it would wait for a slow
// stderr without this package. What a crash can lose is only what was
// buffered in that instant: the writer starts as soon as a line arrives,
// there is no timer. Close writes the rest and returns once it is out;
// afterwards Write writes directly.
package logwrite

import (
	"io"
	"sync"
)

// Writer is safe for concurrent use. Each Write's bytes are written whole
// and in the order the Writes were made.
type Writer struct {
	w   io.Writer
	max int

	mu      sync.Mutex
	more    sync.Cond // pending has bytes, or closing
	room    sync.Cond // the writer took pending, or closing
	pending []byte
	closed  bool
	done    chan struct{}
	direct  sync.Mutex // orders the direct writes after Close
}

// New starts the writer goroutine for w. max bounds the buffered bytes; a
// single line longer than max is still taken, alone.
func New(w io.Writer, max int) *Writer {
	l := &Writer{w: w, max: max, done: make(chan struct{})}
	l.more.L, l.room.L = &l.mu, &l.mu
	go l.run()
	return l
}

// Write buffers a copy of p for the writer goroutine. It waits only while
// the buffer is full. It never fails: a failing output (a closed stderr)
// loses lines, as slog ignores a handler's write error anyway.
func (l *Writer) Write(p []byte) (int, error) {
	l.mu.Lock()
	for len(l.pending) > 0 && len(l.pending)+len(p) > l.max && !l.closed {
		l.room.Wait()
	}
	if !l.closed {
		l.pending = append(l.pending, p...)
		l.more.Signal()
		l.mu.Unlock()
		return len(p), nil
	}
	l.mu.Unlock()
	<-l.done // what was buffered goes out first
	l.direct.Lock()
	defer l.direct.Unlock()
	return l.w.Write(p)
}

func (l *Writer) run() {
	defer close(l.done)
	var spare []byte
	l.mu.Lock()
	for {
		for len(l.pending) == 0 && !l.closed {
			l.more.Wait()
		}
		if len(l.pending) == 0 { // closed, and everything is out
			l.mu.Unlock()
			return
		}
		batch := l.pending
		l.pending = spare[:0]
		l.room.Broadcast()
		l.mu.Unlock()
		_, _ = l.w.Write(batch)
		spare = batch
		if cap(spare) > 4*l.max { // one huge line: do not keep its buffer
			spare = nil
		}
		l.mu.Lock()
	}
}

// Close writes what is buffered, stops the writer goroutine and returns
// when the last line is out. Later Writes write directly.
func (l *Writer) Close() error {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		l.more.Signal()
		l.room.Broadcast()
	}
	l.mu.Unlock()
	<-l.done
	return nil
}
