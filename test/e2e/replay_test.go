package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// changedLine starts each decision --against-log reports.
var changedLine = regexp.MustCompile(`(?m)^line \d+: `)

// policy test --against-log reads the decision logs a served broker
// writes, all in OPA's console line: policy.decision_log of a local source,
// OPA's console output under opa: (lines among the broker's log), and
// policy.decision_log under opa: (the older line tollgate wrote itself is
// replayed by the policies and cmd tests). A changed policy reports exactly
// the decision it changes, and exits 2 unless --allow-changes.
func TestAgainstLogReplaysTheBrokersDecisionLogs(t *testing.T) {
	needTollgate(t)
	bundleDir := filepath.Join(t.TempDir(), "bundle")
	writePolicy(t, bundleDir, testPolicyData)
	changed := filepath.Join(t.TempDir(), "changed")
	writePolicy(t, changed, strings.Replace(testPolicyData, `"bob": "guest"`, `"bob": "developer"`, 1))
	fileLog := filepath.Join(t.TempDir(), "decisions.jsonl")
	pluginLog := filepath.Join(t.TempDir(), "opa-decisions.jsonl")
	for _, c := range []struct {
		name string
		o    brokerOptions
		log  func(b *broker) string
	}{
		{"policy.decision_log", brokerOptions{policy: fmt.Sprintf("  decision_log: {enabled: true, path: %q}\n", fileLog)},
			func(*broker) string { return fileLog }},
		{"opa decision_logs console", brokerOptions{opa: fmt.Sprintf("opa:\n  bundles:\n    authz: {resource: %q}\n  decision_logs: {console: true}\n", "file://"+bundleDir)},
			func(b *broker) string { return b.proc.log }},
		{"opa with policy.decision_log", brokerOptions{opa: fmt.Sprintf("opa:\n  bundles:\n    authz: {resource: %q}\n", "file://"+bundleDir),
			policy: fmt.Sprintf("  decision_log: {enabled: true, path: %q}\n", pluginLog)},
			func(*broker) string { return pluginLog }},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := startBrokerWith(t, c.o)
			for _, u := range []string{"alice", "bob", "carol"} {
				b.getToken(t, flavors[0].service, u, "repository:team/app:pull,push")
			}
			log := c.log(b)
			waitFor(t, "three decisions in the log", func() bool {
				data, _ := os.ReadFile(log)
				return strings.Count(string(data), `"decision_id"`) >= 3
			})
			time.Sleep(100 * time.Millisecond) // the last line written whole

			if out := tollgate(t, "", "policy", "test", bundleDir, "--against-log", log); !strings.Contains(out, "0 of 3 decisions") {
				t.Errorf("the serving policy against its own log:\n%s", out)
			}
			out, err := tollgateErr(t, "policy", "test", changed, "--against-log", log)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 || len(changedLine.FindAllString(out, -1)) != 1 ||
				!strings.Contains(out, "bob via local") || !strings.Contains(out, "was: pull                 now: pull,push") ||
				!strings.Contains(out, "1 of 3 decisions") {
				t.Errorf("bob made a developer: %v\n%s", err, out)
			}
			if out, err := tollgateErr(t, "policy", "test", changed, "--against-log", log, "--allow-changes"); err != nil || !strings.Contains(out, "1 of 3 decisions") {
				t.Errorf("--allow-changes: %v\n%s", err, out)
			}
		})
	}
}
