package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestBenchSmoke runs the whole benchmark once, very short and without the
// Go benchmarks or docker_auth: it builds the servers and the load tool,
// starts them on loopback, drives every scenario and prints the table.
// `make bench` is the real run; this only keeps it from rotting.
func TestBenchSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var out bytes.Buffer
	rows, err := run(ctx, options{rounds: 1, duration: 300 * time.Millisecond, concurrency: 2, pairs: 200, users: 2,
		distinctRepos: 1000, distinctUsers: 3, distinctCost: 4}, &out)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range rows {
		seen[r.target+" "+r.key] = true
		if r.errors != 0 || r.rate <= 0 {
			t.Errorf("%s %s %s: %.0f tokens/s, %d errors", r.target, r.key, r.scenario, r.rate, r.errors)
		}
		if isTollgate(r.target) && !strings.HasPrefix(r.scenario, "distinct") && !strings.Contains(r.scenario, "@") &&
			(r.scenario == scenarios[0].name || r.scenario == scenarios[1].name) && r.vsCeiling <= 0 {
			t.Errorf("%s %s %s: no ratio to the ceiling", r.target, r.key, r.scenario)
		}
	}
	for _, want := range []string{"tollgate ES256", "tollgate RS256", noReuse + " ES256", noReuse + " RS256", "ceiling ES256", "ceiling RS256"} {
		if !seen[want] {
			t.Errorf("no row for %s", want)
		}
	}
	for _, want := range []string{"| tollgate | ES256 | refresh grant |", "distinct: 200 (user, repo) pairs", "Targets (issue 7):", "serve ready",
		"| tollgate | ES256 | " + distinctAnon + " |", "| tollgate | RS256 | " + distinctAnon + " |", "| ceiling | ES256 | " + distinctPassword + " |",
		"| tollgate | ES256 | " + distinctUsers + " |", distinctUsers + " @ 50% of peak", "Targets (issue 20, every request different):"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
