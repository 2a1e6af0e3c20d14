package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/policies"
	"github.com/tollgate/tollgate/scope"
	"github.com/tollgate/tollgate/test/opatest"
	"github.com/tollgate/tollgate/test/testenv"
)

const opaTestPolicy = `package registry.authz

allowed contains {"type": s.type, "name": s.name, "action": a} if {
	some s in input.scopes
	startswith(s.name, "team/")
	some g in input.identity.groups
	some a in data.grants[g]
	a in s.actions
}

# An evaluation error on service "boom": f has two values for one input.
allowed contains {"type": "repository", "name": "boom", "action": f(1)} if input.service == "boom"

f(_) := "pull"

f(x) := "push" if x == 1
`

// opaTestMask is OPA's decision-log mask and drop policy: the email claim
// is not uploaded, nor any decision for service "dropped".
const opaTestMask = `package system.log

mask contains "/input/identity/claims/email"

drop if input.input.service == "dropped"
`

// signedBundleServer serves a bundle built and signed by tollgate (as
// `opa build --signing-key` would) at /b/authz.tar.gz; down makes it answer
// 503, as a bundle server in trouble does.
func signedBundleServer(t *testing.T, private string) (srv *httptest.Server, down *atomic.Bool) {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "authz.rego"), []byte(opaTestPolicy), 0o644)
	os.WriteFile(filepath.Join(dir, "data.json"), []byte(`{"grants": {"dev": ["pull"], "ops": ["pull", "push"]}}`), 0o644)
	os.WriteFile(filepath.Join(dir, "mask.rego"), []byte(opaTestMask), 0o644)
	var buf bytes.Buffer
	if err := bundles.Build(context.Background(), dir, "rev-1", &bundles.Signing{Key: private, Algorithm: "ES256", KeyID: "tg"}, &buf); err != nil {
		t.Fatal(err)
	}
	down = &atomic.Bool{}
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() || r.URL.Path != "/b/authz.tar.gz" {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Write(buf.Bytes())
	}))
	t.Cleanup(srv.Close)
	return srv, down
}

// opaConfig is an OPA configuration document: a service, a signed bundle
// persisted under persist, the key that verifies it.
func opaConfig(t *testing.T, url, public, persist string) string {
	t.Helper()
	pub, err := os.ReadFile(public)
	if err != nil {
		t.Fatal(err)
	}
	indented := strings.ReplaceAll(strings.TrimSpace(string(pub)), "\n", "\n      ")
	return fmt.Sprintf(`services:
  bundles:
    url: %s
bundles:
  authz:
    service: bundles
    resource: /b/authz.tar.gz
    persist: true
    polling: {min_delay_seconds: 1, max_delay_seconds: 2}
    signing: {keyid: tg}
keys:
  tg:
    algorithm: ES256
    key: |
      %s
persistence_directory: %s
`, url, indented, persist)
}

