package serve

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/internal/config"
	"github.com/tollgate/tollgate/policies"
)

// TestLocalPolicySourceReloadsAndKeepsTheLastGood: a local policy.source
// runs as a manual file:// bundle of OPA's, triggered when the files
// change. A good revision goes live; a broken one is logged, counted in
// /readyz and the metrics, and the last good one keeps serving until the
// files are fixed.
func TestLocalPolicySourceReloadsAndKeepsTheLastGood(t *testing.T) {
	path := testConfig(t)
	body, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(body), "  source: policy\n", "  source: policy\n  polling: {min_delay: 20ms, max_delay: 20ms}\n", 1)), 0o600)
	rego := func(action string) string {
		return "package registry.authz\nallowed contains {\"type\": \"repository\", \"name\": \"x\", \"action\": \"" + action + "\"} if true\n"
	}
	file := filepath.Join(filepath.Dir(path), "policy", "authz.rego")
	rt := newTestRuntime(t, path)
	first := rt.PolicyRevision()
	if !strings.HasPrefix(first, "sha256:") {
		t.Fatalf("revision %q: want the digest of a bundle without a manifest revision", first)
	}

	waitRevision := func(cond func(string) bool) string {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if r := rt.PolicyRevision(); cond(r) {
				return r
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("revision stayed %s", rt.PolicyRevision())
		return ""
	}
	os.WriteFile(file, []byte(rego("push")), 0o644)
	second := waitRevision(func(r string) bool { return r != first })

	// A broken policy is logged, counted and ignored: the last good one stays.
	os.WriteFile(file, []byte("package registry.authz\nallowed contains if {"), 0o644)
	failing := func() bool { return slices.Contains(scrape(t, rt), "tollgate_policy_reload_failures 1") }
	for deadline := time.Now().Add(5 * time.Second); !failing() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if r := rt.PolicyRevision(); r != second || !failing() {
		t.Fatalf("after a broken policy: revision %s (want %s), metrics %v", r, second, scrape(t, rt))
	}
	detail := strings.Join(rt.readyDetail(), "\n")
	if !strings.Contains(detail, "bundle tollgate: revision "+second) || !strings.Contains(detail, "reload failing: 1 attempts") {
		t.Fatalf("readyz detail does not show the failure:\n%s", detail)
	}
	// Fixed again: picked up.
	os.WriteFile(file, []byte(rego("delete")), 0o644)
	waitRevision(func(r string) bool { return r != second })
}

// TestBundleBearerTokenOnlyGoesToTheConfiguredOrigin: a bundle server that
// redirects elsewhere (another port, another host) does not get the token
// sent there; a redirect within the origin keeps it. A URL policy.source
// runs as the OPA configuration it maps onto.
func TestBundleBearerTokenOnlyGoesToTheConfiguredOrigin(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.rego"), []byte("package registry.authz\nallowed contains {\"type\": \"repository\", \"name\": \"x\", \"action\": \"pull\"} if true\n"), 0o644)
	var tarball bytes.Buffer
	if err := bundles.Build(context.Background(), dir, "r1", nil, &tarball); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]string{} // server: the Authorization it was sent
	serveBundle := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen[name] = r.Header.Get("Authorization")
			mu.Unlock()
			w.Write(tarball.Bytes())
		}
	}
	other := httptest.NewServer(serveBundle("other"))
	defer other.Close()
	_, otherPort, _ := net.SplitHostPort(other.Listener.Addr().String())
	mux := http.NewServeMux()
	mux.Handle("/b.tar.gz", serveBundle("origin"))
	mux.Handle("/same", http.RedirectHandler("/b.tar.gz", http.StatusFound))
	mux.Handle("/other-port", http.RedirectHandler(other.URL+"/b.tar.gz", http.StatusFound))
	mux.Handle("/other-host", http.RedirectHandler("http://localhost:"+otherPort+"/b.tar.gz", http.StatusTemporaryRedirect))
	origin := httptest.NewServer(mux)
	defer origin.Close()

	for _, c := range []struct{ path, server, want string }{
		{"/same", "origin", "Bearer t0ken"},
		{"/other-port", "other", ""},
		{"/other-host", "other", ""},
	} {
		t.Run(c.path, func(t *testing.T) {
			mu.Lock()
			clear(seen)
			mu.Unlock()
			cfg := &config.Config{Policy: config.PolicyConfig{Source: origin.URL + c.path, Query: policies.DefaultQuery, BearerToken: "t0ken",
				Polling: config.PollingConfig{MinDelay: time.Second, MaxDelay: time.Second, Timeout: 5 * time.Second}}}
			doc, err := cfg.ShortFormOPA()
			if err != nil {
				t.Fatal(err)
			}
			e, err := policies.OpenOPA(doc, policies.OPAOptions{ID: "t", PersistenceDirectory: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer e.Stop(context.Background())
			waitFor(t, "the bundle to be activated", e.Ready)
			mu.Lock()
			defer mu.Unlock()
			got, asked := seen[c.server]
			if !asked || got != c.want {
				t.Fatalf("%s was sent Authorization %q (asked: %v), want %q", c.server, got, asked, c.want)
			}
		})
	}
}
