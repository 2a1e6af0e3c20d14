package policies_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/policies"
)

// The examples in policies/examples: each is a complete policy with its
// tests. They must pass, cover at least 90% of their lines, be opa fmt
// clean, compile in strict mode, pass `policy check` against the input
// schema, and load into the engine as the broker loads a policy.
func TestExamples(t *testing.T) {
	dirs, err := filepath.Glob("examples/*")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, dir := range dirs {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			continue
		}
		n++
		t.Run(filepath.Base(dir), func(t *testing.T) {
			runRegoTests(t, dir, 5, 90)
			formattedAndStrict(t, dir)
			b, err := bundles.LoadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range policies.Check(b, policies.DefaultQuery) {
				t.Errorf("policy check: %v", e)
			}
			if _, err := policies.Compile(context.Background(), b, policies.DefaultQuery); err != nil {
				t.Fatal(err)
			}
		})
	}
	if n < 4 {
		t.Fatalf("%d examples found, want at least 4", n)
	}
}

// TestBusinessHoursExampleIsNeverCached: the example that reads the client
// address and the clock runs without the decision cache, by itself.
func TestBusinessHoursExampleIsNeverCached(t *testing.T) {
	b, err := bundles.LoadDir("examples/business-hours")
	if err != nil {
		t.Fatal(err)
	}
	if policies.Uncacheable(b) == "" {
		t.Fatal("the business-hours example would be served from the decision cache")
	}
}
