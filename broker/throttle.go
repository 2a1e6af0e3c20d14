package broker

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
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
	// MaxStartsPerAddress bounds the device logins an address may start in
	// a window (AdmitStart); 0 means MaxPerAddress.
	MaxStartsPerAddress int
}

// CounterStore keeps the throttle's counters: in memory for one broker, in
// Redis when several replicas must share them.
type CounterStore interface {
	// Incr adds one to key, starting a window of length window when the key
	// is new, and returns the count and the time left in the window.
	Incr(ctx context.Context, key string, window time.Duration) (int, time.Duration, error)
	// Get returns the count and the time left; 0 when the key is absent.
	Get(ctx context.Context, key string) (int, time.Duration, error)
	// Decr takes one back from key, never below 0; an absent key stays absent.
	Decr(ctx context.Context, key string) error
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

// Attempt is one login attempt the throttle let through. It was counted as
// a failure before the credential was checked, so guesses sent in parallel
// cannot all pass before any of them is counted: at most the limit of them
// get an answer other than 429 in a window. A success, or an answer that was
// no guess (a backend outage, a valid token), takes the count back.
type Attempt struct {
	t          *Throttle
	addr, user string   // user: the counted name, "" until AdmitUser
	keys       []string // the counters this attempt added one to
}

// Admit counts an attempt from addr and says how long to wait when addr is
// over its limit. A store error lets the attempt through uncounted:
// throttling is a defence against guessing, and bcrypt still bounds its rate.
func (t *Throttle) Admit(ctx context.Context, addr string) (*Attempt, time.Duration, error) {
	if t == nil {
		return nil, 0, nil
	}
	a := &Attempt{t: t, addr: addr}
	key := throttleKey("fa", addressKey(addr))
	n, left, err := t.Store.Incr(ctx, key, t.Window)
	if err != nil {
		return a, 0, err
	}
	a.keys = append(a.keys, key)
	if n > t.MaxPerAddress {
		return a, left, nil
	}
	return a, 0, nil
}

// AdmitStart counts a device-login start from addr and says how long to
// wait when addr has started MaxStartsPerAddress of them in the window. A start
// needs no credential and makes the broker ask the identity provider, as
// its OAuth client, for a code: one address must not make it ask without
// bound, or the provider's rate limit on that client refuses every user.
func (t *Throttle) AdmitStart(ctx context.Context, addr string) (time.Duration, error) {
	if t == nil {
		return 0, nil
	}
	n, left, err := t.Store.Incr(ctx, throttleKey("ds", addressKey(addr)), t.Window)
	if err != nil || n <= cmp.Or(t.MaxStartsPerAddress, t.MaxPerAddress) {
		return 0, err
	}
	return left, nil
}

// AdmitUser counts the attempt against user as well, unless user is ""
// (a credential that cannot be guessed), and says how long to wait when the
// name is over its limit and addr is not one user logged in from before.
func (a *Attempt) AdmitUser(ctx context.Context, user string) (time.Duration, error) {
	if a == nil || user == "" {
		return 0, nil
	}
	user = throttleName(user)
	key := throttleKey("fu", user)
	n, left, err := a.t.Store.Incr(ctx, key, a.t.Window)
	if err != nil {
		return 0, err
	}
	a.user, a.keys = user, append(a.keys, key)
	if n <= a.t.MaxPerUser {
		return 0, nil
	}
	if known, err := a.t.Store.Marked(ctx, throttleKey("ok", user, a.addr)); err != nil || known {
		return 0, err
	}
	return left, nil
}

// Undo takes the attempt's count back: it was no guess.
func (a *Attempt) Undo(ctx context.Context) error {
	if a == nil {
		return nil
	}
	var errs []error
	for _, key := range a.keys {
		errs = append(errs, a.t.Store.Decr(ctx, key))
	}
	a.keys = nil
	return errors.Join(errs...)
}

// Succeeded takes the count back and remembers that the user logs in from
// the attempt's address.
func (a *Attempt) Succeeded(ctx context.Context) error {
	if a == nil {
		return nil
	}
	err := a.Undo(ctx)
	if a.user == "" {
		return err
	}
	return errors.Join(err, a.t.Store.Mark(ctx, throttleKey("ok", a.user, a.addr), a.t.KnownAddressWindow))
}

// addressKey is what the per-address counter counts: an IPv4 address, or
// the /64 an IPv6 address is in (one subscriber line or host usually holds
// a whole /64, and could otherwise take a fresh address for every guess).
func addressKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil || !ip.Is6() || ip.Is4In6() {
		return addr
	}
	return netip.PrefixFrom(ip, 64).Masked().String()
}

// throttleName is the form of a user name the per-user counters use: the
// loosest way any connector compares names. LDAP prepares names as RFC 4518
// says before it matches uid: compatibility-normalised (NFKC), case-folded,
// leading, trailing and repeated spaces ignored. So "eve", "EVE", " Eve "
// and the fullwidth "ｅｖｅ" are one user to slapd, and must share one
// budget. Names that differ only so are thereby one budget for
// case-sensitive connectors too: stricter, never looser.
func throttleName(user string) string {
	folded := cases.Fold().String(norm.NFKC.String(user))
	return strings.Join(strings.Fields(folded), " ")
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

// Decr implements CounterStore.
func (f *FallbackCounters) Decr(ctx context.Context, key string) error {
	if n, _, _ := f.Local.Get(ctx, key); n > 0 {
		return f.Local.Decr(ctx, key)
	}
	if err := f.Shared.Decr(ctx, key); err != nil {
		return f.Local.Decr(ctx, key)
	}
	return nil
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

// Decr implements CounterStore.
func (m *MemoryCounters) Decr(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.live(m.items, key); ok && c.n > 0 {
		c.n--
		m.items.Add(key, c)
	}
	return nil
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
