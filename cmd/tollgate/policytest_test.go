package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A test of a policy that reads a field the input does not have fails to
// compile under the input schema, which policy test applies unless told
// otherwise; a decision rule of the wrong type fails the same way.
func TestPolicyTestAppliesTheInputAndDecisionSchemas(t *testing.T) {
	const test = `package registry.authz_test
import data.registry.authz
test_alice_pulls if {
	count(authz.allowed) == 1 with input as {"identity": {"subject": "alice"}, "scopes": [{"type": "repository", "name": "a", "actions": ["pull"]}]}
}
`
	typo := policyDir(t, map[string]string{"p_test.rego": test,
		"p.rego": strings.Replace(tinyPolicy, "input.identity.subject", "input.identity.subjct", 1)})
	out, err := run(t, "", "policy", "test", typo)
	if exitCode(err) != 1 || !strings.Contains(fmt.Sprint(err), "undefined ref: input.identity.subjct") {
		t.Fatalf("typo under the input schema: exit %d (%v)\n%s", exitCode(err), err, out)
	}
	// Without a schema the typo is undefined, so the test fails (as opa test).
	if out, err := run(t, "", "policy", "test", typo, "--no-schema"); exitCode(err) != exitTestsFailed {
		t.Fatalf("typo, --no-schema: exit %d (%v)\n%s", exitCode(err), err, out)
	}
	// Another schema: one that has subjct.
	other := filepath.Join(t.TempDir(), "input.json")
	os.WriteFile(other, []byte(`{"type": "object", "properties": {"identity": {"type": "object", "properties": {"subjct": {"type": "string"}}}, "scopes": {"type": "array"}}}`), 0o644)
	if out, err := run(t, "", "policy", "test", "--schema", other, typo); exitCode(err) != exitTestsFailed || strings.Contains(out, "undefined ref") {
		t.Fatalf("typo, --schema with subjct: exit %d (%v)\n%s", exitCode(err), err, out)
	}

	ttl := policyDir(t, map[string]string{"p_test.rego": test, "p.rego": tinyPolicy + `token_ttl := "300"`})
	out, err = run(t, "", "policy", "test", ttl)
	if exitCode(err) != 1 || !strings.Contains(fmt.Sprint(err), "token_ttl is string, the decision schema wants number") {
		t.Fatalf("token_ttl as a string: exit %d (%v)\n%s", exitCode(err), err, out)
	}
	good := policyDir(t, map[string]string{"p_test.rego": test, "p.rego": tinyPolicy + `token_ttl := 300`})
	if out, err := run(t, "", "policy", "test", good); err != nil || !strings.Contains(out, "PASS: 1/1") {
		t.Fatalf("a good policy: %v\n%s", err, out)
	}
}

func TestPolicyTestRejectsBadOptions(t *testing.T) {
	dir := policyDir(t, map[string]string{"p.rego": tinyPolicy})
	for _, args := range [][]string{
		{"--threshold", "101"}, {"--format", "gobench"}, {"--bench", "--coverage"},
		{"--schema", "x.json", "--no-schema"}, {"--capabilities", "no-such-version"},
	} {
		if _, err := run(t, "", append(append([]string{"policy", "test"}, args...), dir)...); exitCode(err) != 1 {
			t.Errorf("%v: exit %d (%v), want 1", args, exitCode(err), err)
		}
	}
}
