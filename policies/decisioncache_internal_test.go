package policies

import (
	"crypto/sha256"
	"fmt"
	"testing"
	"time"
	"unsafe"
)

func key(i int) [sha256.Size]byte { return sha256.Sum256([]byte(fmt.Sprint(i))) }

func pulls(n int) []map[string]bool {
	out := make([]map[string]bool, n)
	for i := range out {
		out[i] = map[string]bool{"pull": true}
	}
	return out
}

// TestDecisionCacheEvictsOldestBeyondItsBudget: the budget, not the entry
// count, decides; the oldest entries go, the newest stay, and the accounted
// bytes follow every add, re-add and eviction.
func TestDecisionCacheEvictsOldestBeyondItsBudget(t *testing.T) {
	one := entryBytes(pulls(4)) + indexSlotBytes
	c := newDecisionCache(1000, time.Minute, 10*one)
	for i := range 25 {
		c.add(key(i), pulls(4), 0)
		if _, b := c.stats(); b > c.maxBytes {
			t.Fatalf("add %d: %d bytes accounted, budget %d", i, b, c.maxBytes)
		}
	}
	if n, b := c.stats(); n != 10 || b != 10*one {
		t.Fatalf("%d entries, %d bytes; want 10 and %d", n, b, 10*one)
	}
	for i := range 25 {
		if _, ok := c.get(key(i)); ok != (i >= 15) {
			t.Fatalf("entry %d cached: %v", i, ok)
		}
	}
	// Adding a key again (two concurrent misses) replaces it, counted once.
	c.add(key(24), pulls(4), 0)
	if n, b := c.stats(); n != 10 || b != 10*one {
		t.Fatalf("after a re-add: %d entries, %d bytes", n, b)
	}
	// A decision bigger than the budget is not cached and evicts nothing.
	c.add(key(99), pulls(500), 0)
	if _, ok := c.get(key(99)); ok {
		t.Fatal("a decision over the whole budget was cached")
	}
	if n, _ := c.stats(); n != 10 {
		t.Fatalf("%d entries after refusing an oversized decision", n)
	}
	c.purge()
	if n, b := c.stats(); n != 0 || b != 0 {
		t.Fatalf("after purge: %d entries, %d bytes", n, b)
	}
}

// TestDecisionCacheIndexHighWaterCounts: the index map keeps its size when
// entries go, so its high-water mark stays in the accounted bytes.
func TestDecisionCacheIndexHighWaterCounts(t *testing.T) {
	c := newDecisionCache(1000, time.Minute, 1<<20)
	for i := range 100 {
		c.add(key(i), nil, 0)
	}
	for i := range 100 {
		c.lru.Remove(key(i))
	}
	if n, b := c.stats(); n != 0 || b != 100*indexSlotBytes {
		t.Fatalf("%d entries, %d bytes; want the index of 100 entries, %d", n, b, 100*indexSlotBytes)
	}
}

// TestDecisionCacheDropsExpiredEntries: an expired entry is not served,
// and the oldest expired entries leave when something is added.
func TestDecisionCacheDropsExpiredEntries(t *testing.T) {
	c := newDecisionCache(1000, time.Minute, 1<<20)
	c.add(key(1), pulls(1), 0)
	c.add(key(2), pulls(1), 0)
	c.epoch = c.epoch.Add(-2 * time.Minute) // both are two minutes old now
	if _, ok := c.get(key(1)); ok {
		t.Fatal("expired entry served")
	}
	c.add(key(3), pulls(1), 0)
	if n, b := c.stats(); n != 1 || b != entryBytes(pulls(1))+2*indexSlotBytes {
		t.Fatalf("%d entries, %d bytes after expiry", n, b)
	}
}

// TestEntryBytesCountsCopiedActions: the registry's actions are interned
// and free; any other action is copied and counted.
func TestEntryBytesCountsCopiedActions(t *testing.T) {
	own := entryBytes([]map[string]bool{{"pull": true, "push": true}})
	other := entryBytes([]map[string]bool{{"pull": true, "x-custom-action": true}})
	if other-own != int64(allocated(len("x-custom-action"))) {
		t.Fatalf("own actions %d bytes, a custom one %d", own, other)
	}
	// Neither keeps the request's string (here a whole query) alive.
	query := "scope=repository:x:push,x-custom-action"
	for _, in := range []string{query[len(query)-20 : len(query)-16], query[len(query)-15:]} {
		if a := internedAction(in); a != in || unsafe.StringData(a) == unsafe.StringData(in) {
			t.Fatalf("internedAction(%q) = %q, sharing the request's bytes", in, a)
		}
	}
}
