package policies_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/policies"
)

func checkSource(t *testing.T, rego string) []error {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte(rego), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := bundles.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return policies.Check(b, policies.DefaultQuery)
}

func TestCheckAcceptsTheDefaultPolicy(t *testing.T) {
	b, err := bundles.LoadFS(policies.DefaultFS(), "default")
	if err != nil {
		t.Fatal(err)
	}
	if errs := policies.Check(b, policies.DefaultQuery); len(errs) != 0 {
		t.Fatalf("default policy: %v", errs)
	}
}

func TestCheckFindsCommonMistakes(t *testing.T) {
	tests := []struct{ name, rego, want string }{
		{"typo in an input field", `package registry.authz
allowed contains {"type": s.type, "name": s.name, "action": "pull"} if {
	some s in input.scopes
	input.identity.subjct == "alice"
}`, "subjct"},
		{"wrong type of an input field", `package registry.authz
allowed contains {"type": s.type, "name": s.name, "action": "pull"} if {
	some s in input.scopes
	input.identity.anonymous == "no"
}`, "match error"},
		{"allowed as a boolean", `package registry.authz
allowed := true`, "must be a set rule"},
		{"no allowed rule", `package registry.authz
allow if input.identity.subject == "alice"`, "allowed is not defined"},
		{"unused variable (strict)", `package registry.authz
allowed contains {"type": s.type, "name": s.name, "action": "pull"} if {
	some s in input.scopes
	x := 1
}`, "unused"},
		{"token_ttl as a set", `package registry.authz
allowed contains {"type": s.type, "name": s.name, "action": "pull"} if some s in input.scopes
token_ttl contains 60 if true`, "token_ttl must be a single value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := checkSource(t, tt.rego)
			var all []string
			for _, e := range errs {
				all = append(all, e.Error())
			}
			if !strings.Contains(strings.Join(all, "\n"), tt.want) {
				t.Fatalf("errors %q do not mention %q", all, tt.want)
			}
		})
	}
}

func TestCheckFindsWrongDecisionTypes(t *testing.T) {
	const allowed = `package registry.authz
allowed contains {"type": s.type, "name": s.name, "action": "pull"} if some s in input.scopes
`
	for name, c := range map[string]struct{ rego, want string }{
		"token_ttl as a string":   {allowed + `token_ttl := "300"`, "token_ttl is string"},
		"token_ttl as either":     {allowed + "default token_ttl := 300\ntoken_ttl := \"60\" if input.service == \"a\"", "token_ttl is any<number, string>"},
		"a reason as a number":    {allowed + `reasons contains 1 if true`, "reasons is set[number]"},
		"an action as a number":   {`package registry.authz` + "\n" + `allowed contains {"type": s.type, "name": s.name, "action": 1} if some s in input.scopes`, "allowed is set["},
		"allowed as strings":      {`package registry.authz` + "\n" + `allowed contains s.name if some s in input.scopes`, "allowed is set[string]"},
		"token_ttl from an input": {allowed + `token_ttl := input.identity.name`, "token_ttl is string"},
	} {
		t.Run(name, func(t *testing.T) {
			errs := checkSource(t, c.rego)
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), c.want) || !strings.Contains(errs[0].Error(), "decision schema wants") {
				t.Fatalf("errors %v, want one naming %q", errs, c.want)
			}
		})
	}
	for name, rego := range map[string]string{
		"token_ttl as a number": allowed + `token_ttl := 300`,
		"token_ttl from data":   allowed + `token_ttl := data.ttl[input.service]`,
		"reasons as strings":    allowed + `reasons contains sprintf("%s", [input.service]) if true`,
	} {
		t.Run(name, func(t *testing.T) {
			if errs := checkSource(t, rego); len(errs) != 0 {
				t.Fatalf("errors %v, want none", errs)
			}
		})
	}
}
