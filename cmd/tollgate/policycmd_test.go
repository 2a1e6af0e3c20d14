package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func exitCode(err error) int {
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	if err != nil {
		return 1
	}
	return 0
}

func policyDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
	}
	return dir
}

const tinyPolicy = `package registry.authz
allowed contains {"type": "repository", "name": s.name, "action": "pull"} if {
	some s in input.scopes
	input.identity.subject == "alice"
}
`

func TestPolicyTestRunsRegoTestsLikeOpaTest(t *testing.T) {
	pass := policyDir(t, map[string]string{"p.rego": tinyPolicy, "p_test.rego": `package registry.authz_test
import data.registry.authz
test_alice_pulls if {
	count(authz.allowed) == 1 with input as {"identity": {"subject": "alice"}, "scopes": [{"type": "repository", "name": "a", "actions": ["pull"]}]}
}
test_bob_gets_nothing if {
	count(authz.allowed) == 0 with input as {"identity": {"subject": "bob"}, "scopes": [{"type": "repository", "name": "a", "actions": ["pull"]}]}
}
`})
	out, err := run(t, "", "policy", "test", pass)
	if err != nil || !strings.Contains(out, "PASS: 2/2") {
		t.Fatalf("passing tests: %v\n%s", err, out)
	}
	out, err = run(t, "", "policy", "test", "-v", "--run", "bob", pass)
	if err != nil || !strings.Contains(out, "test_bob_gets_nothing: PASS") || strings.Contains(out, "test_alice_pulls") {
		t.Fatalf("--run filter: %v\n%s", err, out)
	}
	out, err = run(t, "", "policy", "test", "--coverage", "--threshold", "50", pass)
	var report struct{ Coverage float64 }
	if err != nil || json.Unmarshal([]byte(out), &report) != nil || report.Coverage < 50 {
		t.Fatalf("--coverage: %v\n%s", err, out)
	}

	fail := policyDir(t, map[string]string{"p.rego": tinyPolicy, "p_test.rego": `package registry.authz_test
import data.registry.authz
test_wrong if {
	count(authz.allowed) == 5 with input as {"identity": {"subject": "alice"}, "scopes": [{"type": "repository", "name": "a", "actions": ["pull"]}]}
}
`})
	out, err = run(t, "", "policy", "test", fail)
	if exitCode(err) != exitTestsFailed || !strings.Contains(out, "test_wrong: FAIL") {
		t.Fatalf("failing test: exit %d (%v)\n%s", exitCode(err), err, out)
	}

	// As opa test: a failing test under --coverage exits 1, no coverage.
	if out, err := run(t, "", "policy", "test", "--coverage", fail); exitCode(err) != 1 || strings.Contains(out, `"coverage"`) {
		t.Fatalf("failing test with --coverage: exit %d (%v)\n%s", exitCode(err), err, out)
	}
	// As opa test: no test is no failure unless --fail-on-empty (exit 1).
	if _, err := run(t, "", "policy", "test", policyDir(t, map[string]string{"p.rego": tinyPolicy})); exitCode(err) != 0 {
		t.Fatalf("no tests: exit %d (%v)", exitCode(err), err)
	}
	if _, err := run(t, "", "policy", "test", "--fail-on-empty", policyDir(t, map[string]string{"p.rego": tinyPolicy})); exitCode(err) != 1 {
		t.Fatalf("no tests, --fail-on-empty: exit %d (%v)", exitCode(err), err)
	}
	if _, err := run(t, "", "policy", "test", policyDir(t, map[string]string{"p.rego": "package x\nallow if {"})); exitCode(err) != 1 {
		t.Fatalf("parse error: exit %d (%v)", exitCode(err), err)
	}
}

func TestPolicyEvalShowsTheGrantAndWhy(t *testing.T) {
	out, err := run(t, "", "policy", "eval", "--policy", "../../policies/default", "--user", "bob",
		"--scope", "repository:team/app:pull,push", "--scope", "repository:library/x:*", "--explain")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"repository:team/app:pull,push", "granted: pull; denied: push\n", "granted: pull\n", "because: bob is guest in project team", "project library is public"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	out, err = run(t, "", "policy", "eval", "--policy", "../../policies/default", "--anonymous", "--scope", "repository:team/app:pull", "--format", "json")
	var res evalResult
	if err != nil || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if len(res.Scopes) != 1 || len(res.Scopes[0].Granted) != 0 || !res.Input.Identity.Anonymous {
		t.Fatalf("anonymous on a private project: %+v", res)
	}

	input := filepath.Join(t.TempDir(), "in.json")
	os.WriteFile(input, []byte(`{"service": "r", "identity": {"subject": "x", "groups": ["registry-admins"], "anonymous": false},
		"scopes": [{"type": "registry", "name": "catalog", "actions": ["*"]}]}`), 0o644)
	out, err = run(t, "", "policy", "eval", "--policy", "../../policies/default", "--input", input)
	if err != nil || !strings.Contains(out, "granted: *") {
		t.Fatalf("--input: %v\n%s", err, out)
	}
	os.WriteFile(input, []byte(`{"identity": {"subjekt": "x"}}`), 0o644)
	if _, err := run(t, "", "policy", "eval", "--policy", "../../policies/default", "--input", input); err == nil {
		t.Fatal("an input with an unknown field was accepted")
	}
}

func TestPolicyCheckReportsProblemsAndExitsNonZero(t *testing.T) {
	good := policyDir(t, map[string]string{"p.rego": tinyPolicy})
	if out, err := run(t, "", "policy", "check", good); err != nil || !strings.Contains(out, ": ok") {
		t.Fatalf("good policy: %v\n%s", err, out)
	}
	bad := policyDir(t, map[string]string{"p.rego": strings.Replace(tinyPolicy, "input.identity.subject", "input.identity.subjct", 1)})
	out, err := run(t, "", "policy", "check", bad)
	if exitCode(err) != 1 || !strings.Contains(out, "subjct") {
		t.Fatalf("typo: exit %d\n%s", exitCode(err), out)
	}
	out, err = run(t, "", "policy", "schema")
	if err != nil || !json.Valid([]byte(out)) || !strings.Contains(out, `"identity"`) {
		t.Fatalf("schema: %v\n%s", err, out)
	}
}

// Without --service, policy eval asks for the service of the broker it
// finds (--config, or the development state): the name the policy sees is
// the one real requests carry. An explicit --service wins.
func TestPolicyEvalDefaultsToTheConfiguredService(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	if _, _, err := devConfig(state, "127.0.0.1:5001"); err != nil {
		t.Fatal(err)
	}
	eval := []string{"policy", "eval", "--policy", "../../policies/default", "--user", "bob", "--scope", "repository:team/app:pull"}
	for _, tc := range []struct {
		name, want string
		args       []string
	}{
		{"config file", "registry.test", []string{"--config", writeConfig(t, validConfig)}},
		{"development state", devService, []string{"--state-dir", state}},
		{"explicit --service", "other.test", []string{"--state-dir", state, "--service", "other.test"}},
		{"no configuration", "registry.example.com", []string{"--state-dir", filepath.Join(t.TempDir(), "none")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(t, "", append(eval, tc.args...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if want := "service " + tc.want + "\n"; !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		})
	}
}
