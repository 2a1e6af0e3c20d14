package probe_test

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/probe"
)

// run runs s on h until the test ends, and says on the channel it returns
// each time it checks; the test fails if Run outlives its context.
func run(t *testing.T, s probe.Schedule, h *probe.Health) <-chan struct{} {
	checks := make(chan struct{}, 100)
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan struct{})
	go func() {
		s.Run(ctx, h, func(context.Context) { checks <- struct{}{} })
		close(ended)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-ended:
		case <-time.After(time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	return checks
}

func waitChecks(t *testing.T, checks <-chan struct{}, n int, what string) {
	t.Helper()
	for range n {
		select {
		case <-checks:
		case <-time.After(time.Second):
			t.Fatalf("%s: not checked within a second", what)
		}
	}
}

// TestScheduleChecksWhileDown: a backend that answered and was called
// lately is not checked; once a call failed, it is checked every interval.
func TestScheduleChecksWhileDown(t *testing.T) {
	h := probe.NewHealth()
	checks := run(t, probe.Schedule{Interval: 10 * time.Millisecond, Idle: time.Hour}, h)
	time.Sleep(100 * time.Millisecond)
	if n := len(checks); n != 0 {
		t.Fatalf("up and called lately: %d checks, want none", n)
	}
	h.Record(probe.Error, time.Millisecond)
	waitChecks(t, checks, 3, "down")
	h.Record(probe.OK, time.Millisecond)
	for len(checks) > 0 { // checks already under way when it answered
		<-checks
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(checks); n > 1 {
		t.Fatalf("up again: %d checks, want at most the one under way", n)
	}
}

// TestScheduleChecksWhenIdle: a backend that answered is checked once no
// call reached it for Idle, and calls put that off.
func TestScheduleChecksWhenIdle(t *testing.T) {
	h := probe.NewHealth()
	checks := run(t, probe.Schedule{Interval: 10 * time.Millisecond, Idle: 150 * time.Millisecond}, h)
	for range 10 { // a call every 30 ms: never idle
		time.Sleep(30 * time.Millisecond)
		h.Record(probe.OK, time.Millisecond)
	}
	if n := len(checks); n != 0 {
		t.Fatalf("called every 30 ms: %d checks, want none", n)
	}
	waitChecks(t, checks, 1, "idle")
}
