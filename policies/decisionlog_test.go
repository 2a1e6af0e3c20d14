package policies_test

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policies"
)

func decodeLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not one JSON object per line: %v\n%s", err, line)
		}
		out = append(out, m)
	}
	return out
}

// TestDecisionLogHasOPAShape checks the fields OPA's decision-log consumers
// read: decision_id, labels, bundles.<name>.revision, path, input, result,
// timestamp, metrics.
func TestDecisionLogHasOPAShape(t *testing.T) {
	e := policies.NewEngine(100, time.Minute)
	var buf bytes.Buffer
	dl := policies.NewDecisionLog(e, &buf, "data.registry.authz", map[string]string{"id": "test-1", "version": "dev"})
	ctx := context.Background()

	if _, err := dl.Authorize(ctx, input("alice")); err == nil {
		t.Fatal("no policy: want an error")
	}
	p := compile(t, pullForAlice)
	e.Swap(p)
	in := input("alice")
	in.Client.IP = "192.0.2.7"
	for range 2 { // the second answer comes from the cache
		d, err := dl.Authorize(ctx, in)
		if err != nil || !d.Allowed[0]["pull"] {
			t.Fatalf("decision %+v, %v", d, err)
		}
	}
	if _, err := dl.Authorize(ctx, input("bob")); err != nil {
		t.Fatal(err)
	}

	lines := decodeLines(t, &buf)
	if len(lines) != 4 {
		t.Fatalf("%d lines, want one per decision (4)", len(lines))
	}
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	ids := map[any]bool{}
	for i, l := range lines {
		id, _ := l["decision_id"].(string)
		if !uuid.MatchString(id) || ids[id] {
			t.Errorf("line %d: decision_id %q is not a fresh UUID", i, id)
		}
		ids[id] = true
		if l["path"] != "registry/authz/allowed" {
			t.Errorf("line %d: path %v", i, l["path"])
		}
		if labels, _ := l["labels"].(map[string]any); labels["id"] != "test-1" {
			t.Errorf("line %d: labels %v", i, l["labels"])
		}
		if _, err := time.Parse(time.RFC3339Nano, l["timestamp"].(string)); err != nil {
			t.Errorf("line %d: timestamp: %v", i, err)
		}
		if m, _ := l["metrics"].(map[string]any); m["timer_server_handler_ns"] == nil {
			t.Errorf("line %d: metrics %v", i, l["metrics"])
		}
	}

	if lines[0]["error"] == nil || lines[0]["result"] != nil {
		t.Errorf("no policy: %v", lines[0])
	}
	granted := lines[1]
	wantResult := `[{"action":"pull","name":"team/app","type":"repository"}]`
	if got, _ := json.Marshal(granted["result"]); string(got) != wantResult {
		t.Errorf("result %s, want %s", got, wantResult)
	}
	if b, _ := granted["bundles"].(map[string]any); b["tollgate"].(map[string]any)["revision"] != p.Revision() {
		t.Errorf("bundles %v, want revision %s", granted["bundles"], p.Revision())
	}
	in0, _ := granted["input"].(map[string]any)
	if id, _ := in0["identity"].(map[string]any); id["subject"] != "alice" || granted["requested_by"] != "192.0.2.7" {
		t.Errorf("input %v / requested_by %v", in0, granted["requested_by"])
	}
	if granted["cached"] != false || lines[2]["cached"] != true {
		t.Errorf("cached flags %v, %v: want false then true", granted["cached"], lines[2]["cached"])
	}
	if got, _ := json.Marshal(lines[3]["result"]); string(got) != "[]" {
		t.Errorf("denied decision result %s, want []", got)
	}
}
