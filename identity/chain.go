package identity

import (
	"context"
	"errors"
	"fmt"
)

// Connector is one configured identity adapter under its name, with the
// capabilities it has; a nil field is one it lacks. NewConnector fills them,
// so the chain never probes an adapter again.
type Connector struct {
	Name     string
	Password PasswordConnector
	Token    TokenConnector
	Refresh  RefreshConnector
	Decoy    Decoy
	Names    Unguessable // the names whose secrets cannot be guessed
	Uncached bool        // its logins are never served from the credential cache
	// Device signs users in with the device authorization grant; nil for
	// a connector without device login.
	Device DeviceConnector
}

// NewConnector finds adapter's capabilities once. An adapter that checks no
// password and verifies no token would never be asked: it is an error, not
// a connector silently missing from the chain. Each adapter package asserts
// its capabilities at compile time, so a changed signature fails the build.
func NewConnector(name string, adapter any) (Connector, error) {
	c := Connector{Name: name}
	c.Password, _ = adapter.(PasswordConnector)
	c.Token, _ = adapter.(TokenConnector)
	c.Refresh, _ = adapter.(RefreshConnector)
	c.Decoy, _ = adapter.(Decoy)
	c.Names, _ = adapter.(Unguessable)
	_, c.Uncached = adapter.(Uncached)
	if d, ok := adapter.(interface{ DeviceLogin() DeviceConnector }); ok {
		c.Device = d.DeviceLogin()
	}
	if c.Password == nil && c.Token == nil {
		return Connector{}, fmt.Errorf("connector %s: %T checks no password and verifies no token", name, adapter)
	}
	return c, nil
}

// Chain tries the configured connectors in order: the first that knows a user
// decides. Verified passwords are remembered in a CredentialCache.
//
// A refusal costs the same whether a name exists or not: each connector
// spends on a name it does not know what a wrong password of its own users
// costs, and after a connector refuses a known user the later ones spend it
// too (Decoy). So every refusal costs what asking every connector costs.
type Chain struct {
	connectors []Connector
	cache      *CredentialCache
}

// NewChain builds a chain over connectors. cache may be nil.
func NewChain(connectors []Connector, cache *CredentialCache) *Chain {
	return &Chain{connectors: connectors, cache: cache}
}

// Login checks a password against the connectors in order. ok=false with a
// nil error means wrong credentials; an error wrapping ErrUnavailable means a
// backend that knew nothing better could not answer.
func (c *Chain) Login(ctx context.Context, user, password string) (Identity, bool, error) {
	if user == "" || password == "" {
		return Identity{}, false, nil
	}
	for i, conn := range c.connectors {
		if conn.Password == nil {
			continue
		}
		if !conn.Uncached {
			if id, hit := c.cache.Get(conn.Name, user, password); hit {
				return id, true, nil
			}
		}
		id, ok, err := conn.Password.Login(ctx, user, password)
		var rejected *RejectedError
		switch {
		case errors.Is(err, ErrUnknownUser):
			continue
		case errors.As(err, &rejected):
			return Identity{}, false, rejected
		case err != nil:
			return Identity{}, false, fmt.Errorf("connector %s: %w", conn.Name, err)
		case !ok:
			c.decoy(ctx, c.connectors[i+1:], user, password)
			return Identity{}, false, nil
		}
		id.Connector = conn.Name
		if !conn.Uncached {
			c.cache.Put(conn.Name, user, password, id)
		}
		return id, true, nil
	}
	// No connector knows the name; each has spent its refusal's cost.
	return Identity{}, false, nil
}

// decoy makes the connectors that were not asked spend what they spend on a
// name they do not know, so that a wrong password refused by an early
// connector costs what a name no connector knows costs.
func (c *Chain) decoy(ctx context.Context, rest []Connector, user, password string) {
	for _, conn := range rest {
		if conn.Decoy != nil {
			conn.Decoy.Decoy(ctx, user, password)
		}
	}
}

// VerifyToken asks the token connectors in order. The first that accepts the
// token decides; ok=false means no connector accepted it.
func (c *Chain) VerifyToken(ctx context.Context, raw string) (Identity, bool, error) {
	var firstErr error
	for _, conn := range c.connectors {
		if conn.Token == nil {
			continue
		}
		id, ok, err := conn.Token.Verify(ctx, raw)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("connector %s: %w", conn.Name, err)
			}
			continue
		}
		if ok {
			id.Connector = conn.Name
			return id, true, nil
		}
	}
	return Identity{}, false, firstErr
}

// HasTokenConnectors reports whether any connector verifies bearer tokens.
func (c *Chain) HasTokenConnectors() bool {
	for _, conn := range c.connectors {
		if conn.Token != nil {
			return true
		}
	}
	return false
}

// Unguessable reports whether user is a name whose secret cannot be guessed
// (a robot's), so its failures must not be counted against the name.
func (c *Chain) Unguessable(user string) bool {
	for _, conn := range c.connectors {
		if conn.Names != nil && conn.Names.OwnsName(user) {
			return true
		}
	}
	return false
}

// Refresh re-checks prev with the connector that produced it. A connector that
// is no longer configured, or cannot re-check, fails the refresh.
func (c *Chain) Refresh(ctx context.Context, prev Identity) (Identity, bool, error) {
	for _, conn := range c.connectors {
		if conn.Name != prev.Connector {
			continue
		}
		if conn.Refresh == nil {
			return Identity{}, false, nil
		}
		id, ok, err := conn.Refresh.Refresh(ctx, prev)
		var rejected *RejectedError
		if errors.As(err, &rejected) {
			return Identity{}, false, rejected
		}
		if err != nil {
			return Identity{}, false, fmt.Errorf("connector %s: %w", conn.Name, err)
		}
		id.Connector = conn.Name
		return id, ok, nil
	}
	return Identity{}, false, nil
}
