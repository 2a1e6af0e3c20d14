package policies

import (
	"crypto/sha256"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// DefaultCacheMaxBytes is the decision cache's memory budget unless
// CacheMaxBytes says otherwise.
const DefaultCacheMaxBytes = 64 << 20

// decisionCache is an LRU of decisions bounded by a number of entries and
// by the bytes its entries hold, whose entries expire ttl after they were
// added. A caller who asks for many new scopes (an anonymous client asking
// for 64 new repositories per request) grows it up to its budget, never
// past: the oldest entries go first.
//
// It wraps golang-lru's simplelru under its own lock rather than the
// expirable LRU: the expirable one keeps 100 expiry-bucket maps beside its
// index, and Go maps never shrink, so those would hold memory the budget
// cannot see. Here the only map is the index, accounted at its high-water
// mark. Expired entries are dropped when met (get, and from the oldest end
// on add); until then they count against the budget like any other.
type decisionCache struct {
	mu       sync.Mutex
	lru      *simplelru.LRU[[sha256.Size]byte, cachedDecision]
	size     int
	ttl      time.Duration
	maxBytes int64
	epoch    time.Time // expiry times are offsets from it (monotonic clock)
	held     int64     // accounted bytes of the entries in lru
	peak     int       // the most entries the index map has held
}

type cachedDecision struct {
	allowed []map[string]bool
	ttl     time.Duration
	expires time.Duration // since epoch
	bytes   int64         // what the entry accounts for, index slot aside
}

// The accounting, measured on Go 1.26 (amd64) with runtime.MemStats after
// a full GC, and checked by TestDecisionCacheAccountsWhatItHolds; each
// number is an upper bound of what was measured:
//
//   - entryOverhead: simplelru's list element holding the 32-byte key and a
//     cachedDecision (136 bytes, size class 144).
//   - indexSlotBytes: the index map (key + pointer per slot, groups of 8
//     slots, tables of 1024 slots) costs 47 bytes per entry when full and
//     twice that just after it grows; with page rounding, at most 110 was
//     measured (from 450 to 300,000 entries). It is charged for the most
//     entries the map ever held, since it never shrinks.
//   - a map[string]bool: 256 bytes for 1 to 8 actions (a 48-byte header and
//     one 200-byte group in the 208 class), 504 for 9 to 14, 984 for 15 to
//     28: a 32-byte table and an 8-byte directory, and groups of 8 slots at
//     a load of at most 7/8.
//   - the Allowed slice: 8 bytes a scope; action names that are not one of
//     the registry's own (interned, so free) are copied and counted.
//
// Allocations are rounded up by 1/8 plus 16 bytes below 32 KiB (more than
// Go's size classes waste) and to 8 KiB pages above. A 64-scope decision
// of pull and push accounts for 17,232 bytes and was measured at 17,112.
const (
	entryOverhead  = 144
	indexSlotBytes = 112
	smallMapBytes  = 256
	mapHeader      = 48
	tableHeader    = 32 + 8
	mapGroupBytes  = 8 + 8*24 // control word, 8 slots of string key + bool
	maxTableSlots  = 1024
)

func newDecisionCache(size int, ttl time.Duration, maxBytes int64) *decisionCache {
	c := &decisionCache{size: size, ttl: ttl, maxBytes: maxBytes, epoch: time.Now()}
	c.reset()
	return c
}

// reset empties the cache with a new index map, so the old one's memory
// (and high-water mark) goes too.
func (c *decisionCache) reset() {
	c.lru, _ = simplelru.NewLRU(c.size, func(_ [sha256.Size]byte, d cachedDecision) { c.held -= d.bytes })
	c.held, c.peak = 0, 0
}

func (c *decisionCache) get(key [sha256.Size]byte) (cachedDecision, bool) {
	now := time.Since(c.epoch)
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.lru.Get(key)
	if ok && now >= d.expires {
		c.lru.Remove(key)
		return cachedDecision{}, false
	}
	return d, ok
}

// add caches a decision, first evicting the oldest entries until it fits;
// a decision larger than the whole budget is not cached.
func (c *decisionCache) add(key [sha256.Size]byte, allowed []map[string]bool, ttl time.Duration) {
	d := cachedDecision{allowed: allowed, ttl: ttl, bytes: entryBytes(allowed)}
	now := time.Since(c.epoch)
	d.expires = now + c.ttl
	c.mu.Lock()
	defer c.mu.Unlock()
	if d.bytes+int64(max(c.peak, 1))*indexSlotBytes > c.maxBytes {
		return // would not fit in an empty cache: evict nothing for it
	}
	c.lru.Remove(key) // a concurrent miss may have added it already
	for {
		_, old, ok := c.lru.GetOldest()
		if !ok || (now < old.expires && c.fits(d.bytes)) {
			break
		}
		c.lru.RemoveOldest()
	}
	c.held += d.bytes
	n := c.lru.Len() + 1 // the index holds this many before Add evicts by count
	c.lru.Add(key, d)
	c.peak = max(c.peak, n)
}

// fits reports whether one more entry of n bytes stays within the budget.
func (c *decisionCache) fits(n int64) bool {
	return c.held+n+int64(max(c.peak, c.lru.Len()+1))*indexSlotBytes <= c.maxBytes
}

func (c *decisionCache) purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reset()
}

// stats returns the number of entries and the bytes accounted for them.
func (c *decisionCache) stats() (int, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len(), c.held + int64(c.peak)*indexSlotBytes
}

// entryBytes is what a cached decision holds: see the constants above.
func entryBytes(allowed []map[string]bool) int64 {
	n := entryOverhead + allocated(8*len(allowed))
	for _, m := range allowed {
		if m == nil {
			continue
		}
		n += mapBytes(len(m))
		for a := range m {
			if !isInterned(a) {
				n += allocated(len(a))
			}
		}
	}
	return int64(n)
}

func mapBytes(entries int) int {
	if entries <= 8 {
		return smallMapBytes
	}
	slots := 16
	for slots*7/8 < entries {
		slots *= 2
	}
	tables := max(1, slots/maxTableSlots)
	return mapHeader + tables*(tableHeader+allocated(min(slots, maxTableSlots)/8*mapGroupBytes))
}

// allocated bounds the heap an allocation of n bytes takes.
func allocated(n int) int {
	if n == 0 {
		return 0
	}
	if n > 32<<10 {
		return (n + 8191) &^ 8191
	}
	return (n + n/8 + 16 + 15) &^ 15
}

// internedAction returns the registry's own actions as constants, so a
// cached decision holds no copy of them, and copies any other action, so
// it does not keep the request's strings (a whole query string) alive.
func internedAction(a string) string {
	switch a {
	case "pull":
		return "pull"
	case "push":
		return "push"
	case "delete":
		return "delete"
	case "*":
		return "*"
	}
	return strings.Clone(a)
}

func isInterned(a string) bool {
	return a == "pull" || a == "push" || a == "delete" || a == "*"
}
