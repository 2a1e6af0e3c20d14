package authz

import (
	"context"
	"sync"
)

// Outcome is what became of a request after its decision: what a decision
// log joins to the decision but the Authorizer cannot know, since the
// broker signs after deciding.
type Outcome struct {
	// TokenID is the jti of the access token the client received, "" when
	// it received none.
	TokenID string
	// SessionID is the device-login session behind the request's refresh
	// token, "" when it used none. Never the session's secret.
	SessionID string
}

type outcomeKey struct{}

// outcomes holds what waits for a request's outcome.
type outcomes struct {
	mu      sync.Mutex
	done    bool
	outcome Outcome
	waiting []func(Outcome)
}

// WithOutcome returns ctx in which an Authorizer may wait for the request's
// outcome (OnOutcome), and report, which gives it. The caller calls report
// once, when the request is answered or failed: whatever waits runs then,
// in report's goroutine.
func WithOutcome(ctx context.Context) (_ context.Context, report func(Outcome)) {
	o := &outcomes{}
	return context.WithValue(ctx, outcomeKey{}, o), o.report
}

func (o *outcomes) report(out Outcome) {
	o.mu.Lock()
	if o.done {
		o.mu.Unlock()
		return
	}
	o.done, o.outcome = true, out
	waiting := o.waiting
	o.waiting = nil
	o.mu.Unlock()
	for _, f := range waiting {
		f(out)
	}
}

// OnOutcome has f called with the request's outcome when ctx comes from
// WithOutcome (at once when it was already reported), and reports whether
// it will be; otherwise nobody reports one and the caller goes on without.
func OnOutcome(ctx context.Context, f func(Outcome)) bool {
	o, _ := ctx.Value(outcomeKey{}).(*outcomes)
	if o == nil {
		return false
	}
	o.mu.Lock()
	if !o.done {
		o.waiting = append(o.waiting, f)
		o.mu.Unlock()
		return true
	}
	out := o.outcome
	o.mu.Unlock()
	f(out)
	return true
}