func openTestOPA(t *testing.T, doc string) *policies.OPA {
	t.Helper()
	e, err := policies.OpenOPA([]byte(doc), policies.OPAOptions{ID: "test", CacheSize: 100, CacheTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Stop(context.Background()); cancel() })
	return e
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

var opaTestInput = authz.Input{
	Service:  "registry.example.com",
	Identity: identity.Identity{Subject: "alice", Groups: []string{"dev"}, Connector: "ldap", Claims: map[string]any{}},
	Scopes:   []scope.Scope{{Type: "repository", Name: "team/app", Actions: []string{"pull", "push"}}},
	Client:   authz.Client{IP: "10.0.0.7", UserAgent: "docker/27.0"},
}

// TestOPAConfigDecidesAsOPARunDoes: the same OPA configuration file,
// given to `opa run --server` and to tollgate's opa section, loads the same
// signed bundle from a bundle server, and both allow the same actions.
func TestOPAConfigDecidesAsOPARunDoes(t *testing.T) {
	private, public := testenv.WriteES256KeyPair(t, t.TempDir())
	srv, _ := signedBundleServer(t, private)
	cfgFile := filepath.Join(t.TempDir(), "opa.yaml")
	os.WriteFile(cfgFile, []byte(opaConfig(t, srv.URL, public, t.TempDir())), 0o644)
	doc, _ := os.ReadFile(cfgFile)

	e := openTestOPA(t, string(doc))
	waitFor(t, "tollgate to activate the bundle", e.Ready)
	d, err := e.Authorize(context.Background(), opaTestInput)
	if err != nil {
		t.Fatal(err)
	}
	if d.Revision != "rev-1" || !d.Allowed[0]["pull"] || d.Allowed[0]["push"] {
		t.Fatalf("tollgate decided %+v, want pull only under rev-1", d)
	}
	if d, _ := e.Authorize(context.Background(), opaTestInput); !d.Cached {
		t.Fatal("the second identical decision did not come from the cache")
	}

	base, _ := startOPARun(t, cfgFile)
	if theirs := opaRunAllowed(t, base, opaTestInput); fmt.Sprint(theirs) != fmt.Sprint(d.Allowed[0]) {
		t.Fatalf("opa allowed %v, tollgate %v", theirs, d.Allowed[0])
	}
}

// TestOPAColdStartServesThePersistedBundle: with the bundle server down, a
// broker that persisted the bundle before serves its revision and /readyz
// says where it came from; one without a persisted copy refuses (503).
func TestOPAColdStartServesThePersistedBundle(t *testing.T) {
	private, public := testenv.WriteES256KeyPair(t, t.TempDir())
	srv, down := signedBundleServer(t, private)
	persist := t.TempDir()

	first := openTestOPA(t, opaConfig(t, srv.URL, public, persist))
	waitFor(t, "the first broker to activate the bundle", first.Ready)
	if lines := strings.Join(opaStatus(context.Background(), first), "\n"); !strings.Contains(lines, "bundle authz: revision rev-1 (downloaded") {
		t.Fatalf("readyz after a download:\n%s", lines)
	}
	first.Stop(context.Background())
	down.Store(true)

	cold := openTestOPA(t, opaConfig(t, srv.URL, public, persist))
	if !cold.Ready() {
		t.Fatal("a cold start with a persisted bundle is not ready")
	}
	d, err := cold.Authorize(context.Background(), opaTestInput)
	if err != nil || d.Revision != "rev-1" || !d.Allowed[0]["pull"] {
		t.Fatalf("cold start decided %+v, %v", d, err)
	}
	waitFor(t, "a failed download to be reported", func() bool {
		return strings.Contains(strings.Join(opaStatus(context.Background(), cold), "\n"), "last error")
	})
	lines := strings.Join(opaStatus(context.Background(), cold), "\n")
	if !strings.Contains(lines, "bundle authz: revision rev-1 (from the persisted copy") {
		t.Fatalf("readyz on a cold start:\n%s", lines)
	}

	none := openTestOPA(t, opaConfig(t, srv.URL, public, t.TempDir()))
	if none.Ready() {
		t.Fatal("ready without any bundle")
	}
	if _, err := none.Authorize(context.Background(), opaTestInput); !errors.Is(err, authz.ErrNoPolicy) {
		t.Fatalf("without a bundle: %v, want ErrNoPolicy (503)", err)
	}
	if lines := strings.Join(opaStatus(context.Background(), none), "\n"); !strings.Contains(lines, "bundle authz: not active") {
		t.Fatalf("readyz without a bundle:\n%s", lines)
	}
}

// TestOPABundleBombsAreRefusedWithinTheLimits: the bombs tollgate's own
// poller refuses (testenv.HostileBundles) are refused on OPA's download
// path too, before OPA expands them, with or without signatures required:
// no bundle is activated, /readyz names the limit, the heap stays small.
func TestOPABundleBombsAreRefusedWithinTheLimits(t *testing.T) {
	_, public := testenv.WriteES256KeyPair(t, t.TempDir())
	const most = 16 << 20 // a quarter of the size limit
	for _, bc := range testenv.HostileBundles(t) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(bc.Data) }))
		t.Cleanup(srv.Close)
		for _, signed := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/signatures required %v", bc.Name, signed), func(t *testing.T) {
				doc := opaConfig(t, srv.URL, public, t.TempDir())
				if !signed {
					doc = strings.Replace(doc, "    signing: {keyid: tg}\n", "", 1)
				}
				var e *policies.OPA
				var lines string
				grew := testenv.HeapGrowth(func() {
					e = openLimitedOPA(t, doc, nil)
					waitFor(t, "the download to fail", func() bool {
						lines = strings.Join(opaStatus(context.Background(), e), "\n")
						return strings.Contains(lines, "last error")
					})
				})
				t.Logf("the heap grew by %d KiB: %s", grew>>10, lines)
				if e.Ready() || !strings.Contains(lines, "bundle exceeds its limit") || !strings.Contains(lines, bc.Want) {
					t.Errorf("ready %v, /readyz %q: want not ready and the limit on %s named", e.Ready(), lines, bc.Want)
				}
				if grew > most {
					t.Errorf("the heap grew by %d MiB, want at most %d MiB", grew>>20, most>>20)
				}
			})
		}
	}
}

