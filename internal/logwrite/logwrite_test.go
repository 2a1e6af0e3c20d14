package logwrite

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/test/testenv"
)

// gate is an output whose writes wait while it is held, and which records
// each write it was given.
type gate struct {
	mu     sync.Mutex
	writes [][]byte
	held   chan struct{} // receives until closed: a write waits on it
	in     chan struct{} // one send per write that started
}

func newGate() *gate { return &gate{held: make(chan struct{}), in: make(chan struct{}, 1000)} }

func (g *gate) Write(p []byte) (int, error) {
	g.in <- struct{}{}
	<-g.held
	g.mu.Lock()
	defer g.mu.Unlock()
	g.writes = append(g.writes, bytes.Clone(p))
	return len(p), nil
}

func (g *gate) all() (string, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return string(bytes.Join(g.writes, nil)), len(g.writes)
}

// Lines written while the output is busy go out together in the next write,
// and no Write waits for the output meanwhile.
func TestLinesWrittenWhileTheOutputIsBusyGoOutInOneWrite(t *testing.T) {
	g := newGate()
	w := New(g, 1<<20)
	w.Write([]byte("first\n"))
	<-g.in // the writer is in the output's write with the first line
	for i := range 100 {
		if _, err := fmt.Fprintf(w, "line %d\n", i); err != nil {
			t.Fatal(err)
		}
	}
	close(g.held)
	w.Close()
	out, n := g.all()
	if n != 2 {
		t.Errorf("%d writes to the output, want 2 (the first line, then the 100 that waited)", n)
	}
	var want strings.Builder
	want.WriteString("first\n")
	for i := range 100 {
		fmt.Fprintf(&want, "line %d\n", i)
	}
	if out != want.String() {
		t.Errorf("output:\n%s\nwant:\n%s", out, want.String())
	}
}

// The buffer is bounded in bytes: a Write that does not fit waits until
// the writer takes what is buffered.
func TestAFullBufferMakesWriteWait(t *testing.T) {
	g := newGate()
	w := New(g, 100)
	w.Write([]byte("busy\n"))
	<-g.in
	w.Write(bytes.Repeat([]byte("a"), 100)) // fills the buffer exactly
	returned := make(chan struct{})
	go func() {
		w.Write([]byte("b"))
		close(returned)
	}()
	select {
	case <-returned:
		t.Fatal("a Write returned although the buffer was full and the output busy")
	case <-time.After(50 * time.Millisecond):
	}
	close(g.held)
	<-returned
	w.Close()
	if out, _ := g.all(); out != "busy\n"+strings.Repeat("a", 100)+"b" {
		t.Errorf("output %q", out)
	}
}

// A line longer than the bound is still written, whole.
func TestALineLongerThanTheBoundIsWrittenWhole(t *testing.T) {
	var out bytes.Buffer
	w := New(&out, 10)
	long := strings.Repeat("x", 1000) + "\n"
	w.Write([]byte("short\n"))
	w.Write([]byte(long))
	w.Write([]byte("after\n"))
	w.Close()
	if out.String() != "short\n"+long+"after\n" {
		t.Errorf("output %q", out.String())
	}
}

// Concurrent writers: every line comes out once, whole, each writer's lines
// in its order; Close returns when all are out, and later lines follow.
func TestConcurrentLinesAllComeOutWholeAndInOrder(t *testing.T) {
	var out testenv.SyncBuffer
	w := New(&out, 4096)
	const writers, lines = 8, 2000
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range lines {
				fmt.Fprintf(w, "writer %d line %d %s\n", g, i, strings.Repeat("-", i%50))
			}
		})
	}
	wg.Wait()
	w.Close()
	w.Write([]byte("after close\n"))
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(got) != writers*lines+1 || got[len(got)-1] != "after close" {
		t.Fatalf("%d lines, last %q; want %d and the line written after Close", len(got), got[len(got)-1], writers*lines+1)
	}
	next := make([]int, writers)
	for _, line := range got[:len(got)-1] {
		var g, i int
		var dashes string
		if n, _ := fmt.Sscanf(line, "writer %d line %d %s", &g, &i, &dashes); n < 2 || g < 0 || g >= writers {
			t.Fatalf("a broken line: %q", line)
		}
		if i != next[g] || len(line) != len(fmt.Sprintf("writer %d line %d %s", g, i, strings.Repeat("-", i%50))) {
			t.Fatalf("writer %d: line %q, want line %d whole", g, line, next[g])
		}
		next[g]++
	}
}
