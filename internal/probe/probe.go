// Package probe lets a component report the health and latency of the
// backends it calls (a directory, an identity provider, Redis, a bundle
// server) without knowing how they are exported.
package probe

import (
	"context"
	"errors"
	"net"
	"time"
)

// Outcome is how one call to a backend ended.
type Outcome string

// The outcomes of a call. A backend's refusal (a wrong password, no such
// entry, a 404) is an answer: OK. A caller that gave up is no outcome at
// all (see Classify).
const (
	OK      Outcome = "ok"
	Error   Outcome = "error"
	Timeout Outcome = "timeout"
)

// Outcomes are every Outcome, for series made before the first call.
var Outcomes = []Outcome{OK, Error, Timeout}

// Recorder notes the calls to one backend.
type Recorder interface {
	Record(o Outcome, elapsed time.Duration)
}

// Factory gives the Recorder of the backend called name (a connector's
// name, an issuer); its user knows which kind of backend it is.
type Factory func(name string) Recorder

// For is f's Recorder of name; nil (record nothing) when f is nil.
func (f Factory) For(name string) Recorder {
	if f == nil {
		return nil
	}
	return f(name)
}

// Start times one call to r's backend; the function it returns records
// how the call ended (failed: the backend's failure, nil if it answered).
// A nil r records nothing.
func Start(r Recorder) func(ctx context.Context, failed error) {
	start := time.Now()
	return func(ctx context.Context, failed error) {
		if r == nil {
			return
		}
		if o, ok := Classify(ctx, failed); ok {
			r.Record(o, time.Since(start))
		}
	}
}

// Classify says how a call that ended with failed went, and false when it
// says nothing of the backend: the caller's context was cancelled (a
// client that hung up), so the call may have been cut short by us.
func Classify(ctx context.Context, failed error) (Outcome, bool) {
	switch {
	case failed == nil:
		return OK, true
	case ctx != nil && errors.Is(ctx.Err(), context.Canceled):
		return "", false
	case errors.Is(failed, context.DeadlineExceeded), isNetTimeout(failed):
		return Timeout, true
	}
	return Error, true
}

func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
