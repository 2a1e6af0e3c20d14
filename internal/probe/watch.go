package probe

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Watcher is a Recorder whose backend is also checked on its own, so its
// health is known without traffic (see Watch).
type Watcher interface {
	Recorder
	// Watch calls check in a goroutine of its own until ctx ends, when
	// the Watcher's Schedule says the backend is due.
	Watch(ctx context.Context, check func(context.Context))
}

// Watch has r call check until ctx ends, when r is a Watcher (the broker
// exports metrics); otherwise it does nothing. check makes the cheapest
// real call to the backend and records it through r like any other call,
// so a backend that is back reads up again with nobody calling it.
func Watch(ctx context.Context, r Recorder, check func(context.Context)) {
	if w, ok := r.(Watcher); ok {
		w.Watch(ctx, check)
	}
}

// Schedule says when a backend is checked on its own.
type Schedule struct {
	// Interval is how often a backend whose last call failed is checked.
	Interval time.Duration
	// Idle: a backend that answered is checked once no call reached it
	// for this long, so an outage with no traffic is seen too.
	Idle time.Duration
}

// Health is what the calls to one backend say of it: whether the last one
// failed, and when the last one ended. It is a Recorder.
type Health struct {
	down atomic.Bool
	last atomic.Int64 // time.Time.UnixNano
}

// NewHealth is a backend not called yet: up, and idle from now.
func NewHealth() *Health {
	h := &Health{}
	h.last.Store(time.Now().UnixNano())
	return h
}

// Record notes how a call ended.
func (h *Health) Record(o Outcome, _ time.Duration) {
	h.down.Store(o != OK)
	h.last.Store(time.Now().UnixNano())
}

// due says whether s has h's backend checked now.
func (h *Health) due(s Schedule, now time.Time) bool {
	return h.down.Load() || now.Sub(time.Unix(0, h.last.Load())) >= s.Idle
}

// Run calls check whenever h's backend is due, looking every Interval
// (±10%, so replicas started together do not ask together), until ctx
// ends. One check at a time: check bounds its own calls.
func (s Schedule) Run(ctx context.Context, h *Health, check func(context.Context)) {
	t := time.NewTimer(jitter(s.Interval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if h.due(s, now) {
				check(ctx)
			}
		}
		t.Reset(jitter(s.Interval))
	}
}

func jitter(d time.Duration) time.Duration {
	if d < 10 {
		return d
	}
	return d - d/10 + rand.N(d/5)
}