// openLimitedOPA opens OPA as serve does, with the default bundle limits,
// logging to log when not nil.
func openLimitedOPA(t *testing.T, doc string, log *slog.Logger) *policies.OPA {
	t.Helper()
	e, err := policies.OpenOPA([]byte(doc), policies.OPAOptions{ID: "test", CacheSize: 100, CacheTTL: time.Minute,
		MaxFileBytes: bundles.DefaultMaxBytes, Limits: bundles.Limits{}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Stop(context.Background()); cancel() })
	return e
}

// TestOPAServiceCredentialsShowNowhere: a bearer token given to OPA's
// services reaches the bundle and status services through tollgate's
// limits, and shows neither in the log (at debug), /readyz, nor the status
// reports, also after a failed download.
func TestOPAServiceCredentialsShowNowhere(t *testing.T) {
	const token = "s3cret-service-token"
	private, public := testenv.WriteES256KeyPair(t, t.TempDir())
	bundle, down := signedBundleServer(t, private)
	var mu sync.Mutex
	var seen []string // Authorization headers, and every status report
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		if r.Method == http.MethodPost {
			if strings.Contains(string(body), token) {
				t.Errorf("a status report holds the token: %s", body)
			}
			return
		}
		bundle.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	down.Store(true)
	doc := strings.Replace(opaConfig(t, srv.URL, public, t.TempDir()), "    url: "+srv.URL+"\n",
		"    url: "+srv.URL+"\n    credentials: {bearer: {token: "+token+"}}\n", 1) +
		"status: {service: bundles}\n"
	log := &testenv.SyncBuffer{}
	e := openLimitedOPA(t, doc, slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})))
	waitFor(t, "a failed download", func() bool {
		return strings.Contains(strings.Join(opaStatus(context.Background(), e), "\n"), "last error")
	})
	failing := strings.Join(opaStatus(context.Background(), e), "\n")
	down.Store(false)
	waitFor(t, "the bundle", e.Ready)
	waitFor(t, "a status report", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(strings.Join(seen, "\n"), "POST /status")
	})
	mu.Lock()
	defer mu.Unlock()
	for _, s := range seen {
		if !strings.HasSuffix(s, " Bearer "+token) {
			t.Errorf("%q: the service's credentials were not sent", s)
		}
	}
	for where, text := range map[string]string{"log": log.String(), "/readyz while failing": failing,
		"/readyz": strings.Join(opaStatus(context.Background(), e), "\n")} {
		if strings.Contains(text, token) {
			t.Errorf("the token shows in the %s:\n%s", where, text)
		}
	}
	if !strings.Contains(log.String(), "REDACTED") {
		t.Errorf("the log at debug shows no request, so it proves nothing:\n%s", log.String())
	}
}

// bundleAndCollector serves the bundle of signedBundleServer and, at
// /logs, a decision-log collector answering as mode says; public is the
// key that verifies the bundle.
func bundleAndCollector(t *testing.T, mode opatest.Mode) (c *opatest.Collector, public string) {
	t.Helper()
	private, public := testenv.WriteES256KeyPair(t, t.TempDir())
	bundle, _ := signedBundleServer(t, private)
	return opatest.Start(t, mode, bundle.Config.Handler), public
}

// uploadEverySecond is the decision_logs section that uploads to
// bundleAndCollector's collector.
const uploadEverySecond = `decision_logs:
  service: bundles
  resource: /logs
  reporting: {min_delay_seconds: 1, max_delay_seconds: 1}
`

// decisionEvent returns the first event c kept for service for which
// tollgate is whether it holds tollgate's key, or nil.
func decisionEvent(c *opatest.Collector, tollgate bool, service string) map[string]any {
	return c.Find(func(e map[string]any) bool {
		custom, _ := e["custom"].(map[string]any)
		_, ok := custom[policies.DecisionLogKey]
		return ok == tollgate && opatest.Input(e)["service"] == service
	})
}

