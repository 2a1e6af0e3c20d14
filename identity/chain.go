package identity

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

// Connector is one configured identity adapter with its name. An adapter
// implements one or more of PasswordConnector, TokenConnector and RefreshConnector.
type Connector struct {
	Name    string
	Adapter any
}

// Chain tries the configured connectors in order: the first that knows a user
// decides. Verified passwords are remembered in a CredentialCache.
type Chain struct {
	connectors []Connector
	cache      *CredentialCache
	// dummyHash equalises the time of a login for an unknown user with that
	// of a known user, so timing does not reveal which names exist.
	dummyHash []byte
}

// NewChain builds a chain over connectors. cache may be nil.
func NewChain(connectors []Connector, cache *CredentialCache) *Chain {
	h, _ := bcrypt.GenerateFromPassword([]byte("tollgate-timing-equaliser"), bcrypt.DefaultCost)
	return &Chain{connectors: connectors, cache: cache, dummyHash: h}
}

// Login checks a password against the connectors in order. ok=false with a
// nil error means wrong credentials; an error wrapping ErrUnavailable means a
// backend that knew nothing better could not answer.
func (c *Chain) Login(ctx context.Context, user, password string) (Identity, bool, error) {
	if user == "" || password == "" {
		return Identity{}, false, nil
	}
	for _, conn := range c.connectors {
		pc, isPassword := conn.Adapter.(PasswordConnector)
		if !isPassword {
			continue
		}
		_, uncached := conn.Adapter.(Uncached)
		if !uncached {
			if id, hit := c.cache.Get(conn.Name, user, password); hit {
				return id, true, nil
			}
		}
		id, ok, err := pc.Login(ctx, user, password)
		var rejected *RejectedError
		switch {
		case errors.Is(err, ErrUnknownUser):
			continue
		case errors.As(err, &rejected):
			return Identity{}, false, rejected
		case err != nil:
			return Identity{}, false, fmt.Errorf("connector %s: %w", conn.Name, err)
		case !ok:
			return Identity{}, false, nil
		}
		id.Connector = conn.Name
		if !uncached {
			c.cache.Put(conn.Name, user, password, id)
		}
		return id, true, nil
	}
	_ = bcrypt.CompareHashAndPassword(c.dummyHash, []byte(password))
	return Identity{}, false, nil
}

// VerifyToken asks the token connectors in order. The first that accepts the
// token decides; ok=false means no connector accepted it.
func (c *Chain) VerifyToken(ctx context.Context, raw string) (Identity, bool, error) {
	var firstErr error
	for _, conn := range c.connectors {
		tc, isToken := conn.Adapter.(TokenConnector)
		if !isToken {
			continue
		}
		id, ok, err := tc.Verify(ctx, raw)
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
		if _, ok := conn.Adapter.(TokenConnector); ok {
			return true
		}
	}
	return false
}

// Unguessable reports whether user is a name whose secret cannot be guessed
// (a robot's), so its failures must not be counted against the name.
func (c *Chain) Unguessable(user string) bool {
	for _, conn := range c.connectors {
		if u, ok := conn.Adapter.(Unguessable); ok && u.OwnsName(user) {
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
		rc, ok := conn.Adapter.(RefreshConnector)
		if !ok {
			return Identity{}, false, nil
		}
		id, ok, err := rc.Refresh(ctx, prev)
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
