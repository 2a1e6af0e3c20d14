package serve

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/internal/config"
	"github.com/tollgate/tollgate/policies"
)

func TestPolicyPollerSwapsGoodRevisionsAndKeepsTheLastGood(t *testing.T) {
	dir := t.TempDir()
	rego := func(action string) string {
		return "package registry.authz\nallowed contains {\"type\": \"repository\", \"name\": \"x\", \"action\": \"" + action + "\"} if true\n"
	}
	os.WriteFile(filepath.Join(dir, "p.rego"), []byte(rego("pull")), 0o644)
	e := policies.NewEngine(10, time.Minute)
	cfg := &config.Config{Policy: config.PolicyConfig{Source: dir, Query: policies.DefaultQuery,
		Polling: config.PollingConfig{MinDelay: 20 * time.Millisecond, MaxDelay: 20 * time.Millisecond, Timeout: time.Second}}}
	p, err := newPolicyPoller(cfg, e, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	first := e.Current().Revision()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)

	waitRevision := func(cond func(string) bool) string {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if r := e.Current().Revision(); cond(r) {
				return r
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("revision stayed %s", e.Current().Revision())
		return ""
	}
	os.WriteFile(filepath.Join(dir, "p.rego"), []byte(rego("push")), 0o644)
	second := waitRevision(func(r string) bool { return r != first })

	// A broken policy is logged, counted and ignored: the last good one stays.
	os.WriteFile(filepath.Join(dir, "p.rego"), []byte("package registry.authz\nallowed contains if {"), 0o644)
	deadline := time.Now().Add(5 * time.Second)
	for p.Status().Failures == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if r := e.Current().Revision(); r != second || p.Status().Failures == 0 {
		t.Fatalf("after a broken policy: revision %s (want %s), status %+v", r, second, p.Status())
	}
	detail := strings.Join(policyStatus(p, e), "\n")
	if !strings.Contains(detail, "policy revision: "+second) || !strings.Contains(detail, "policy reload failing") {
		t.Fatalf("readyz detail does not show the failure:\n%s", detail)
	}
	// Fixed again: picked up.
	os.WriteFile(filepath.Join(dir, "p.rego"), []byte(rego("delete")), 0o644)
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
