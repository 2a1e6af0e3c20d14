// Package authz is the contract between the broker and the policy engine:
// the input a policy sees, the decision it returns, and the Authorizer that
// turns one into the other. Both sides import it; it imports neither, so the
// broker never builds OPA in.
package authz

import (
	"context"
	"errors"
	"time"

	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/scope"
)

// Authorizer decides which of the requested actions a caller may have.
type Authorizer interface {
	Authorize(ctx context.Context, in Input) (Decision, error)
}

// ErrNoPolicy means no policy has been loaded yet: every request is refused.
var ErrNoPolicy = errors.New("no policy loaded")

// Input is the document the policy sees as `input`.
type Input struct {
	Service  string            `json:"service"`
	Identity identity.Identity `json:"identity"`
	Scopes   []scope.Scope     `json:"scopes"`
	Client   Client            `json:"client"`
}

// Client describes the network side of the request.
type Client struct {
	IP        string `json:"ip"`
	UserAgent string `json:"user_agent"`
}

// Decision is the policy's answer for one Input.
type Decision struct {
	// Allowed holds, for each scope of the input in order, the set of
	// actions the policy allows on it. Nil means nothing.
	Allowed []map[string]bool
	// TokenTTL is the lifetime the policy asked for, 0 when it did not.
	TokenTTL time.Duration
	// Revision of the policy that decided.
	Revision string
	// Cached is true when the decision came from the cache.
	Cached bool
}

type requestIDKey struct{}

// WithRequestID returns ctx carrying the id of the request being decided,
// so a decision log line can be joined with the broker's request log.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id in ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}
