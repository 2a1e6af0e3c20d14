package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/authz"
)

// policy test --against-log prints the recorded decisions a changed policy
// decides differently, with their input, and fails unless --allow-changes.
// The log is three lines the broker's older decision log wrote under the
// default policy (alice, bob, carol asking team/app:pull,push), as archives
// from earlier releases hold; OPA's line is replayed by the policies tests
// and, from a served broker, by the e2e tests.
func TestPolicyTestAgainstLogPrintsChangedDecisions(t *testing.T) {
	logFile := "testdata/decisions-old.jsonl"

	out, err := run(t, "", "policy", "test", "../../policies/default", "--against-log", logFile)
	if err != nil || !strings.Contains(out, "0 of 3 decisions") {
		t.Fatalf("the recording policy: %v\n%s", err, out)
	}
	changed := t.TempDir()
	rego, _ := os.ReadFile("../../policies/default/authz.rego")
	data, _ := os.ReadFile("../../policies/default/data.json")
	os.WriteFile(filepath.Join(changed, "authz.rego"), rego, 0o644)
	os.WriteFile(filepath.Join(changed, "data.json"), bytes.Replace(data, []byte(`"bob": "guest"`), []byte(`"bob": "developer"`), 1), 0o644)
	out, err = run(t, "", "policy", "test", "--against-log", logFile, changed)
	if exitCode(err) != exitTestsFailed || !strings.Contains(out, "line 2: bob via local") ||
		!strings.Contains(out, "was: pull                 now: pull,push") || !strings.Contains(out, `input: {"service":"registry.test"`) ||
		strings.Contains(out, "alice") || !strings.Contains(out, "1 of 3 decisions") {
		t.Fatalf("bob made a developer: exit %d (%v)\n%s", exitCode(err), err, out)
	}
	if out, err := run(t, "", "policy", "test", "--against-log", logFile, "--allow-changes", changed); err != nil || !strings.Contains(out, "line 2: bob") {
		t.Fatalf("--allow-changes: %v\n%s", err, out)
	}
	out, err = run(t, "", "policy", "test", "--against-log", logFile, "--allow-changes", "--format", "json", changed)
	var change struct {
		Line          int
		Input         authz.Input
		Before, After [][]string
	}
	if err != nil || json.Unmarshal([]byte(out), &change) != nil || change.Line != 2 || change.Input.Identity.Subject != "bob" ||
		fmt.Sprint(change.Before, change.After) != "[[pull]] [[pull push]]" {
		t.Fatalf("--format json: %v %+v\n%s", err, change, out)
	}
}

// A decision log is written from requests: a subject, connector, group or
// repository name with terminal escapes (ESC, BEL) must reach the
// reviewer's terminal quoted, never raw.
func TestPolicyTestAgainstLogQuotesControlCharacters(t *testing.T) {
	line := `{"input": {"service": "reg\u0007", "identity": {"subject": "evil\u001b]0;PWNED\u0007\u001b[31mred", "connector": "x\u001b[2J",` +
		` "groups": ["g\u001b[1m"], "anonymous": false}, "scopes": [{"type": "repository", "name": "library/r0\u001b[0m", "actions": ["pull"]}],` +
		` "client": {"ip": "1.2.3.4"}}, "result": [{"type": "repository", "name": "library/r0\u001b[0m", "action": "pull\u001b[8m"}]}` + "\n"
	logFile := filepath.Join(t.TempDir(), "decisions.log")
	os.WriteFile(logFile, []byte(line), 0o644)
	out, err := run(t, "", "policy", "test", "../../policies/default", "--against-log", logFile)
	if exitCode(err) != exitTestsFailed || !strings.Contains(out, "line 1:") {
		t.Fatalf("exit %d (%v)\n%s", exitCode(err), err, out)
	}
	if strings.ContainsAny(out, "\x1b\x07") {
		t.Errorf("control characters printed raw: %q", out)
	}
	if !strings.Contains(out, `"evil\x1b]0;PWNED\a\x1b[31mred"`) {
		t.Errorf("the subject is not shown quoted: %q", out)
	}
}
