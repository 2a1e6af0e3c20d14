package broker_test

import (
	"fmt"
	"log/slog"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/test/testenv"
)

// reuseFixture serves registry.test and notary.test with a 2-second reuse
// window, on a clock the test moves.
func reuseFixture(t *testing.T, mutate ...func(*broker.Options)) (*fixture, *clock, *testenv.SyncBuffer) {
	t.Helper()
	clk := &clock{t: time.Now()}
	logs := &testenv.SyncBuffer{}
	f := newFixture(t, append([]func(*broker.Options){func(o *broker.Options) {
		o.Now = clk.now
		o.Logger = slog.New(slog.NewJSONHandler(logs, nil))
		o.Services[0].TokenReuse = 2 * time.Second
		o.Services[1].TokenReuse = 2 * time.Second
	}}, mutate...)...)
	return f, clk, logs
}

func TestTokenReuseServesTheSameTokenForTheSameClaims(t *testing.T) {
	reg := prometheus.NewRegistry()
	f, clk, logs := reuseFixture(t, func(o *broker.Options) { o.Metrics = broker.NewMetrics(reg) })
	alice := basic("alice", "alice-secret")
	const teamApp = "service=registry.test&scope=repository:team/app:pull,push"

	first := f.get(t, teamApp, "Authorization", alice)
	clk.add(1500 * time.Millisecond)
	again := f.get(t, teamApp, "Authorization", alice)
	if first.status != 200 || again.status != 200 {
		t.Fatalf("statuses %d, %d: %s %s", first.status, again.status, first.raw, again.raw)
	}
	// The whole answer is the same: token, issued_at and expires_in agree
	// with the token's own iat and exp.
	if first.raw != again.raw {
		t.Fatalf("within the window the answer changed:\n%s\n%s", first.raw, again.raw)
	}
	_, claims := f.claims(t, again.body["token"].(string))
	issued, _ := time.Parse(time.RFC3339, again.body["issued_at"].(string))
	if int64(claims["iat"].(float64)) != issued.Unix() || claims["exp"].(float64)-claims["iat"].(float64) != again.body["expires_in"].(float64) {
		t.Fatalf("issued_at %v expires_in %v do not match iat %v exp %v", again.body["issued_at"], again.body["expires_in"], claims["iat"], claims["exp"])
	}

	// Anything that changes the claims is a different token.
	differs := func(name string, a answer) {
		t.Helper()
		if a.status != 200 {
			t.Fatalf("%s: status %d: %s", name, a.status, a.raw)
		}
		if a.body["token"] == first.body["token"] {
			t.Fatalf("%s: served alice's team/app token", name)
		}
	}
	differs("another scope", f.get(t, "service=registry.test&scope=repository:team/other:pull,push", "Authorization", alice))
	differs("fewer actions asked", f.get(t, "service=registry.test&scope=repository:team/app:pull", "Authorization", alice))
	differs("another user, same grant", f.get(t, teamApp, "Authorization", basic("admin", "admin-secret")))
	differs("anonymous", f.get(t, teamApp))
	differs("another service", f.get(t, "service=notary.test&scope=repository:team/app:pull,push", "Authorization", alice))

	// Wrong credentials are still refused: reuse comes after authentication.
	if a := f.get(t, teamApp, "Authorization", basic("alice", "wrong")); a.status != 401 {
		t.Fatalf("wrong password within the window: %d %s", a.status, a.raw)
	}

	// Once the window has passed, a new token is signed.
	clk.add(600 * time.Millisecond)
	later := f.get(t, teamApp, "Authorization", alice)
	if later.body["token"] == first.body["token"] {
		t.Fatal("token served again after the reuse window")
	}
	_, lc := f.claims(t, later.body["token"].(string))
	if lc["iat"].(float64) <= claims["iat"].(float64) || lc["jti"] == claims["jti"] {
		t.Fatalf("new token: iat %v jti %v, old iat %v jti %v", lc["iat"], lc["jti"], claims["iat"], claims["jti"])
	}

	// So does the metric: one reuse (the second request) so far.
	if n := reusedMetric(t, reg); n != 1 {
		t.Fatalf("tollgate_access_tokens_reused_total = %v, want 1", n)
	}

	// The log says which requests got a reused token, and which token.
	lines := logLines(t, logs)
	first0, again1, last := lines[0], lines[1], lines[len(lines)-1]
	if first0["token_reused"] != false || again1["token_reused"] != true || last["token_reused"] != false {
		t.Fatalf("token_reused in the log: %v, %v, %v", first0["token_reused"], again1["token_reused"], last["token_reused"])
	}
	if first0["token_id"] != claims["jti"] || again1["token_id"] != claims["jti"] || last["token_id"] != lc["jti"] {
		t.Fatalf("token_id in the log: %v, %v, %v; jti %v then %v", first0["token_id"], again1["token_id"], last["token_id"], claims["jti"], lc["jti"])
	}
}

