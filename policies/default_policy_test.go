package policies_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/tester"
)

// TestDefaultPolicyRegoTests runs the default policy's Rego unit tests with
// OPA's own test runner (the semantics of `opa test`), each as a subtest, and
// requires line coverage of the policy itself.
func TestDefaultPolicyRegoTests(t *testing.T) {
	modules, store, err := tester.LoadWithRegoVersion([]string{"default"}, nil, ast.RegoV1)
	if err != nil {
		t.Fatal(err)
	}
	cov := cover.New()
	ctx := context.Background()
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Abort(ctx, txn)
	results, err := tester.NewRunner().SetStore(store).SetModules(modules).SetCoverageQueryTracer(cov).RunTests(ctx, txn)
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for r := range results {
		ran++
		t.Run(r.Name, func(t *testing.T) {
			switch {
			case r.Error != nil:
				t.Fatalf("%s: error: %v", r.Location, r.Error)
			case r.Fail:
				t.Fatalf("%s: failed", r.Location)
			case r.Skip:
				t.Fatalf("%s: skipped (todo_ tests are not allowed here)", r.Location)
			}
		})
	}
	if ran < 30 {
		t.Fatalf("only %d Rego tests ran; the default policy's tests were not all found", ran)
	}

	report := cov.Report(modules)
	for file, fr := range report.Files {
		if filepath.Base(file) != "authz.rego" {
			continue
		}
		if fr.Coverage < 95 {
			var missed []string
			for _, r := range fr.NotCovered {
				missed = append(missed, fmt.Sprintf("%d-%d", r.Start.Row, r.End.Row))
			}
			t.Fatalf("authz.rego coverage %.1f%% < 95%%; not covered: %s", fr.Coverage, strings.Join(missed, ", "))
		}
		return
	}
	t.Fatal("no coverage report for authz.rego")
}
