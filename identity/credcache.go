package identity

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
)

// CredentialCache remembers verified passwords for a short time so bcrypt and
// LDAP binds are not paid on every pull. It stores no password: the key is an
// HMAC of (connector, user, password) under a random per-process key, so a
// memory dump reveals nothing that can be replayed elsewhere. A nil
// *CredentialCache is valid and remembers nothing.
//
// An entry is kept for a fixed part of ttl between four fifths and all of
// it, different for each credential: passwords verified together (every
// client logging in again after a restart) are not all verified again in
// the same second a ttl later, a wave of bcrypt that would queue every
// request behind it.
type CredentialCache struct {
	key          []byte
	macs         sync.Pool // of *macState keyed with key
	lru          *expirable.LRU[[sha256.Size]byte, verified]
	ttl          time.Duration
	now          func() time.Time // time.Now; tests move it
	hits, misses atomic.Int64
}

// verified is a cached identity and when it must be verified again.
type verified struct {
	id      Identity
	expires time.Time
}

// Stats returns how many lookups found a verified credential and how many
// did not, since start.
func (c *CredentialCache) Stats() (hits, misses int64) {
	if c == nil {
		return 0, 0
	}
	return c.hits.Load(), c.misses.Load()
}

// NewCredentialCache returns a cache of at most size entries, each kept for
// ttl. size <= 0 or ttl <= 0 returns nil, a cache that remembers nothing.
func NewCredentialCache(size int, ttl time.Duration) *CredentialCache {
	if size <= 0 || ttl <= 0 {
		return nil
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails (Go 1.24+)
	return &CredentialCache{
		key: key,
		lru: expirable.NewLRU[[sha256.Size]byte, verified](size, nil, ttl),
		ttl: ttl,
		now: time.Now,
	}
}

// macState is a keyed HMAC and a buffer, reused through a pool: hmac.New
// hashes the key pads and allocates on every call, and showed in profiles
// of the cached password path.
type macState struct {
	h   hash.Hash
	buf []byte
}

func (c *CredentialCache) mac(connector, user, password string) [sha256.Size]byte {
	m, _ := c.macs.Get().(*macState)
	if m == nil {
		m = &macState{h: hmac.New(sha256.New, c.key)}
	}
	// Length-prefix each field so ("ab","c") and ("a","bc") differ.
	b := m.buf[:0]
	for _, f := range []string{connector, user, password} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	m.h.Write(b)
	var out [sha256.Size]byte
	m.h.Sum(out[:0])
	m.h.Reset()
	clear(b) // the password does not stay in the pool
	if cap(b) <= 1024 {
		m.buf = b
		c.macs.Put(m)
	}
	return out
}

// Get returns the identity remembered for these credentials, if any.
func (c *CredentialCache) Get(connector, user, password string) (Identity, bool) {
	if c == nil {
		return Identity{}, false
	}
	k := c.mac(connector, user, password)
	v, ok := c.lru.Get(k)
	if ok && !c.now().Before(v.expires) {
		c.lru.Remove(k)
		ok = false
	}
	if ok {
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
	return v.id, ok
}

// Put remembers that these credentials verified as id.
func (c *CredentialCache) Put(connector, user, password string, id Identity) {
	if c == nil {
		return
	}
	k := c.mac(connector, user, password)
	c.lru.Add(k, verified{id: id, expires: c.now().Add(c.ttl - spread(k, c.ttl/5))})
}

// spread is k's part of width: the MAC is uniform, so the credentials'
// expiries spread evenly over the last fifth of the ttl. The lru's own ttl
// stays the bound.
func spread(k [sha256.Size]byte, width time.Duration) time.Duration {
	if width <= 0 {
		return 0
	}
	return time.Duration(binary.BigEndian.Uint64(k[:8]) % uint64(width))
}

// Purge forgets everything, for example after the user file changed.
func (c *CredentialCache) Purge() {
	if c == nil {
		return
	}
	c.lru.Purge()
}
