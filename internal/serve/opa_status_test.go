package serve

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/test/testenv"
)

// statusCollector speaks OPA's status API: POSTs of a JSON status report.
// It keeps the last report of each instance (labels.id) that has every
// bundle active.
type statusCollector struct {
	mu   sync.Mutex
	last map[string]map[string]any
}

func (c *statusCollector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var report map[string]any
	if err == nil {
		err = json.Unmarshal(body, &report)
	}
	if err != nil {
		http.Error(w, "not a status report", http.StatusBadRequest)
		return
	}
	labels, _ := report["labels"].(map[string]any)
	id, _ := labels["id"].(string)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		c.last = map[string]map[string]any{}
	}
	c.last[id] = report
}

// activeRevision is the active revision of bundle authz in a report.
func activeRevision(report map[string]any) string {
	b, _ := report["bundles"].(map[string]any)
	authz, _ := b["authz"].(map[string]any)
	rev, _ := authz["active_revision"].(string)
	return rev
}

// comparableReport is a status report as JSON without what differs between
// two processes: ids, versions, times, tollgate's own auth plugins
// (tollgate.limits.*, which stand for the services' credentials) and
// opa run's process metrics (metrics.prometheus: its Go runtime and HTTP
// server; tollgate's are on its own /metrics). Values that are times or
// counts are replaced by their keys.
func comparableReport(t *testing.T, report map[string]any) string {
	t.Helper()
	labels := maps.Clone(report["labels"].(map[string]any))
	delete(labels, "id")
	delete(labels, "version")
	authz := report["bundles"].(map[string]any)["authz"].(map[string]any)
	plugins := map[string]any{}
	for name, st := range report["plugins"].(map[string]any) {
		if !strings.HasPrefix(name, "tollgate.limits.") {
			plugins[name] = st
		}
	}
	keys := slices.DeleteFunc(slices.Sorted(maps.Keys(report)), func(k string) bool { return k == "metrics" })
	out, _ := json.Marshal(map[string]any{
		"keys":   keys,
		"labels": labels, "plugins": plugins,
		"bundle": map[string]any{"name": authz["name"], "active_revision": authz["active_revision"],
			"keys": slices.Sorted(maps.Keys(authz))},
	})
	return string(out)
}

// TestOPAStatusReportsAsOPARunUploadsThem: with the same configuration
// (status uploaded to a collector, labels), tollgate's status reports carry
// the active revision and the labels, and have the fields and values of
// those `opa run --server` uploads, apart from ids, versions, times and
// process metrics.
func TestOPAStatusReportsAsOPARunUploadsThem(t *testing.T) {
	private, public := testenv.WriteES256KeyPair(t, t.TempDir())
	bundle, _ := signedBundleServer(t, private)
	collector := &statusCollector{}
	mux := http.NewServeMux()
	mux.Handle("POST /status", collector)
	mux.Handle("/", bundle.Config.Handler)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	doc := opaConfig(t, srv.URL, public, t.TempDir()) + "labels: {team: registry, region: eu}\nstatus: {service: bundles}\n"

	e := openLimitedOPA(t, doc, nil) // labels.id "test"
	waitFor(t, "tollgate to activate the bundle", e.Ready)
	startOPARun(t, writeConfig(t, doc))
	// Plugins report their states one by one (opa run's discovery plugin
	// was seen NOT_READY in a report that already had the bundle): compare
	// the latest reports once both have settled, or show the last two.
	var ours, theirs map[string]any
	var a, b string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		collector.mu.Lock()
		for id, r := range collector.last {
			if id != "test" && activeRevision(r) == "rev-1" {
				theirs = r
			}
		}
		if r := collector.last["test"]; activeRevision(r) == "rev-1" {
			ours = r
		}
		collector.mu.Unlock()
		if ours != nil && theirs != nil {
			if a, b = comparableReport(t, ours), comparableReport(t, theirs); a == b {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the status reports differ:\ntollgate: %s\nopa:      %s", a, b)
		}
	}
	if labels := ours["labels"].(map[string]any); labels["team"] != "registry" || labels["region"] != "eu" {
		t.Errorf("tollgate's report has labels %v", labels)
	}
}
