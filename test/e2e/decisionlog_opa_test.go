package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDecisionLogFileWithOPASection: with an opa: section, policy.decision_log
// is written by OPA's decision_logs plugin: each line is OPA's console line
// (msg "Decision Log", type, bundles, req_id) with tollgate's facts, the
// token id included, under custom.tollgate, and no password; after log
// rotation renamed the file, a SIGHUP sends the next decisions to a new
// file by the old name.
func TestDecisionLogFileWithOPASection(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "decisions.jsonl")
	bundleDir := filepath.Join(t.TempDir(), "bundle")
	writePolicy(t, bundleDir, testPolicyData)
	b := startBrokerWith(t, brokerOptions{
		opa:    fmt.Sprintf("opa:\n  bundles:\n    authz: {resource: %q}\n", "file://"+bundleDir),
		policy: fmt.Sprintf("  decision_log: {enabled: true, path: %q}\n", logFile),
	})
	svc := flavors[0].service
	lines := func(path string, n int) []string {
		t.Helper()
		var lines []string
		for deadline := time.Now().Add(5 * time.Second); len(lines) < n && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			data, _ := os.ReadFile(path)
			lines = strings.FieldsFunc(string(data), func(r rune) bool { return r == '\n' })
		}
		if len(lines) != n {
			t.Fatalf("%s: %d decision lines, want %d: %q", path, len(lines), n, lines)
		}
		return lines
	}
	b.getToken(t, svc, "alice", "repository:team/app:pull,push")
	line := lines(logFile, 1)[0]
	for _, pw := range b.passwords {
		if strings.Contains(line, pw) {
			t.Fatalf("a password is in the decision log: %s", line)
		}
	}
	var e struct {
		DecisionID string `json:"decision_id"`
		Bundles    map[string]struct{ Revision string }
		ReqID      int `json:"req_id"`
		Custom     struct {
			Tollgate struct {
				TokenID string `json:"token_id"`
				Service string
			}
		}
	}
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		t.Fatalf("not JSON: %v: %s", err, line)
	}
	var raw map[string]any
	json.Unmarshal([]byte(line), &raw)
	if raw["msg"] != "Decision Log" || raw["type"] != "openpolicyagent.org/decision_logs" || raw["path"] != "registry/authz/allowed" ||
		e.DecisionID == "" || e.ReqID != 1 || e.Custom.Tollgate.TokenID == "" || e.Custom.Tollgate.Service != svc {
		t.Fatalf("not OPA's console line with tollgate's facts: %s", line)
	}
	if _, ok := e.Bundles["authz"]; !ok {
		t.Errorf("no bundles.authz: %s", line)
	}

	rotated := logFile + ".1"
	if err := os.Rename(logFile, rotated); err != nil {
		t.Fatal(err)
	}
	if err := b.proc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, b.proc, "the reload", func() error {
		if data, _ := os.ReadFile(b.proc.log); !strings.Contains(string(data), "configuration reloaded") {
			return errors.New("not logged yet")
		}
		return nil
	})
	b.getToken(t, svc, "bob", "repository:team/app:pull")
	if got := lines(logFile, 1)[0]; !strings.Contains(got, `"subject":"bob"`) {
		t.Errorf("the new file holds %s", got)
	}
	if got := lines(rotated, 1)[0]; !strings.Contains(got, `"subject":"alice"`) {
		t.Errorf("the rotated file holds %s", got)
	}
}
