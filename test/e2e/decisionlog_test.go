package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDecisionLogFile: with policy.decision_log on, each decision is one
// line in OPA's decision-log shape in the file, and no password is in it.
func TestDecisionLogFile(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "decisions.jsonl")
	b := startBrokerWith(t, brokerOptions{policy: fmt.Sprintf("  decision_log: {enabled: true, path: %q}\n", logFile)})
	svc := flavors[0].service
	b.getToken(t, svc, "alice", "repository:team/app:pull,push")
	b.getToken(t, svc, "bob", "repository:team/app:pull,push")

	var lines []string
	for deadline := time.Now().Add(5 * time.Second); len(lines) < 2 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		data, _ := os.ReadFile(logFile)
		lines = strings.FieldsFunc(string(data), func(r rune) bool { return r == '\n' })
	}
	if len(lines) != 2 {
		t.Fatalf("%d decision lines, want 2: %q", len(lines), lines)
	}
	want := map[string]string{"alice": "pull,push", "bob": "pull"}
	for _, line := range lines {
		for _, pw := range b.passwords {
			if strings.Contains(line, pw) {
				t.Fatalf("a password is in the decision log: %s", line)
			}
		}
		var e struct {
			DecisionID string `json:"decision_id"`
			Path       string `json:"path"`
			Bundles    map[string]struct {
				Revision string `json:"revision"`
			} `json:"bundles"`
			Input struct {
				Identity struct {
					Subject string `json:"subject"`
				} `json:"identity"`
			} `json:"input"`
			Result []struct{ Type, Name, Action string } `json:"result"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("not JSON: %v: %s", err, line)
		}
		var actions []string
		for _, r := range e.Result {
			if r.Type != "repository" || r.Name != "team/app" {
				t.Errorf("result entry %+v", r)
			}
			actions = append(actions, r.Action)
		}
		who := e.Input.Identity.Subject
		if e.DecisionID == "" || e.Path != "registry/authz/allowed" || e.Bundles["tollgate"].Revision == "" || strings.Join(actions, ",") != want[who] {
			t.Errorf("decision line for %q: %s", who, line)
		}
	}
}
