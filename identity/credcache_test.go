package identity

import (
	"fmt"
	"testing"
	"time"
)

// Credentials verified in the same instant are not all verified again in
// the same instant a ttl later: each keeps its entry for its own part of
// the ttl, between four fifths and all of it.
func TestCredentialCacheSpreadsExpiryOverTheLastFifthOfTheTTL(t *testing.T) {
	const n, ttl = 2000, time.Minute
	c := NewCredentialCache(n, ttl)
	start := time.Now()
	at := start
	c.now = func() time.Time { return at }
	for i := range n {
		c.Put("local", fmt.Sprint("user", i), "pw", Identity{Subject: fmt.Sprint("user", i)})
	}
	kept := func(after time.Duration) int {
		at = start.Add(after)
		k := 0
		for i := range n {
			// Peek asks without removing, so every moment sees every entry.
			if v, ok := c.lru.Peek(c.mac("local", fmt.Sprint("user", i), "pw")); ok && at.Before(v.expires) {
				k++
			}
		}
		return k
	}
	if k := kept(ttl*4/5 - time.Second); k != n {
		t.Errorf("%d of %d entries kept just before four fifths of the ttl, want all", k, n)
	}
	// Half of the last fifth: about half, far from all or none (for a
	// uniform spread, outside 35-65 % is more than 13 standard deviations).
	if k := kept(ttl * 9 / 10); k < n*35/100 || k > n*65/100 {
		t.Errorf("%d of %d entries kept at nine tenths of the ttl, want about half", k, n)
	}
	if k := kept(ttl); k != 0 {
		t.Errorf("%d of %d entries kept at the ttl, want none", k, n)
	}
	// Get honours it, and counts a miss.
	at = start.Add(ttl)
	if _, ok := c.Get("local", "user1", "pw"); ok {
		t.Error("Get answered a credential after its ttl")
	}
	if _, misses := c.Stats(); misses != 1 {
		t.Errorf("%d misses, want 1", misses)
	}
	at = start
	c.Put("local", "user1", "pw", Identity{Subject: "user1"})
	if id, ok := c.Get("local", "user1", "pw"); !ok || id.Subject != "user1" {
		t.Errorf("Get after Put: %+v, %v", id, ok)
	}
}
