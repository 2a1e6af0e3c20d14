package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/test/testenv"
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

// --watch runs the tests again when a file changes, and stops when its
// context ends (Ctrl-C) with status 0, as opa test --watch.
func TestPolicyTestWatchRerunsOnChange(t *testing.T) {
	const test = "package registry.authz_test\nimport data.registry.authz\ntest_alice if count(authz.allowed) == %d with input as {\"identity\": {\"subject\": \"alice\"}, \"scopes\": [{\"type\": \"repository\", \"name\": \"a\", \"actions\": [\"pull\"]}]}\n"
	dir := policyDir(t, map[string]string{"p.rego": tinyPolicy, "p_test.rego": fmt.Sprintf(test, 1)})
	var out, errOut testenv.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- watchPolicyTests(ctx, &out, []string{dir}, policyTestOptions{format: "pretty", count: 1, query: "data.registry.authz", errOut: &errOut}, 20*time.Millisecond)
	}()
	waitFor := func(what string, n int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); strings.Count(out.String(), what) < n; {
			if time.Now().After(deadline) {
				t.Fatalf("no %q (%d times) in:\n%s", what, n, out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("Watching for changes ...", 1)
	if !strings.Contains(out.String(), "PASS: 1/1") {
		t.Fatalf("first run:\n%s", out.String())
	}
	time.Sleep(20 * time.Millisecond) // a later modification time on coarse clocks
	os.WriteFile(filepath.Join(dir, "p_test.rego"), []byte(fmt.Sprintf(test, 2)+"\n"), 0o644)
	waitFor("Watching for changes ...", 2)
	if !strings.Contains(out.String(), "FAIL: 1/1") || !strings.Contains(errOut.String(), "1 of 1 tests failed") {
		t.Fatalf("after the change:\n%s\nstderr:\n%s", out.String(), errOut.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("stopped watching: %v", err)
	}
}