func TestTokenReuseNeverServesATokenFromTheFuture(t *testing.T) {
	f, clk, _ := reuseFixture(t)
	q := "service=registry.test&scope=repository:public/x:pull"
	a := f.get(t, q)
	clk.add(-500 * time.Millisecond) // the wall clock is stepped back
	if b := f.get(t, q); b.body["token"] == a.body["token"] {
		t.Fatal("after the clock went back, the token issued 'later' was served again")
	}
}

func TestTokenReuseUnderConcurrentRequests(t *testing.T) {
	f, _, _ := reuseFixture(t)
	const workers, each = 16, 20
	q := "service=registry.test&scope=repository:public/x:pull"
	tokens := make(chan string, workers*each)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				a := f.get(t, q)
				if a.status != 200 {
					t.Errorf("status %d: %s", a.status, a.raw)
					return
				}
				tokens <- a.body["token"].(string)
			}
		}()
	}
	wg.Wait()
	close(tokens)
	distinct := map[string]bool{}
	for tok := range tokens {
		if !distinct[tok] {
			f.claims(t, tok) // every one verifies
		}
		distinct[tok] = true
	}
	// The clock stands still: requests that miss together wait for one
	// signature, and every later one gets the kept token.
	if len(distinct) != 1 {
		t.Fatalf("%d distinct tokens for %d identical requests from %d clients", len(distinct), workers*each, workers)
	}
}

func TestTokenReuseSkipsOversizedClaims(t *testing.T) {
	f, _, _ := reuseFixture(t)
	q := "service=registry.test"
	for i := range 40 {
		q += fmt.Sprintf("&scope=repository:public/%s-%02d:pull", strings.Repeat("n", 60), i)
	}
	a, b := f.get(t, q), f.get(t, q)
	if a.status != 200 || b.status != 200 {
		t.Fatalf("statuses %d %d: %s", a.status, b.status, a.raw)
	}
	_, claims := f.claims(t, a.body["token"].(string))
	if len(accessOf(t, claims)) != 40 {
		t.Fatalf("access has %d entries, want 40", len(accessOf(t, claims)))
	}
	if a.body["token"] == b.body["token"] {
		t.Fatal("a token with 40 long scopes was kept for reuse")
	}
}

// reusedMetric reads tollgate_access_tokens_reused_total from reg.
func reusedMetric(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() == "tollgate_access_tokens_reused_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("tollgate_access_tokens_reused_total is not registered")
	return 0
}

func TestTokenReuseOffSignsEveryToken(t *testing.T) {
	f, _, _ := reuseFixture(t, func(o *broker.Options) { o.Services[0].TokenReuse = 0 })
	q := "service=registry.test&scope=repository:public/x:pull"
	if a, b := f.get(t, q), f.get(t, q); a.status != 200 || a.body["token"] == b.body["token"] {
		t.Fatalf("token_reuse 0: %d, same token twice: %v", a.status, a.body["token"] == b.body["token"])
	}
}

func TestTokenReuseNeverOutlivesAPolicyChange(t *testing.T) {
	f, _, _ := reuseFixture(t)
	alice := basic("alice", "alice-secret")
	q := "service=registry.test&scope=repository:team/app:pull,push"
	before := f.get(t, q, "Authorization", alice)

	// The new policy takes push away; the clock has not moved.
	f.swapPolicy(t, `package registry.authz
allowed contains {"type": s.type, "name": s.name, "action": "pull"} if some s in input.scopes
`)

	after := f.get(t, q, "Authorization", alice)
	if after.body["token"] == before.body["token"] {
		t.Fatal("the token granted under the old policy was served after the change")
	}
	_, claims := f.claims(t, after.body["token"].(string))
	want := []broker.AccessEntry{{Type: "repository", Name: "team/app", Actions: []string{"pull"}}}
	if got := accessOf(t, claims); !reflect.DeepEqual(got, want) {
		t.Fatalf("access = %+v, want %+v", got, want)
	}

	// The same grant with another lifetime is another token too.
	f.swapPolicy(t, `package registry.authz
allowed contains {"type": s.type, "name": s.name, "action": "pull"} if some s in input.scopes
token_ttl := 1800
`)
	longer := f.get(t, q, "Authorization", alice)
	if longer.body["token"] == after.body["token"] || longer.body["expires_in"] != float64(1800) {
		t.Fatalf("after token_ttl changed: expires_in %v, same token: %v", longer.body["expires_in"], longer.body["token"] == after.body["token"])
	}
	_, lc := f.claims(t, longer.body["token"].(string))
	if lc["exp"].(float64)-lc["iat"].(float64) != 1800 {
		t.Fatalf("exp - iat = %v, want 1800", lc["exp"].(float64)-lc["iat"].(float64))
	}
}

