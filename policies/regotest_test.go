package policies_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/format"
	"github.com/open-policy-agent/opa/v1/tester"
)

// runRegoTests runs the Rego unit tests in dir with OPA's own test runner
// (the semantics of `opa test DIR`), each as a subtest; it requires at least
// minTests tests (a renamed package must not make them vanish) and line
// coverage of at least minCoverage percent of every policy file that is not
// a test.
func runRegoTests(t *testing.T, dir string, minTests int, minCoverage float64) {
	t.Helper()
	modules, store, err := tester.LoadWithRegoVersion([]string{dir}, nil, ast.RegoV1)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Abort(ctx, txn)

	cov := cover.New()
	results, err := tester.NewRunner().
		SetStore(store).
		SetModules(modules).
		SetDefaultRegoVersion(ast.RegoV1).
		RaiseBuiltinErrors(true). // a type error in a builtin is a bug, not a deny
		SetCoverageQueryTracer(cov).
		RunTests(ctx, txn)
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for r := range results {
		ran++
		t.Run(r.Name, func(t *testing.T) {
			switch {
			case r.Error != nil:
				t.Errorf("%s (%s): error: %v", r.Name, r.Location, r.Error)
			case r.Fail:
				t.Errorf("%s (%s): failed", r.Name, r.Location)
			case r.Skip:
				t.Errorf("%s (%s): skipped; todo_ tests are not allowed here", r.Name, r.Location)
			}
		})
	}
	t.Logf("%s: %d Rego tests ran", dir, ran)
	if ran < minTests {
		t.Errorf("only %d Rego tests ran in %s, want at least %d: were they found?", ran, dir, minTests)
	}

	report := cov.Report(modules)
	checked := 0
	for file, fr := range report.Files {
		if strings.HasSuffix(file, "_test.rego") {
			continue
		}
		checked++
		var missed []string
		for _, r := range fr.NotCovered {
			missed = append(missed, fmt.Sprintf("%d-%d", r.Start.Row, r.End.Row))
		}
		t.Logf("%s: coverage %.1f%% (%d lines covered, %d not: %s)", file, fr.Coverage, len(fr.Covered), len(fr.NotCovered), strings.Join(missed, ", "))
		if fr.Coverage < minCoverage {
			t.Errorf("%s: coverage %.1f%% < %.0f%%; not covered: %s", file, fr.Coverage, minCoverage, strings.Join(missed, ", "))
		}
	}
	if checked == 0 {
		t.Errorf("no coverage report for the policy files of %s", dir)
	}
}

// formattedAndStrict requires every .rego file in dir to be `opa fmt`
// clean and the whole to compile under `opa check --strict`.
func formattedAndStrict(t *testing.T, dir string) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.rego"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no .rego files in %s (%v)", dir, err)
	}
	modules := map[string]*ast.Module{}
	for _, path := range paths {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		formatted, err := format.SourceWithOpts(path, src, format.Opts{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatal(err)
		}
		if string(formatted) != string(src) {
			t.Errorf("%s is not formatted as opa fmt would", path)
		}
		m, err := ast.ParseModuleWithOpts(path, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatal(err)
		}
		modules[path] = m
	}
	c := ast.NewCompiler().WithStrict(true)
	if c.Compile(modules); c.Failed() {
		t.Fatal(c.Errors)
	}
}
