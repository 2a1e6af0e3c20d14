package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/identity/htpasswd"
	"github.com/tollgate/tollgate/identity/identitytest"
	"github.com/tollgate/tollgate/policies"
)

// startBroker serves a real broker (htpasswd users, the default policy, an
// ES256 key, refresh tokens) on 127.0.0.1 in this process. It returns the
// token URL and a directory holding alice.pw and users.txt.
func startBroker(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	htp := filepath.Join(dir, "htpasswd")
	var users strings.Builder
	// Cost 4 keeps the first logins quick; the cache makes later ones free.
	for _, u := range []string{"alice", "bob", "carol"} {
		if err := htpasswd.Set(htp, u, u+"-pw", 4); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&users, "%s %s-pw\n", u, u)
	}
	for name, body := range map[string]string{"alice.pw": "alice-pw\n", "users.txt": users.String()} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	file, err := htpasswd.Open(htp)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, certPEM, err := broker.GenerateKey(broker.KeyEC, "load test", time.Now().Add(-time.Minute), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := broker.WriteKeyPair(filepath.Join(dir, "keys"), "k", keyPEM, certPEM); err != nil {
		t.Fatal(err)
	}
	keys, err := broker.LoadKeyDir(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := bundles.LoadFS(policies.DefaultFS(), "default")
	if err != nil {
		t.Fatal(err)
	}
	b.Data = map[string]any{"registry": map[string]any{
		"projects": map[string]any{
			"team":    map[string]any{"public": false, "members": map[string]any{"alice": "developer"}},
			"library": map[string]any{"public": true, "members": map[string]any{}},
		},
		"system_admins": map[string]any{"users": []any{}, "groups": []any{}},
	}}
	p, err := policies.Compile(context.Background(), b, policies.DefaultQuery)
	if err != nil {
		t.Fatal(err)
	}
	engine := policies.NewEngine(1000, time.Minute)
	engine.Swap(p)
	srv, err := broker.New(broker.Options{
		Services: []*broker.Service{{Name: "registry.bench", Default: true, Issuer: "load-test", Realm: "http://127.0.0.1/token",
			TokenTTL: 5 * time.Minute, MaxTokenTTL: time.Hour, Keys: keys}},
		Authenticator: identity.NewChain([]identity.Connector{identitytest.Connector(t, "local", file)}, identity.NewCredentialCache(100, time.Minute)),
		Authorizer:    engine,
		Anonymous:     true,
		RefreshTTL:    time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv) // 127.0.0.1
	t.Cleanup(ts.Close)
	return ts.URL + "/token", dir
}

func smokeOptions(url, dir string) options {
	return options{url: url, service: "registry.bench", n: 1_000_000, duration: time.Second, concurrency: 4,
		mix: "password=1,anonymous=1,refresh=1,distinct=1,anonymous-distinct=1,password-distinct=1", user: "alice", passwordFile: filepath.Join(dir, "alice.pw"),
		usersFile: filepath.Join(dir, "users.txt"), repos: 1000, pid: os.Getpid()}
}

// TestLoadEveryKindAgainstBroker runs the load tool for a second with every
// request kind against a real broker: tokens, no errors, and the figures it
// reports are filled in.
func TestLoadEveryKindAgainstBroker(t *testing.T) {
	url, dir := startBroker(t)
	res, err := run(context.Background(), smokeOptions(url, dir))
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.Errors != 0 || res.TokensPerS <= 0 {
		t.Fatalf("requests %d, errors %d %v, %.0f tokens/s: want tokens and no error", res.Requests, res.Errors, res.ErrorKinds, res.TokensPerS)
	}
	if res.P50us <= 0 || res.P99us < res.P50us || res.P999us < res.P99us || res.RSSPeakKB <= 0 || res.ServerCPUus <= 0 {
		t.Errorf("figures missing or out of order: %+v", res)
	}
	if res.Seconds > 5 {
		t.Errorf("a 1s run took %.1fs", res.Seconds)
	}
}

// TestLoadStopsWhenAKindCannotGetAToken: a wrong password fails the warm-up
// with the broker's answer, rather than measuring a stream of 401s.
func TestLoadStopsWhenAKindCannotGetAToken(t *testing.T) {
	url, dir := startBroker(t)
	o := smokeOptions(url, dir)
	o.mix, o.passwordFile, o.password = "password=1", "", "wrong"
	if _, err := run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "status 401") {
		t.Fatalf("err %v, want the warm-up's 401", err)
	}
}

// TestLoadCountsEveryFailedRequest: statuses other than 200 and answers
// without a token are errors, counted by kind, and -n bounds the run. The
// failures come from a fake: a real broker does not fail on demand.
func TestLoadCountsEveryFailedRequest(t *testing.T) {
	var n atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) % 3 {
		case 1:
			_, _ = io.WriteString(w, `{"token":"a.b.c"}`)
		case 2:
			http.Error(w, "down", http.StatusServiceUnavailable)
		default:
			_, _ = io.WriteString(w, `{}`)
		}
	}))
	defer ts.Close()
	o := smokeOptions(ts.URL+"/token", t.TempDir())
	o.mix, o.passwordFile, o.n, o.concurrency, o.warmup = "anonymous=1", "", 300, 1, 1
	res, err := run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 300 || res.Errors != 200 || res.ErrorKinds["status 503"] != 100 || res.ErrorKinds["no token"] != 100 {
		t.Fatalf("requests %d, errors %d %v: want 300 requests, 100 of each failure", res.Requests, res.Errors, res.ErrorKinds)
	}
}

// TestLoadDistinctKindsCycleOverRepos: the anonymous-distinct and
// password-distinct kinds name a new repository each request, -repos of
// them in turn, so no cache keyed by repository answers twice per cycle.
func TestLoadDistinctKindsCycleOverRepos(t *testing.T) {
	for kind, want := range map[string]string{"anonymous-distinct": "repository:library/repo%d:pull", "password-distinct": "repository:alice/repo%d:pull,push"} {
		var mu sync.Mutex
		seen := map[string]int{}
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen[r.URL.Query().Get("scope")]++
			mu.Unlock()
			_, _ = io.WriteString(w, `{"token":"a.b.c"}`)
		}))
		o := smokeOptions(ts.URL+"/token", t.TempDir())
		o.mix, o.passwordFile, o.password, o.repos, o.n, o.warmup = kind+"=1", "", "pw", 50, 300, 0
		_, err := run(context.Background(), o)
		ts.Close()
		if err != nil {
			t.Fatal(err)
		}
		// 1 warm-up request and 300 measured: repositories 0..50, six times over, the first once more.
		for i := range 50 {
			if n := seen[fmt.Sprintf(want, i)]; n < 6 || n > 7 {
				t.Errorf("%s: %s requested %d times, want 6 or 7 (%d scopes seen)", kind, fmt.Sprintf(want, i), n, len(seen))
			}
		}
		if len(seen) != 50 {
			t.Errorf("%s: %d distinct scopes, want 50", kind, len(seen))
		}
	}
}

func TestLoadRefusesNonLoopbackTargets(t *testing.T) {
	for _, u := range []string{"http://10.0.0.1:5001/token", "http://example.com/token", "https://127.0.0.1/token"} {
		o := smokeOptions(u, t.TempDir())
		if _, err := run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "-url") {
			t.Errorf("%s: err %v, want a refusal of -url", u, err)
		}
	}
}
