package policies_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

const (
	// defaultPolicyDir holds the shipped default policy, its Rego tests and
	// its example data.json (OPA bundle layout).
	defaultPolicyDir = "default"
	// minDefaultRegoTests guards against a run that silently finds no tests
	// (a renamed package, a moved file). Raise it when adding tests.
	minDefaultRegoTests = 96
	// minDefaultCoverage is the least line coverage of authz.rego, in percent.
	minDefaultCoverage = 90.0
)

// TestDefaultPolicyRegoTests runs the default policy's Rego unit tests with
// OPA's own test runner (the semantics of `opa test policies/default`), each
// as a subtest, and requires line coverage of authz.rego.
func TestDefaultPolicyRegoTests(t *testing.T) {
	runRegoTests(t, defaultPolicyDir, minDefaultRegoTests, minDefaultCoverage)
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
	formattedAndStrict(t, defaultPolicyDir)
}
