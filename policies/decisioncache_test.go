package policies_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/policies"
	"github.com/tollgate/tollgate/scope"
)

// allowRequested grants every requested action except "deny", so a request
// decides the shape of its decision: scopes, actions per scope, their names.
const allowRequested = `package registry.authz
allowed contains {"type": s.type, "name": s.name, "action": a} if {
	some s in input.scopes
	some a in s.actions
	a != "deny"
}`

// wideInput is request i of an anonymous caller asking n scopes, each with
// the given actions; every request names other repositories, so each one
// is a new cache entry.
func wideInput(i, n int, actions []string) authz.Input {
	in := authz.Input{
		Service:  "registry.test",
		Identity: identity.Identity{Connector: "anonymous", Anonymous: true, Groups: []string{}},
		Scopes:   make([]scope.Scope, n),
	}
	for j := range in.Scopes {
		in.Scopes[j] = scope.Scope{Type: "repository", Name: fmt.Sprintf("library/r%d-%d", i, j), Actions: actions}
	}
	return in
}

// liveHeap is the heap in use after a full collection.
func liveHeap() int64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// TestDecisionCacheStaysWithinItsByteBudget plays the anonymous caller of
// issue 14 (finding 6): requests of 64 new library/... scopes each, far more
// than a 2 MiB budget holds. The bytes the cache accounts never exceed the
// budget, and the live heap grows by no more than the budget and a margin
// for the engine's own structures.
func TestDecisionCacheStaysWithinItsByteBudget(t *testing.T) {
	const budget = 2 << 20
	const margin = 512 << 10
	e := policies.NewEngine(100_000, time.Minute, policies.CacheMaxBytes(budget))
	e.Swap(compile(t, allowRequested))
	ctx := context.Background()
	actions := []string{"pull", "push"}
	if _, err := e.Authorize(ctx, wideInput(-1, 64, actions)); err != nil {
		t.Fatal(err)
	}
	before := liveHeap()
	const requests = 600 // about 10 MiB of decisions, five times the budget
	for i := range requests {
		if _, err := e.Authorize(ctx, wideInput(i, 64, actions)); err != nil {
			t.Fatal(err)
		}
		if _, b := e.CacheStats(); b > budget {
			t.Fatalf("after %d requests the cache accounts %d bytes, over its budget of %d", i+1, b, budget)
		}
	}
	grown := liveHeap() - before
	entries, accounted := e.CacheStats()
	t.Logf("%d requests: %d entries, %d bytes accounted, live heap grown by %d bytes", requests, entries, accounted, grown)
	if grown > budget+margin {
		t.Fatalf("live heap grew by %d bytes, over the budget of %d plus %d", grown, budget, margin)
	}
	if accounted < budget/2 || entries >= requests {
		t.Fatalf("%d entries, %d bytes: the cache should be full and evicting", entries, accounted)
	}
	// The newest decision is still served from the cache.
	if d, err := e.Authorize(ctx, wideInput(requests-1, 64, actions)); err != nil || !d.Cached || !d.Allowed[63]["push"] {
		t.Fatalf("newest decision: cached %v, %v", d.Cached, err)
	}
}

// TestDecisionCacheAccountsWhatItHolds measures, with runtime.MemStats, the
// live heap that many cached decisions of one shape take, and compares it
// with what the cache accounts for them: never less (the budget must hold;
// slack allows for the few KiB the runtime and the test allocate meanwhile),
// and not much more (the estimate is honest, not padding).
func TestDecisionCacheAccountsWhatItHolds(t *testing.T) {
	long := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("custom-action-%02d-%s", i, strings.Repeat("x", 24))
		}
		return out
	}
	for _, c := range []struct {
		name     string
		n, scope int
		actions  []string
	}{
		{"denied", 4000, 1, []string{"deny"}},
		{"one action", 4000, 1, []string{"pull"}},
		{"64 scopes", 300, 64, []string{"pull", "push"}},
		{"9 actions", 2000, 3, long(9)[:9]},
		{"16 long actions", 500, 8, long(16)},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := policies.NewEngine(1_000_000, time.Hour, policies.CacheMaxBytes(1<<30))
			e.Swap(compile(t, allowRequested))
			ctx := context.Background()
			if _, err := e.Authorize(ctx, wideInput(-1, c.scope, c.actions)); err != nil {
				t.Fatal(err)
			}
			_, base := e.CacheStats()
			before := liveHeap()
			for i := range c.n {
				if _, err := e.Authorize(ctx, wideInput(i, c.scope, c.actions)); err != nil {
					t.Fatal(err)
				}
			}
			grown := liveHeap() - before
			entries, accounted := e.CacheStats()
			accounted -= base
			t.Logf("%d entries: %d bytes accounted, %d measured (%.0f / %.0f per entry)",
				entries, accounted, grown, float64(accounted)/float64(c.n), float64(grown)/float64(c.n))
			const slack = 32 << 10
			if accounted+slack < grown {
				t.Fatalf("the cache accounts %d bytes for %d decisions that take %d", accounted, c.n, grown)
			}
			if float64(accounted) > 1.5*float64(grown) {
				t.Fatalf("the cache accounts %d bytes for %d decisions that take only %d", accounted, c.n, grown)
			}
		})
	}
}

// TestDecisionCacheConcurrentUse: hits, misses, evictions and a policy swap
// from several goroutines at once keep the cache within its budget (run
// with -race).
func TestDecisionCacheConcurrentUse(t *testing.T) {
	const budget = 256 << 10
	e := policies.NewEngine(100_000, time.Minute, policies.CacheMaxBytes(budget))
	p := compile(t, allowRequested)
	e.Swap(p)
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				in := wideInput(g*1000+i%50, 4, []string{"pull", "push"})
				if d, err := e.Authorize(ctx, in); err != nil || !d.Allowed[3]["push"] {
					t.Errorf("decision %+v, %v", d, err)
					return
				}
				if _, b := e.CacheStats(); b > budget {
					t.Errorf("%d bytes accounted, over %d", b, budget)
					return
				}
			}
		}()
	}
	e.Swap(compile(t, allowRequested+"\n# another revision\n"))
	wg.Wait()
}
