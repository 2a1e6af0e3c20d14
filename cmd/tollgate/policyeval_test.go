package main

import (
	"encoding/json"
	"strings"
	"testing"
)

const defaultPolicy = "../../policies/default"

// --explain answers for every requested action: the rule that granted it,
// or that nothing did.
func TestPolicyEvalExplainAnswersForEveryAction(t *testing.T) {
	out, err := run(t, "", "policy", "eval", "--policy", defaultPolicy, "--user", "bob",
		"--scope", "repository:team/app:pull,push", "--scope", "repository:nope/x:*", "--explain")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{
		"    pull: granted by rule at authz.rego:",
		"    push: denied: no rule granted push\n",
		"    *: denied: no rule granted any action\n",
		"because: bob is guest in project team",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Enter") {
		t.Errorf("a bare --explain printed a trace:\n%s", out)
	}

	out, err = run(t, "", "policy", "eval", "--policy", defaultPolicy, "--user", "bob", "--scope", "repository:team/app:push", "--explain", "--format", "json")
	var res evalResult
	if err != nil || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if a := res.Scopes[0].Answers; len(a) != 1 || a[0].Granted || a[0].Answer != "denied: no rule granted push" {
		t.Errorf("json answers: %+v", a)
	}
}

// --explain=MODE and --explain MODE print opa's trace of that mode.
func TestPolicyEvalExplainPrintsOpaTraces(t *testing.T) {
	base := []string{"policy", "eval", "--policy", defaultPolicy, "--user", "bob", "--scope", "repository:team/app:push"}
	for _, tc := range []struct {
		args          []string
		want, notWant string
	}{
		{[]string{"--explain=fails"}, "| | | Fail ", "Exit "},
		{[]string{"--explain", "full"}, "Exit ", ""},
	} {
		out, err := run(t, "", append(base, tc.args...)...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", tc.args, err, out)
		}
		if !strings.Contains(out, "/authz.rego:") {
			t.Errorf("%v: no locations in the trace:\n%s", tc.args, out)
		}
		if !strings.Contains(out, tc.want) || (tc.notWant != "" && strings.Contains(out, tc.notWant)) {
			t.Errorf("%v: want %q and not %q:\n%s", tc.args, tc.want, tc.notWant, out)
		}
	}
	if _, err := run(t, "", append(base, "--explain=everything")...); err == nil {
		t.Error("--explain=everything was accepted")
	}
	if _, err := run(t, "", append(base, "--explain", "full", "extra")...); err == nil {
		t.Error("a stray argument was accepted")
	}
}

// Robots and OIDC identities need claims: --claims and --connector build
// them without an input file; --groups is --group.
func TestPolicyEvalBuildsIdentitiesFromClaimsAndGroups(t *testing.T) {
	robot := `{"robot": {"name": "ci", "service": "", "scopes": [{"type": "repository", "name": "team/*", "actions": ["pull", "push"]}]}}`
	out, err := run(t, "", "policy", "eval", "--policy", defaultPolicy, "--connector", "robot", "--user", "robot-ci",
		"--claims", robot, "--scope", "repository:team/app:push,delete", "--explain")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "granted: push; denied: delete") || !strings.Contains(out, "robot-ci is a robot with the scope repository:team/*:pull,push") {
		t.Errorf("robot:\n%s", out)
	}
	// The same request without the robot's claims gets nothing.
	out, err = run(t, "", "policy", "eval", "--policy", defaultPolicy, "--connector", "robot", "--user", "robot-ci", "--scope", "repository:team/app:push")
	if err != nil || !strings.Contains(out, "granted: (nothing)") {
		t.Errorf("robot without claims: %v\n%s", err, out)
	}
	if _, err := run(t, "", "policy", "eval", "--policy", defaultPolicy, "--user", "x", "--claims", "[1]", "--scope", "repository:a/b:pull"); err == nil {
		t.Error("--claims [1] was accepted")
	}

	dir := policyDir(t, map[string]string{"p.rego": `package registry.authz
allowed contains {"type": s.type, "name": s.name, "action": "pull"} if {
	some s in input.scopes
	"ops" in input.identity.groups
	input.identity.claims.email == "a@example.com"
	print("groups", input.identity.groups)
	trace("ops it is")
}`})
	out, err = run(t, "", "policy", "eval", "--policy", dir, "--user", "a", "--groups", "dev", "--groups", "ops", "--claims", `{"email": "a@example.com"}`, "--scope", "repository:x/y:pull")
	if err != nil || !strings.Contains(out, "granted: pull") || !strings.Contains(out, `groups ["dev", "ops"]`) {
		t.Errorf("--groups, --claims and print(): %v\n%s", err, out)
	}
	out, err = run(t, "", "policy", "eval", "--policy", dir, "--user", "a", "--groups", "ops", "--claims", `{"email": "a@example.com"}`, "--scope", "repository:x/y:pull", "--explain=notes")
	if err != nil || !strings.Contains(out, "Note \"ops it is\"") || strings.Contains(out, "Fail ") {
		t.Errorf("--explain=notes: %v\n%s", err, out)
	}
}
