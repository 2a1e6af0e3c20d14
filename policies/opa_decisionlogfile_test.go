package policies_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/policies"
)

// chanLog is a decision log that hands each line to the test.
type chanLog struct {
	ch chan []byte
}

func (l chanLog) Write(p []byte) (int, error) {
	l.ch <- slices.Clone(p)
	return len(p), nil
}

// TestReplayReadsTheDecisionLogPluginsLines: the lines policy.decision_log
// writes through OPA's decision_logs plugin (OPA's console line) replay as
// the broker's older lines do: through the same policy nothing changes,
// through a changed one exactly what deciding each input anew changes.
func TestReplayReadsTheDecisionLogPluginsLines(t *testing.T) {
	old, changed, _ := defaultAndChanged(t)
	tarball := filepath.Join(t.TempDir(), "b.tar.gz")
	f, _ := os.Create(tarball)
	if err := bundles.Build(context.Background(), "default", "rev-1", nil, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	doc := "bundles:\n  authz: {resource: file://" + tarball + "}\n"
	log := chanLog{ch: make(chan []byte, 1000)}
	e, err := policies.OpenOPA([]byte(doc), policies.OPAOptions{ID: "t", CacheSize: 100, CacheTTL: time.Minute, DecisionLog: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer e.Stop(context.Background())
	for deadline := time.Now().Add(10 * time.Second); !e.Ready(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the bundle was not activated")
		}
	}
	inputs := replayInputs(300)
	var lines []byte
	for _, in := range inputs {
		if _, err := e.Authorize(context.Background(), in); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, <-log.ch...) // written before Authorize returns: no outcome to wait for
	}
	if !strings.Contains(string(lines), `"msg":"Decision Log"`) {
		t.Fatalf("not OPA's console lines:\n%.500s", lines)
	}
	if got, _ := replayChanges(t, old, lines); len(got) != 0 {
		t.Fatalf("the recording policy changes its own decisions on lines %v", got)
	}
	want := directChanges(t, old, changed, inputs)
	got, total := replayChanges(t, changed, lines)
	if total != len(inputs) || !slices.Equal(got, want) || len(want) == 0 {
		t.Fatalf("replay of %d decisions reports %v, direct evaluation %v", total, got, want)
	}
}

// OPA hands events to one decision_logs plugin, and stops defaulting
// uploads to the first service once one is named: a document that relies
// on either is refused with policy.decision_log on, not silently changed.
func TestDecisionLogPluginRefusesWhatItWouldChange(t *testing.T) {
	base := "services:\n  s: {url: http://127.0.0.1:1}\nbundles:\n  authz: {service: s, resource: /b.tar.gz}\n"
	for doc, wantErr := range map[string]string{
		base:                                   "",
		base + "decision_logs: {service: s}\n": "",
		base + "decision_logs: {console: true}\n": "",
		base + "decision_logs: {service: t}\n":    "decision_logs.service: no service",
		"services: [{name: s, url: http://127.0.0.1:1}]\nbundles:\n  authz: {service: s, resource: /b.tar.gz}\ndecision_logs: {service: s}\n": "",
		base + "decision_logs: {mask_decision: /system/m}\n":    "decision_logs.service",
		base + "decision_logs: {plugin: x}\nplugins: {x: {}}\n": "decision_logs.plugin",
	} {
		_, err := policies.OpenOPA([]byte(doc), policies.OPAOptions{ID: "t", DecisionLog: chanLog{}})
		if wantErr == "" && err != nil || wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), wantErr)) {
			t.Errorf("%s: %v, want %q", doc, err, wantErr)
		}
	}
	if _, err := policies.OpenOPA([]byte(base+"decision_logs: {mask_decision: /system/m}\n"), policies.OPAOptions{ID: "t"}); err != nil {
		t.Errorf("without policy.decision_log: %v", err)
	}
}
