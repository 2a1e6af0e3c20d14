package broker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
)

// Throttle limits failed logins, against password spraying and guessing.
// Failures are counted per user name and per client address in fixed
// windows; a key that reached its limit is refused (429 with Retry-After)
// until its window ends. A (user, address) pair that logged in successfully
// is remembered and not held back by the per-user limit, so an attacker who
// sprays a user's name from elsewhere does not lock the user out. Backend
// outages are never counted: only wrong credentials are.
type Throttle struct {
	Store              CounterStore
	Window             time.Duration
	MaxPerUser         int
	MaxPerAddress      int
	KnownAddressWindow time.Duration
}

// CounterStore keeps the throttle's counters: in memory for one broker, in
// Redis when several replicas must share them.
type CounterStore interface {
	// Incr adds one to key, starting a window of length window when the key
	// is new, and returns the count and the time left in the window.
	Incr(ctx context.Context, key string, window time.Duration) (int, time.Duration, error)
	// Get returns the count and the time left; 0 when the key is absent.
	Get(ctx context.Context, key string) (int, time.Duration, error)
	// Mark sets key for window (a flag); Marked reports whether it is set.
	Mark(ctx context.Context, key string, window time.Duration) error
	Marked(ctx context.Context, key string) (bool, error)
}

// key hashes the parts so user names and addresses never appear in a
// shared store's key space.
func throttleKey(kind string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return kind + ":" + hex.EncodeToString(h.Sum(nil)[:16])
}

// Check says, with user "", whether a login from addr may be attempted
// now and, with a user, whether one for user from addr may (callers ask for
// the address first); when not, how long to wait. A store
// error lets the attempt through: throttling is a defence against
// guessing, and bcrypt still bounds its rate.
func (t *Throttle) Check(ctx context.Context, user, addr string) (wait time.Duration, err error) {
	if t == nil {
		return 0, nil
	}
	if user == "" {
		n, left, err := t.Store.Get(ctx, throttleKey("fa", addr))
		if err != nil || n < t.MaxPerAddress {
			return 0, err
		}
		return left, nil
	}
	user = throttleName(user)
	n, left, err := t.Store.Get(ctx, throttleKey("fu", user))
	if err != nil || n < t.MaxPerUser {
		return 0, err
	}
	if known, err := t.Store.Marked(ctx, throttleKey("ok", user, addr)); err != nil || known {
		return 0, err
	}
	return left, nil
}

// Failure counts a wrong credential for user (may be "") from addr.
func (t *Throttle) Failure(ctx context.Context, user, addr string) error {
	if t == nil {
		return nil
	}
	if _, _, err := t.Store.Incr(ctx, throttleKey("fa", addr), t.Window); err != nil {
		return err
	}
	if user == "" {
		return nil
	}
	_, _, err := t.Store.Incr(ctx, throttleKey("fu", throttleName(user)), t.Window)
	return err
}

// Success remembers that user logs in from addr.
func (t *Throttle) Success(ctx context.Context, user, addr string) error {
	if t == nil || user == "" {
		return nil
	}
	return t.Store.Mark(ctx, throttleKey("ok", throttleName(user), addr), t.KnownAddressWindow)
}

// throttleName is the form of a user name the per-user counters use: the
// loosest way any connector compares names. LDAP matches uid ignoring case
// and leading, trailing and repeated spaces, so "eve", "EVE" and " Eve "
// are one user to it and must share one budget. Names that differ only so
// are thereby one budget for case-sensitive connectors too: stricter, never
// looser.
func throttleName(user string) string {
	return strings.ToLower(strings.Join(strings.Fields(user), " "))
}

// FallbackCounters keeps counters in a shared store (Redis) and, while it
// does not answer, in this process's memory: an outage of the shared store
// must not switch the throttle off. Counts from both are combined, so the
// failures counted locally during an outage still hold once it ends.
type FallbackCounters struct {
	Shared, Local CounterStore
}

// Incr implements CounterStore.
func (f *FallbackCounters) Incr(ctx context.Context, key string, window time.Duration) (int, time.Duration, error) {
	n, left, err := f.Shared.Incr(ctx, key, window)
	if err != nil {
		return f.Local.Incr(ctx, key, window)
	}
	if ln, lleft, _ := f.Local.Get(ctx, key); ln > 0 {
		return n + ln, max(left, lleft), nil
	}
	return n, left, nil
}

// Get implements CounterStore.
func (f *FallbackCounters) Get(ctx context.Context, key string) (int, time.Duration, error) {
	ln, lleft, _ := f.Local.Get(ctx, key)
	n, left, err := f.Shared.Get(ctx, key)
	if err != nil {
		return ln, lleft, nil
	}
	return n + ln, max(left, lleft), nil
}

// Mark implements CounterStore.
func (f *FallbackCounters) Mark(ctx context.Context, key string, window time.Duration) error {
	if err := f.Shared.Mark(ctx, key, window); err != nil {
		return f.Local.Mark(ctx, key, window)
	}
	return nil
}

// Marked implements CounterStore.
func (f *FallbackCounters) Marked(ctx context.Context, key string) (bool, error) {
	if ok, _ := f.Local.Marked(ctx, key); ok {
		return true, nil
	}
	ok, err := f.Shared.Marked(ctx, key)
	return ok && err == nil, nil
}

// MemoryCounters is a CounterStore for one process, bounded in size: when
// full, the oldest counters are dropped (an attacker who floods it with
// addresses gains at most a fresh window for old keys).
type MemoryCounters struct {
	mu sync.Mutex
	// Failure counters and known-address marks are kept apart, so a flood
	// of failures cannot evict the marks that keep real users in.
	items, marks *expirable.LRU[string, counter]
	now          func() time.Time
}

type counter struct {
	n   int
	end time.Time
}

// NewMemoryCounters keeps at most size counters, none longer than maxAge.
func NewMemoryCounters(size int, maxAge time.Duration) *MemoryCounters {
	return &MemoryCounters{
		items: expirable.NewLRU[string, counter](size, nil, maxAge),
		marks: expirable.NewLRU[string, counter](size, nil, maxAge),
		now:   time.Now,
	}
}

func (m *MemoryCounters) live(lru *expirable.LRU[string, counter], key string) (counter, bool) {
	c, ok := lru.Get(key)
	if !ok || !m.now().Before(c.end) {
		return counter{}, false
	}
	return c, true
}

// Incr implements CounterStore.
func (m *MemoryCounters) Incr(_ context.Context, key string, window time.Duration) (int, time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.live(m.items, key)
	if !ok {
		c = counter{end: m.now().Add(window)}
	}
	c.n++
	m.items.Add(key, c)
	return c.n, c.end.Sub(m.now()), nil
}

// Get implements CounterStore.
func (m *MemoryCounters) Get(_ context.Context, key string) (int, time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.live(m.items, key)
	if !ok {
		return 0, 0, nil
	}
	return c.n, c.end.Sub(m.now()), nil
}

// Mark implements CounterStore.
func (m *MemoryCounters) Mark(_ context.Context, key string, window time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.marks.Add(key, counter{n: 1, end: m.now().Add(window)})
	return nil
}

// Marked implements CounterStore.
func (m *MemoryCounters) Marked(_ context.Context, key string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.live(m.marks, key)
	return ok, nil
}
