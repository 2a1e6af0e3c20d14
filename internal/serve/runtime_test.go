package serve

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/internal/config"
	"github.com/tollgate/tollgate/scope"
)

// testConfig writes a configuration with one service, an htpasswd
// connector, a policy granting pull on everything and a decision log file,
// and returns its path.
func testConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	keyPEM, certPEM, err := broker.GenerateKey(broker.KeyEC, "test", time.Now().Add(-time.Minute), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := broker.WriteKeyPair(filepath.Join(dir, "keys"), "a", keyPEM, certPEM); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"users":             "",
		"policy/authz.rego": "package registry.authz\n\nallowed contains {\"type\": s.type, \"name\": s.name, \"action\": \"pull\"} if { s := input.scopes[_] }\n",
		"config.yaml": `listen: "127.0.0.1:0"
services:
  - name: registry.test
    default: true
    issuer: tollgate-test
    realm: http://localhost:5001/token
    keys: keys
identity:
  - name: local
    type: htpasswd
    file: users
policy:
  source: policy
  decision_log: {enabled: true, path: decisions.log}
metrics:
  enabled: true
`,
	}
	for name, body := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "config.yaml")
}

func newTestRuntime(t *testing.T, path string) *Runtime {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := New(context.Background(), cfg, Options{Version: "v9.9.9-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

// TestMetricsPresentFromTheStart: a scrape right after New has the build
// info and every counter an alert or a rate() needs, at 0.
func TestMetricsPresentFromTheStart(t *testing.T) {
	rt := newTestRuntime(t, testConfig(t))
	series := scrape(t, rt)
	for _, want := range []string{
		`tollgate_build_info{goversion="` + runtime.Version() + `",version="v9.9.9-test"} 1`,
		`tollgate_config_reloads_total{result="failure"} 0`,
		`tollgate_config_reloads_total{result="success"} 0`,
		`tollgate_token_requests_total{connector="",outcome="error",status="500"} 0`,
		`tollgate_token_requests_total{connector="",outcome="unavailable",status="503"} 0`,
		`tollgate_token_requests_total{connector="",outcome="unauthorized",status="401"} 0`,
		`tollgate_token_request_duration_seconds_count{outcome="granted"} 0`,
		`tollgate_policy_decisions_total{cached="true"} 0`,
		`tollgate_policy_decisions_total{cached="false"} 0`,
		`tollgate_access_tokens_reused_total 0`,
	} {
		if !slices.Contains(series, want) {
			t.Errorf("missing %s in:\n%s", want, strings.Join(series, "\n"))
		}
	}
}

// scrape returns the tollgate_ series of rt's /metrics, one per line.
func scrape(t *testing.T, rt *Runtime) []string {
	t.Helper()
	rec := httptest.NewRecorder()
	rt.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	var out []string
	for _, l := range strings.Split(rec.Body.String(), "\n") {
		if strings.HasPrefix(l, "tollgate_") {
			out = append(out, l)
		}
	}
	return out
}

// TestSigningCertificateExpiryGauge: one series per service and key id,
// the certificate's NotAfter; a reload that adds a key adds its series.
func TestSigningCertificateExpiryGauge(t *testing.T) {
	path := testConfig(t)
	keys := filepath.Join(filepath.Dir(path), "keys")
	addKey := func(name string, validity time.Duration) string {
		t.Helper()
		keyPEM, certPEM, err := broker.GenerateKey(broker.KeyEC, "test", time.Now().Add(-time.Minute), validity)
		if err != nil {
			t.Fatal(err)
		}
		k, err := broker.ParseKeyPair(keyPEM, certPEM)
		if err != nil {
			t.Fatal(err)
		}
		if err := broker.WriteKeyPair(keys, name, keyPEM, certPEM); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf(`tollgate_signing_certificate_expiry_timestamp_seconds{kid=%q,service="registry.test"} %s`,
			k.ID, strconv.FormatFloat(float64(k.Cert.NotAfter.Unix()), 'g', -1, 64))
	}
	b := addKey("b", 48*time.Hour)
	rt := newTestRuntime(t, path)
	got := expirySeries(scrape(t, rt))
	if len(got) != 2 || !slices.Contains(got, b) {
		t.Fatalf("want the test key and %s, got %q", b, got)
	}
	c := addKey("c", 90*24*time.Hour)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if got := expirySeries(scrape(t, rt)); len(got) != 3 || !slices.Contains(got, b) || !slices.Contains(got, c) {
		t.Fatalf("after a reload adding %s: %q", c, got)
	}
}

func expirySeries(series []string) []string {
	var out []string
	for _, s := range series {
		if strings.HasPrefix(s, "tollgate_signing_certificate_expiry_timestamp_seconds{") {
			out = append(out, s)
		}
	}
	return out
}

// TestDecisionLogReopenedOnReload: log rotation renames the file and
// signals; decisions after the reload go to a new file by the old name,
// those before stay in the renamed one. A reload whose file does not load
// reopens it too.
func TestDecisionLogReopenedOnReload(t *testing.T) {
	path := testConfig(t)
	logPath := filepath.Join(filepath.Dir(path), "decisions.log")
	rt := newTestRuntime(t, path)
	decide := func(repo string) {
		t.Helper()
		in := authz.Input{Service: "registry.test", Scopes: []scope.Scope{{Type: "repository", Name: repo, Actions: []string{"pull"}}}}
		if _, err := rt.authorizer.Authorize(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
	rotated := rotateAndReload(t, rt, path, logPath, decide)
	if err := os.Rename(logPath, rotated); err != nil {
		t.Fatal(err)
	}
	rt.ReloadFailed(errors.New("config.yaml: broken"))
	decide("after-failed-reload")
	if cur := readFile(t, logPath); !strings.Contains(cur, `"after-failed-reload"`) {
		t.Fatalf("new file after a failed reload:\n%s", cur)
	}
}

// rotateAndReload decides "before", renames the decision log away as
// logrotate does, reloads the configuration and decides "after": the
// renamed file must hold only "before", a new file at logPath only
// "after". It returns the renamed file's path.
func rotateAndReload(t *testing.T, rt *Runtime, path, logPath string, decide func(repo string)) string {
	t.Helper()
	decide("before")
	rotated := logPath + ".1"
	if err := os.Rename(logPath, rotated); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	decide("after")
	if old, cur := readFile(t, rotated), readFile(t, logPath); !strings.Contains(old, `"before"`) || strings.Contains(old, `"after"`) ||
		!strings.Contains(cur, `"after"`) || strings.Count(cur, "\n") != 1 {
		t.Fatalf("rotated file:\n%s\nnew file:\n%s", old, cur)
	}
	return rotated
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
