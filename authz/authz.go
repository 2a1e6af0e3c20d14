// Package authz is the contract between the broker and the policy engine:
// the input a policy sees, the decision it returns, and the Authorizer that
// turns one into the other. Both sides import it; it imports neither, so the
// broker never builds OPA in.
package authz

import (
	"context"
	"errors"
	"slices"
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

type remoteAddrKey struct{}

// WithRemoteAddr returns ctx carrying the address (host:port) of the peer
// that sent the request being decided: a decision log's requested_by, as
// OPA's server logs it.
func WithRemoteAddr(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, remoteAddrKey{}, addr)
}

// RemoteAddr returns the peer address in ctx, or "".
func RemoteAddr(ctx context.Context) string {
	addr, _ := ctx.Value(remoteAddrKey{}).(string)
	return addr
}

// Grant is what became of one requested scope.
type Grant struct {
	Scope scope.Scope
	// Granted is the requested actions the policy allows (see
	// scope.Intersect), never nil; a token carries exactly these.
	Granted []string
	// Denied is the requested actions not granted, never nil. A requested
	// "*" is denied only when nothing at all was granted on its scope.
	Denied []string
}

// Grants intersects each requested scope with what d allows on it. The
// broker signs what this grants and `policy eval` prints it, so the two
// cannot disagree.
func (d Decision) Grants(scopes []scope.Scope) []Grant {
	out := make([]Grant, len(scopes))
	for i, sc := range scopes {
		var allowed map[string]bool
		if i < len(d.Allowed) {
			allowed = d.Allowed[i]
		}
		g := Grant{Scope: sc, Granted: scope.Intersect(sc.Actions, allowed), Denied: []string{}}
		if g.Granted == nil {
			g.Granted = []string{}
		}
		for _, a := range sc.Actions {
			if !slices.Contains(g.Granted, a) && (a != "*" || len(g.Granted) == 0) {
				g.Denied = append(g.Denied, a)
			}
		}
		out[i] = g
	}
	return out
}

// Verdict names what became of a request as a whole: "granted" when every
// requested action was, "denied" when none was, "partial" otherwise.
func Verdict(grants []Grant) string {
	var granted, denied bool
	for _, g := range grants {
		granted = granted || len(g.Granted) > 0
		denied = denied || len(g.Denied) > 0
	}
	switch {
	case !granted:
		return "denied"
	case denied:
		return "partial"
	}
	return "granted"
}
