package policies_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/format"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
)

const (
	// defaultPolicyDir holds the shipped default policy, its Rego tests and
	// its example data.json (OPA bundle layout).
	defaultPolicyDir = "default"
	// minDefaultRegoTests guards against a run that silently finds no tests
	// (a renamed package, a moved file). Raise it when adding tests.
	minDefaultRegoTests = 80
	// minDefaultCoverage is the least line coverage of authz.rego, in percent.
	minDefaultCoverage = 90.0
)

// TestDefaultPolicyRegoTests runs the default policy's Rego unit tests with
// OPA's own test runner (the semantics of `opa test policies/default`), each
// as a subtest, and requires line coverage of authz.rego.
func TestDefaultPolicyRegoTests(t *testing.T) {
	modules, store, err := tester.LoadWithRegoVersion([]string{defaultPolicyDir}, nil, ast.RegoV1)
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
	t.Logf("%d Rego tests ran", ran)
	if ran < minDefaultRegoTests {
		t.Errorf("only %d Rego tests ran, want at least %d: were the tests of %s found?", ran, minDefaultRegoTests, defaultPolicyDir)
	}

	report := cov.Report(modules)
	for file, fr := range report.Files {
		if filepath.Base(file) != "authz.rego" {
			continue
		}
		var missed []string
		for _, r := range fr.NotCovered {
			missed = append(missed, fmt.Sprintf("%d-%d", r.Start.Row, r.End.Row))
		}
		t.Logf("%s: coverage %.1f%% (%d lines covered, %d not: %s)", file, fr.Coverage, len(fr.Covered), len(fr.NotCovered), strings.Join(missed, ", "))
		if fr.Coverage < minDefaultCoverage {
			t.Errorf("%s: coverage %.1f%% < %.0f%%; not covered: %s", file, fr.Coverage, minDefaultCoverage, strings.Join(missed, ", "))
		}
		return
	}
	t.Error("no coverage report for authz.rego")
}

// TestDefaultPolicyWithoutData evaluates the default policy with no data at
// all (and with partial data): it must deny without an error, keeping only
// what needs no data (personal namespaces).
func TestDefaultPolicyWithoutData(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(defaultPolicyDir, "authz.rego"))
	if err != nil {
		t.Fatal(err)
	}
	repo := func(name string, actions ...string) map[string]any {
		return map[string]any{"type": "repository", "name": name, "actions": actions}
	}
	in := func(subject string, groups []string, scopes ...map[string]any) map[string]any {
		return map[string]any{
			"service":  "registry.test",
			"identity": map[string]any{"subject": subject, "groups": groups, "anonymous": subject == ""},
			"scopes":   scopes,
		}
	}
	catalog := map[string]any{"type": "registry", "name": "catalog", "actions": []string{"*"}}
	for _, c := range []struct {
		name  string
		data  map[string]any
		input map[string]any
		want  []string
	}{
		{"no data, user", map[string]any{}, in("alice", []string{"registry-admins"}, repo("team/app", "*"), catalog), nil},
		{"no data, anonymous", map[string]any{}, in("", nil, repo("library/x", "pull"), catalog), nil},
		{"no data, own namespace", map[string]any{}, in("alice", nil, repo("alice/x", "push")), []string{"repository:alice/x:push"}},
		{"registry without projects", map[string]any{"registry": map[string]any{"system_admins": map[string]any{"users": []any{"root"}}}},
			in("root", nil, repo("team/app", "delete"), catalog), []string{"registry:catalog:*", "repository:team/app:delete"}},
		{"registry without system_admins", map[string]any{"registry": map[string]any{"projects": map[string]any{"team": map[string]any{"members": map[string]any{"alice": "guest"}}}}},
			in("alice", []string{"registry-admins"}, repo("team/app", "*"), catalog), []string{"repository:team/app:pull"}},
		{"no input scopes", map[string]any{}, map[string]any{"identity": map[string]any{"subject": "alice", "anonymous": false}}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			pq, err := rego.New(
				rego.Query("x := data.registry.authz.allowed"),
				rego.Module("authz.rego", string(src)),
				rego.Store(inmem.NewFromObject(c.data)),
				rego.StrictBuiltinErrors(true),
			).PrepareForEval(ctx)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := pq.Eval(ctx, rego.EvalInput(c.input))
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != 1 {
				t.Fatalf("allowed is undefined: %v", rs)
			}
			var got []string
			for _, g := range rs[0].Bindings["x"].([]any) {
				m := g.(map[string]any)
				got = append(got, fmt.Sprintf("%s:%s:%s", m["type"], m["name"], m["action"]))
			}
			slices.Sort(got)
			if !slices.Equal(got, c.want) {
				t.Fatalf("allowed = %v, want %v", got, c.want)
			}
		})
	}
}

// TestDefaultPolicyFormattedAndStrict requires the default policy files to
// be `opa fmt` clean and to compile under `opa check --strict`.
func TestDefaultPolicyFormattedAndStrict(t *testing.T) {
	modules := map[string]*ast.Module{}
	for _, name := range []string{"authz.rego", "authz_test.rego"} {
		path := filepath.Join(defaultPolicyDir, name)
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
