package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/internal/atomicfile"
)

// Session is a login through an identity provider (device login): who
// signed in, as last checked with the provider, and the provider's refresh
// token (sealed) to check again with. Refresh tokens bound to it (their
// `sid`) are good while it lives.
type Session struct {
	ID        string `json:"id"`
	Subject   string `json:"subject"`
	Connector string `json:"connector"`
	Service   string `json:"service"`
	// Name, Groups and Claims are the identity as last validated.
	Name   string         `json:"name,omitempty"`
	Groups []string       `json:"groups,omitempty"`
	Claims map[string]any `json:"claims,omitempty"`
	// Refresh is the provider's refresh token, sealed (Sealer, purpose
	// sessionPurpose + ID): never stored in clear.
	Refresh       []byte    `json:"refresh"`
	Created       time.Time `json:"created"`
	LastUsed      time.Time `json:"last_used"`
	LastValidated time.Time `json:"last_validated"`
	// Expires is the end of the session's maximum lifetime: stores drop
	// it then, used or not.
	Expires time.Time `json:"expires"`
}

// expired reports whether the session is past its maximum lifetime.
func (s *Session) expired(now time.Time) bool { return !s.Expires.IsZero() && !now.Before(s.Expires) }

// Identity is the session's identity as last validated.
func (s *Session) Identity() identity.Identity {
	return identity.Identity{Subject: s.Subject, Name: s.Name, Groups: s.Groups, Claims: s.Claims, Connector: s.Connector}
}

// setIdentity records id as the session's validated identity.
func (s *Session) setIdentity(id identity.Identity) {
	s.Subject, s.Name, s.Groups, s.Claims = id.Subject, id.Name, id.Groups, id.Claims
}

// sessionPurpose is the additional data a session's refresh token is sealed with.
const sessionPurpose = "tollgate-session-refresh:"

// SessionStore keeps sessions: a file in the state directory for one
// broker, Redis for replicas.
type SessionStore interface {
	// Get returns the session, or nil when there is none (ended, revoked).
	Get(ctx context.Context, id string) (*Session, error)
	// Create stores a new session.
	Create(ctx context.Context, s *Session) error
	// Update replaces a session that still exists: ok=false when it
	// ended meanwhile (a revocation is never undone by a re-validation).
	Update(ctx context.Context, s *Session) (ok bool, err error)
	// Touch records a use of the session, changing nothing else.
	Touch(ctx context.Context, id string, at time.Time) error
	// Delete ends a session; ending one that is gone is no error.
	Delete(ctx context.Context, id string) error
	List(ctx context.Context) ([]*Session, error)
	// Lock makes the caller the only one, among all replicas sharing the
	// store, re-validating session id until unlock; it waits for another
	// holder (at most until ctx ends).
	Lock(ctx context.Context, id string) (unlock func(), err error)
}

// FileSessions keeps sessions in one JSON file (0600) in the state
// directory, read on every Get so `tollgate session revoke` takes effect at
// the next refresh, and replaced atomically under a lock on every change.
type FileSessions struct {
	// Now is the clock sessions expire by; time.Now when nil.
	Now   func() time.Time
	path  string
	mu    sync.Mutex
	locks map[string]chan struct{}
}

func (f *FileSessions) now() time.Time {
	if f.Now == nil {
		return time.Now()
	}
	return f.Now()
}

// NewFileSessions keeps sessions in path.
func NewFileSessions(path string) *FileSessions {
	return &FileSessions{path: path, locks: map[string]chan struct{}{}}
}

func (f *FileSessions) read() (map[string]*Session, error) {
	data, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]*Session{}, nil
	}
	if err != nil {
		return nil, err
	}
	return parseSessions(f.path, data)
}

func parseSessions(path string, data []byte) (map[string]*Session, error) {
	m := map[string]*Session{}
	if len(data) == 0 {
		return m, nil
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("sessions %s: %w", path, err)
	}
	return m, nil
}

// Get implements SessionStore.
func (f *FileSessions) Get(_ context.Context, id string) (*Session, error) {
	m, err := f.read()
	if err != nil {
		return nil, err
	}
	if s := m[id]; s != nil && !s.expired(f.now()) {
		return s, nil
	}
	return nil, nil
}

// List implements SessionStore, oldest first.
func (f *FileSessions) List(_ context.Context) ([]*Session, error) {
	m, err := f.read()
	if err != nil {
		return nil, err
	}
	out := make([]*Session, 0, len(m))
	now := f.now()
	for _, s := range m {
		if !s.expired(now) {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b *Session) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// Create implements SessionStore.
func (f *FileSessions) Create(_ context.Context, s *Session) error {
	return f.edit(func(m map[string]*Session) { m[s.ID] = s })
}

// Update implements SessionStore.
func (f *FileSessions) Update(_ context.Context, s *Session) (bool, error) {
	ok := false
	err := f.edit(func(m map[string]*Session) {
		var prev *Session
		if prev, ok = m[s.ID]; ok {
			// A use recorded since s was read stays recorded.
			next := *s
			if prev.LastUsed.After(next.LastUsed) {
				next.LastUsed = prev.LastUsed
			}
			m[s.ID] = &next
		}
	})
	return ok, err
}

// Touch implements SessionStore.
func (f *FileSessions) Touch(_ context.Context, id string, at time.Time) error {
	return f.edit(func(m map[string]*Session) {
		if s := m[id]; s != nil && at.After(s.LastUsed) {
			s.LastUsed = at
		}
	})
}

// Delete implements SessionStore.
func (f *FileSessions) Delete(_ context.Context, id string) error {
	return f.edit(func(m map[string]*Session) { delete(m, id) })
}

func (f *FileSessions) edit(change func(map[string]*Session)) error {
	return atomicfile.Edit(f.path, 0o600, func(old []byte) ([]byte, error) {
		m, err := parseSessions(f.path, old)
		if err != nil {
			return nil, err
		}
		change(m)
		now := f.now()
		for id, s := range m {
			if s.expired(now) {
				delete(m, id)
			}
		}
		data, err := json.MarshalIndent(m, "", "  ")
		return append(data, '\n'), err
	})
}

// Lock implements SessionStore for the one broker that owns the file.
func (f *FileSessions) Lock(ctx context.Context, id string) (func(), error) {
	for {
		f.mu.Lock()
		held, busy := f.locks[id]
		if !busy {
			done := make(chan struct{})
			f.locks[id] = done
			f.mu.Unlock()
			return func() {
				f.mu.Lock()
				delete(f.locks, id)
				f.mu.Unlock()
				close(done)
			}, nil
		}
		f.mu.Unlock()
		select {
		case <-held:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// RevokeUser ends every session of subject and returns how many.
func RevokeUser(ctx context.Context, store SessionStore, subject string) (int, error) {
	all, err := store.List(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range all {
		if s.Subject == subject {
			if err := store.Delete(ctx, s.ID); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}