// TestOPADecisionLogsAsOPARunUploadsThem: with the same OPA configuration
// (a signed bundle, decision_logs uploaded to a collector, labels, mask and
// drop policies in the bundle), tollgate and `opa run --server` upload, for
// the same input, events with the same fields and values, apart from ids,
// times and tollgate's key, also for an evaluation error; neither holds the
// masked email claim nor the dropped decision.
func TestOPADecisionLogsAsOPARunUploadsThem(t *testing.T) {
	collector, public := bundleAndCollector(t, opatest.Keep)
	cfgFile := filepath.Join(t.TempDir(), "opa.yaml")
	os.WriteFile(cfgFile, []byte(opaConfig(t, collector.URL, public, t.TempDir())+"labels: {team: registry}\n"+uploadEverySecond), 0o644)
	doc, _ := os.ReadFile(cfgFile)
	in := opaTestInput
	in.Identity.Claims = map[string]any{"email": "alice@example.com", "sub": "alice"}

	e := openTestOPA(t, string(doc))
	waitFor(t, "tollgate to activate the bundle", e.Ready)
	ctx := authz.WithRemoteAddr(authz.WithRequestID(context.Background(), "req-7"), "127.0.0.1:50123")
	if _, err := e.Authorize(ctx, in); err != nil {
		t.Fatal(err)
	}
	dropped := in
	dropped.Service = "dropped"
	if _, err := e.Authorize(ctx, dropped); err != nil {
		t.Fatal(err)
	}
	boom := in
	boom.Service = "boom"
	if _, err := e.Authorize(ctx, boom); err == nil {
		t.Fatal("no evaluation error on service boom")
	}
	base, _ := startOPARun(t, cfgFile)
	for _, in := range []authz.Input{in, dropped, boom} { // in the order tollgate decided
		opaRunAllowed(t, base, in) // for the decision it logs
	}
	waitFor(t, "both uploads", func() bool {
		return decisionEvent(collector, true, "boom") != nil && decisionEvent(collector, false, "boom") != nil
	})
	if decisionEvent(collector, true, "dropped") != nil || decisionEvent(collector, false, "dropped") != nil {
		t.Error("a decision the drop policy drops was uploaded")
	}
	if a, b := comparableEvent(t, decisionEvent(collector, true, "boom")), comparableEvent(t, decisionEvent(collector, false, "boom")); a != b {
		t.Errorf("the events of an evaluation error differ:\ntollgate: %s\nopa:      %s", a, b)
	}

	ours, theirs := decisionEvent(collector, true, in.Service), decisionEvent(collector, false, in.Service)
	if tg := ours["custom"].(map[string]any)[policies.DecisionLogKey]; fmt.Sprint(tg) != "map[cached:false request_id:req-7 service:registry.example.com]" {
		t.Errorf("custom.%s = %v", policies.DecisionLogKey, tg)
	}
	a, b := comparableEvent(t, ours), comparableEvent(t, theirs)
	if a != b {
		t.Errorf("the events differ:\ntollgate: %s\nopa:      %s", a, b)
	}
	for name, ev := range map[string]map[string]any{"tollgate": ours, "opa": theirs} {
		claims := ev["input"].(map[string]any)["identity"].(map[string]any)["claims"].(map[string]any)
		if _, ok := claims["email"]; ok || claims["sub"] != "alice" || fmt.Sprint(ev["erased"]) != "[/input/identity/claims/email]" {
			t.Errorf("%s's event was not masked: claims %v, erased %v", name, claims, ev["erased"])
		}
	}
}

// comparableEvent is ev as JSON without what differs between two
// processes deciding the same: ids (decision_id, req_id, labels.id), times
// (timestamp, the metrics' values: their names stay, but for opa run's
// query compile), the peer's port and tollgate's key.
func comparableEvent(t *testing.T, ev map[string]any) string {
	t.Helper()
	c := maps.Clone(ev)
	delete(c, "decision_id")
	delete(c, "req_id")
	delete(c, "timestamp")
	delete(c, "custom")
	labels := maps.Clone(c["labels"].(map[string]any))
	delete(labels, "id")
	c["labels"] = labels
	metrics := maps.Clone(c["metrics"].(map[string]any))
	// opa run times a query compile in the request that misses its query
	// cache (the first after a bundle activation: when that is depends on
	// polling); tollgate prepares once per activation, outside requests.
	delete(metrics, "timer_rego_query_compile_ns")
	c["metrics"] = slices.Sorted(maps.Keys(metrics))
	host, _, err := net.SplitHostPort(c["requested_by"].(string))
	if err != nil {
		t.Errorf("requested_by %q: %v", c["requested_by"], err)
	}
	c["requested_by"] = host
	out, _ := json.Marshal(c)
	return string(out)
}

// startOPARun runs the real `opa run --server -c cfgFile` on a free loopback
// port until the test ends, waits until its bundles are active, and returns
// its base URL and what it prints, readable while it runs.
func startOPARun(t *testing.T, cfgFile string) (string, *testenv.SyncBuffer) {
	t.Helper()
	port := testenv.FreePort(t)
	cmd := exec.Command(testenv.Tool(t, "opa"), "run", "--server", "--addr", fmt.Sprintf("127.0.0.1:%d", port), "-c", cfgFile)
	out := &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitFor(t, "opa to activate the bundle", func() bool {
		resp, err := http.Get(base + "/health?bundles")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return base, out
}
