// Package identity resolves who is calling: the Identity every adapter
// produces, the connector interfaces adapters implement, and the chain that tries them.
package identity

import (
	"context"
	"errors"
	"time"
)

// Identity is what every adapter returns and exactly what the policy sees.
type Identity struct {
	Subject   string         `json:"subject"`
	Name      string         `json:"name"`
	Groups    []string       `json:"groups"`
	Connector string         `json:"connector"`
	Anonymous bool           `json:"anonymous"`
	Claims    map[string]any `json:"claims"`
	// Expiry, when set, is when the credential behind this identity expires
	// (an OIDC token's exp). Such an identity cannot be looked up again: a
	// refresh token issued to it expires no later and carries its Claims.
	// Not part of the policy input.
	Expiry time.Time `json:"-"`
	// Credential, set by password connectors, fingerprints the credential
	// this identity was verified with (see Fingerprint). A refresh token
	// carries it, and the connector's Refresh refuses one whose credential
	// has changed since. Not part of the policy input.
	Credential string `json:"-"`
}

// Anonymous is the identity of a caller that sent no credentials.
func Anonymous() Identity {
	return Identity{Connector: "anonymous", Anonymous: true, Groups: []string{}, Claims: map[string]any{}}
}

// ErrUnknownUser is returned (with ok=false) by a PasswordConnector that does
// not know the user at all, so a Chain can ask the next connector. It is never
// shown to clients: they see "wrong credentials" either way.
var ErrUnknownUser = errors.New("unknown user")

// ErrUnavailable marks an identity backend that could not answer. The broker
// maps it to 503 so an outage is not mistaken for a wrong password.
var ErrUnavailable = errors.New("identity backend unavailable")

// PasswordConnector checks a user name and password. ok=false with a nil error
// means wrong credentials; ok=false with ErrUnknownUser means the connector
// does not know the user; any other error means the backend could not answer.
type PasswordConnector interface {
	Login(ctx context.Context, user, password string) (id Identity, ok bool, err error)
}

// Decoy is implemented by a PasswordConnector whose refusals take time (a
// slow hash, a round trip to a directory). Decoy spends what Login spends to
// refuse a name the connector does not know, and checks nothing. A Chain
// calls it on the connectors after the one that refused a known user, so a
// refusal costs the same whichever connector knew the name, or none did.
type Decoy interface {
	Decoy(ctx context.Context, user, password string)
}

// TokenConnector verifies a bearer token (OIDC, workload identity). ok=false
// means the token is not valid; err means the verifier could not answer.
type TokenConnector interface {
	Verify(ctx context.Context, rawToken string) (id Identity, ok bool, err error)
}

// RefreshConnector re-checks an identity when a refresh token is used, so a
// removed or disabled user loses access at the next refresh. ok=false means
// the user is gone; err means the backend could not answer.
type RefreshConnector interface {
	Refresh(ctx context.Context, prev Identity) (id Identity, ok bool, err error)
}

// RejectedError is returned by a connector that recognised the credentials
// but refuses them for a reason the caller may know (a robot that expired or
// was revoked). The broker answers 401 with Reason. Connectors return it only
// after the secret checked out, so it reveals nothing to a guesser.
type RejectedError struct {
	Reason string
}

func (e *RejectedError) Error() string { return e.Reason }

// Unguessable is implemented by password connectors whose secrets are
// generated with so much entropy that guessing them is hopeless (robots).
// Failed logins for the names such a connector owns are throttled per
// client address only: counting them per name would let anyone who knows
// the name lock the account out.
type Unguessable interface {
	OwnsName(user string) bool
}

// Uncached is implemented by connectors whose every answer must be fresh
// (for example because a credential may expire at any second); the chain
// then never serves their logins from the credential cache.
type Uncached interface {
	SkipCredentialCache()
}

// Normalize gives nil Groups and Claims their empty values, so the policy
// input always has the same shape whatever the connector filled in.
func Normalize(id Identity) Identity {
	if id.Groups == nil {
		id.Groups = []string{}
	}
	if id.Claims == nil {
		id.Claims = map[string]any{}
	}
	return id
}
