package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/policies"
	"github.com/tollgate/tollgate/scope"
	"github.com/tollgate/tollgate/test/opatest"
	"github.com/tollgate/tollgate/test/testenv"
)

// consoleEvents returns the decision-log lines of a log: those OPA's
// console logger writes with msg "Decision Log", by input.service.
func consoleEvents(t *testing.T, log string) map[string]map[string]any {
	t.Helper()
	events := map[string]map[string]any{}
	for _, line := range strings.Split(log, "\n") {
		var ev map[string]any
		if json.Unmarshal([]byte(line), &ev) != nil || ev["msg"] != "Decision Log" {
			continue
		}
		input, _ := ev["input"].(map[string]any)
		events[fmt.Sprint(input["service"])] = ev
	}
	return events
}

// TestDecisionLogFileLineIsOPAsConsoleLine: with policy.decision_log, each
// line is what `opa run`'s decision_logs.console writes for the same
// decision, field for field apart from ids and times (level, msg, type, the
// error as its message), after the same mask and drop policies; the
// document's upload to a collector goes on beside it.
func TestDecisionLogFileLineIsOPAsConsoleLine(t *testing.T) {
	collector, public := bundleAndCollector(t, opatest.Keep)
	cfgFile := writeConfig(t, opaConfig(t, collector.URL, public, t.TempDir())+"labels: {team: registry}\n"+uploadEverySecond+"  console: true\n")
	doc, _ := os.ReadFile(cfgFile)
	in := opaTestInput
	in.Identity.Claims = map[string]any{"email": "alice@example.com", "sub": "alice"}
	dropped, boom := in, in
	dropped.Service, boom.Service = "dropped", "boom"

	var ours testenv.SyncBuffer
	e, err := policies.OpenOPA(doc, policies.OPAOptions{ID: "test", CacheSize: 100, CacheTTL: time.Minute, DecisionLog: &ours})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Stop(context.Background()) })
	waitFor(t, "tollgate to activate the bundle", e.Ready)
	ctx := authz.WithRemoteAddr(context.Background(), "127.0.0.1:50123")
	for _, in := range []authz.Input{in, dropped, boom} {
		e.Authorize(ctx, in)
	}

	base, theirs := startOPARun(t, cfgFile)
	for _, in := range []authz.Input{in, dropped, boom} {
		opaRunAllowed(t, base, in) // for the decision it logs
	}
	waitFor(t, "opa's console lines", func() bool { return len(consoleEvents(t, theirs.String())) == 2 })
	got, want := consoleEvents(t, ours.String()), consoleEvents(t, theirs.String())
	if strings.Count(ours.String(), "\n") != 2 || len(got) != 2 {
		t.Fatalf("tollgate wrote, want 2 lines (one dropped):\n%s", ours.String())
	}
	for _, service := range []string{in.Service, "boom"} {
		a, b := got[service], want[service]
		if a == nil || b == nil {
			t.Fatalf("%s: no line: tollgate %v, opa %v", service, a, b)
		}
		for _, ev := range []map[string]any{a, b} {
			delete(ev, "time")
		}
		if tg := a["custom"].(map[string]any)[policies.DecisionLogKey]; tg == nil {
			t.Errorf("%s: no custom.%s: %v", service, policies.DecisionLogKey, a)
		}
		if x, y := comparableEvent(t, a), comparableEvent(t, b); x != y {
			t.Errorf("%s: the lines differ:\ntollgate: %s\nopa:      %s", service, x, y)
		}
	}
	if errMsg, _ := got["boom"]["error"].(string); !strings.Contains(errMsg, "eval_conflict_error") {
		t.Errorf("the error is not OPA's message: %v", got["boom"]["error"])
	}
	if strings.Contains(ours.String(), "alice@example.com") || !strings.Contains(ours.String(), `"erased":["/input/identity/claims/email"]`) {
		t.Errorf("the mask policy was not applied:\n%s", ours.String())
	}
	waitFor(t, "the upload beside the file", func() bool { return decisionEvent(collector, true, "boom") != nil })
}

// TestShortFormDecisionLogFileReopenedOnReload: a URL policy.source writes
// policy.decision_log through OPA's decision_logs plugin: OPA's default
// mask policy (system.log.mask in the bundle) applies to the file, and a
// reload (SIGHUP after log rotation renamed it) opens a new file by the
// old name.
func TestShortFormDecisionLogFileReopenedOnReload(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "authz.rego"), []byte(opaTestPolicy), 0o644)
	os.WriteFile(filepath.Join(dir, "data.json"), []byte(`{"grants": {"dev": ["pull"]}}`), 0o644)
	os.WriteFile(filepath.Join(dir, "mask.rego"), []byte(opaTestMask), 0o644)
	var bundle bytes.Buffer
	if err := bundles.Build(context.Background(), dir, "rev-3", nil, &bundle); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(bundle.Bytes()) }))
	defer srv.Close()
	path := testConfig(t)
	raw, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(raw), "  source: policy\n", "  source: "+srv.URL+"/b.tar.gz\n", 1)), 0o600)
	logPath := filepath.Join(filepath.Dir(path), "decisions.log")
	rt := newTestRuntime(t, path)
	waitFor(t, "the bundle", rt.opa.Ready)
	decide := func(repo string) {
		t.Helper()
		in := opaTestInput
		in.Identity.Claims = map[string]any{"email": "alice@example.com"}
		in.Scopes = []scope.Scope{{Type: "repository", Name: repo, Actions: []string{"pull"}}}
		if _, err := rt.authorizer.Authorize(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
	rotateAndReload(t, rt, path, logPath, decide)
	cur := readFile(t, logPath)
	ev := consoleEvents(t, cur)["registry.example.com"]
	if ev == nil || ev["type"] != "openpolicyagent.org/decision_logs" || ev["path"] != "registry/authz/allowed" ||
		fmt.Sprint(ev["bundles"]) != "map[tollgate:map[revision:rev-3]]" || strings.Contains(cur, "alice@example.com") {
		t.Fatalf("not OPA's masked event: %s", cur)
	}
}
