package robot

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/internal/atomicfile"
)

// A changed signature fails the build here, not silently in the chain.
var (
	_ identity.PasswordConnector = (*Connector)(nil)
	_ identity.RefreshConnector  = (*Connector)(nil)
	_ identity.Unguessable       = (*Connector)(nil)
	_ identity.Uncached          = (*Connector)(nil)
)

// Connector authenticates robots from a store file and reloads it when it
// changes. It implements identity.PasswordConnector, RefreshConnector and
// Uncached: expiry is checked on every request, never served from a cache.
type Connector struct {
	path  string
	state atomic.Pointer[loaded]
	// OnReload, when set, runs after each successful reload.
	OnReload func()
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

type loaded struct {
	byName map[string]Record
	stamp  string
}

// Open loads the store at path. A missing file is an empty store: robots
// appear when `tollgate robot create` writes it.
func Open(path string) (*Connector, error) {
	c := &Connector{path: path}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads the store again. On error the loaded robots stay.
func (c *Connector) Reload() error {
	stamp := atomicfile.Stamp(c.path)
	f, err := read(c.path)
	if err != nil {
		return err
	}
	m := make(map[string]Record, len(f.Robots))
	for _, r := range f.Robots {
		m[r.Name] = r
	}
	c.state.Store(&loaded{byName: m, stamp: stamp})
	if c.OnReload != nil {
		c.OnReload()
	}
	return nil
}

// Watch reloads the store whenever it changes, checking every interval.
func (c *Connector) Watch(ctx context.Context, interval time.Duration, log *slog.Logger) {
	loaded := func() string { return c.state.Load().stamp }
	atomicfile.Watch(ctx, interval, c.path, loaded, c.Reload, func(err error) {
		if err != nil {
			log.Error("robot store reload failed; keeping the loaded robots", "err", err)
			return
		}
		log.Info("robot store reloaded", "file", c.path, "robots", len(c.state.Load().byName))
	})
}

// OwnsName implements identity.Unguessable: every name with the robot
// prefix is a robot's, whose secret is 260 random bits.
func (c *Connector) OwnsName(user string) bool { return strings.HasPrefix(user, UserPrefix) }

func (c *Connector) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// SkipCredentialCache implements identity.Uncached.
func (c *Connector) SkipCredentialCache() {}

func (c *Connector) lookup(user string) (Record, bool) {
	name, ok := strings.CutPrefix(user, UserPrefix)
	if !ok {
		return Record{}, false
	}
	r, ok := c.state.Load().byName[name]
	return r, ok
}

// Login implements identity.PasswordConnector. The robot- user names
// belong to this connector: one that is not a known robot is a wrong
// credential, answered in the same time as a wrong secret, so timing does
// not tell which robots exist. Other names are ErrUnknownUser, for the next
// connector of the chain.
func (c *Connector) Login(ctx context.Context, user, password string) (identity.Identity, bool, error) {
	if err := ctx.Err(); err != nil {
		return identity.Identity{}, false, err // nobody waits for the answer
	}
	if !strings.HasPrefix(user, UserPrefix) {
		return identity.Identity{}, false, identity.ErrUnknownUser
	}
	r, known := c.lookup(user)
	if subtle.ConstantTimeCompare([]byte(hashSecret(password)), []byte(r.SecretHash)) != 1 || !known {
		return identity.Identity{}, false, nil
	}
	if err := c.usable(r); err != nil {
		return identity.Identity{}, false, err
	}
	return newIdentity(r), true, nil
}

// Refresh implements identity.RefreshConnector: a robot revoked, expired,
// removed or rotated since the refresh token was issued loses access.
func (c *Connector) Refresh(ctx context.Context, prev identity.Identity) (identity.Identity, bool, error) {
	if err := ctx.Err(); err != nil {
		return identity.Identity{}, false, err
	}
	r, ok := c.lookup(prev.Subject)
	if !ok {
		return identity.Identity{}, false, nil
	}
	if err := c.usable(r); err != nil {
		return identity.Identity{}, false, err
	}
	id := newIdentity(r)
	if err := identity.CheckCredential(ctx, prev, id.Credential); err != nil {
		return identity.Identity{}, false, err // rotated since
	}
	return id, true, nil
}

func (c *Connector) usable(r Record) error {
	now := c.now()
	switch r.Status(now) {
	case "revoked":
		return &identity.RejectedError{Reason: fmt.Sprintf("robot credential %s was revoked at %s", r.User(), r.Revoked.Format(time.RFC3339))}
	case "expired":
		return &identity.RejectedError{Reason: fmt.Sprintf("robot credential %s expired at %s: rotate it (tollgate robot rotate %s --expires ...)", r.User(), r.Expires.Format(time.RFC3339), r.Name)}
	}
	return nil
}

// newIdentity is what the policy sees of a robot: its declared scopes
// (parsed) and binding in identity.claims.robot.
func newIdentity(r Record) identity.Identity {
	scopes, _ := ParseScopes(r.Scopes) // checked when the store loaded
	claimScopes := make([]any, 0, len(scopes))
	for _, s := range scopes {
		actions := make([]any, 0, len(s.Actions))
		for _, a := range s.Actions {
			actions = append(actions, a)
		}
		claimScopes = append(claimScopes, map[string]any{"type": s.Type, "name": s.Name, "actions": actions})
	}
	robot := map[string]any{"name": r.Name, "scopes": claimScopes, "service": r.Service}
	if r.Expires != nil {
		robot["expires"] = r.Expires.Format(time.RFC3339)
	}
	return identity.Identity{
		Subject: r.User(),
		Name:    r.Description,
		Groups:  []string{},
		Claims:  map[string]any{"robot": robot},
		// The stored hash changes at every rotation. Its fingerprint is a
		// hash of a hash of 260 random bits: nothing to guess from.
		Credential: identity.Fingerprint([]byte(r.Name), []byte(r.SecretHash)),
	}
}