func TestTokenReuseFollowsKeyRotation(t *testing.T) {
	// Key b becomes the signer 2 seconds after start (certificate times
	// have whole seconds), inside the 5-second reuse window.
	start := time.Now().Truncate(time.Second).Add(time.Second)
	dir := t.TempDir()
	genKey(t, dir, "a", broker.KeyEC, start.Add(-time.Hour))
	genKey(t, dir, "b", broker.KeyEC, start.Add(2*time.Second))
	keys, err := broker.LoadKeyDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	f, clk, _ := reuseFixture(t, func(o *broker.Options) {
		o.Services[0].Keys = keys
		o.Services[0].TokenReuse = 5 * time.Second
	})
	f.keys = keys // what f.claims verifies against
	clk.set(start)
	q := "service=registry.test&scope=repository:public/x:pull"
	old := f.get(t, q)
	clk.add(2 * time.Second)
	rotated := f.get(t, q)
	if old.status != 200 || rotated.status != 200 || rotated.body["token"] == old.body["token"] {
		t.Fatalf("after rotation: %d %d, same token: %v", old.status, rotated.status, rotated.body["token"] == old.body["token"])
	}
	h1, _ := f.claims(t, old.body["token"].(string))
	h2, _ := f.claims(t, rotated.body["token"].(string))
	if h1["kid"] == h2["kid"] {
		t.Fatalf("both tokens signed by %v", h1["kid"])
	}
}

func TestTokenReuseKeepsRefreshTokensPerRequest(t *testing.T) {
	f, _, _ := reuseFixture(t)
	form := url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-secret"},
		"service": {svcName}, "client_id": {"test"}, "access_type": {"offline"}, "scope": {"repository:team/app:pull"}}
	a, b := f.post(t, form), f.post(t, form)
	if a.status != 200 || b.status != 200 {
		t.Fatalf("statuses %d %d", a.status, b.status)
	}
	if a.body["access_token"] != b.body["access_token"] {
		t.Fatal("access token not reused within the window")
	}
	if a.body["refresh_token"] == nil || a.body["refresh_token"] == b.body["refresh_token"] {
		t.Fatal("a refresh token must be signed for each request")
	}
	// A request that did not ask for one gets the same access token and no
	// refresh token; so does the refresh grant.
	plain := f.get(t, "service=registry.test&scope=repository:team/app:pull", "Authorization", basic("alice", "alice-secret"))
	if plain.body["access_token"] != a.body["access_token"] || plain.body["refresh_token"] != nil {
		t.Fatalf("plain request after an offline one: same token %v, refresh_token %v",
			plain.body["access_token"] == a.body["access_token"], plain.body["refresh_token"] != nil)
	}
	r := f.post(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {a.body["refresh_token"].(string)},
		"service": {svcName}, "scope": {"repository:team/app:pull"}})
	if r.status != 200 || r.body["access_token"] != a.body["access_token"] || r.body["refresh_token"] != nil {
		t.Fatalf("refresh grant: %d, same token %v, refresh_token %v", r.status, r.body["access_token"] == a.body["access_token"], r.body["refresh_token"] != nil)
	}
}

func TestTokenReuseWindowIsBounded(t *testing.T) {
	dir := t.TempDir()
	genKey(t, dir, "a", broker.KeyEC, time.Now().Add(-time.Hour))
	keys, err := broker.LoadKeyDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for d, ok := range map[time.Duration]bool{-time.Second: false, 0: true, 10 * time.Second: true, 10*time.Second + 1: false} {
		_, err := broker.New(broker.Options{Services: []*broker.Service{{Name: "x", TokenReuse: d, Keys: keys}}})
		if ok && err != nil {
			t.Errorf("token reuse %s refused: %v", d, err)
		}
		if !ok && (err == nil || !strings.Contains(err.Error(), "token reuse")) {
			t.Errorf("token reuse %s: err = %v, want it refused", d, err)
		}
	}
}
