package policies_test

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policies"
)

// BenchmarkDecisionCachedParallel asks for one cached decision from every
// core at once: what lock contention in the decision cache costs.
func BenchmarkDecisionCachedParallel(b *testing.B) {
	e := policies.NewEngine(100_000, time.Minute)
	e.Swap(defaultPolicyWith(b, 100, 1000))
	in := benchInput(99, 99)
	ctx := context.Background()
	if _, err := e.Authorize(ctx, in); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if d, err := e.Authorize(ctx, in); err != nil || !d.Cached {
				b.Errorf("decision %+v %v", d, err)
				return
			}
		}
	})
}
