package broker_test

import (
	"context"
	"log/slog"
	"net/url"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/policies"
)

// clock is a settable time source for the server.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// reuseFixture serves registry.test with a 2-second reuse window, and
// notary.test without one, on a clock the test moves.
func reuseFixture(t *testing.T, mutate ...func(*broker.Options)) (*fixture, *clock, *syncBuffer) {
	t.Helper()
	clk := &clock{t: time.Now()}
	logs := &syncBuffer{}
	f := newFixture(t, append([]func(*broker.Options){func(o *broker.Options) {
		o.Now = clk.now
		o.Logger = slog.New(slog.NewJSONHandler(logs, nil))
		o.Services[0].TokenReuse = 2 * time.Second
	}}, mutate...)...)
	return f, clk, logs
}

func TestTokenReuseServesTheSameTokenForTheSameClaims(t *testing.T) {
	f, clk, logs := reuseFixture(t)
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

	lines := logs.lines(t)
	if lines[0]["token_reused"] != false || lines[1]["token_reused"] != true || lines[len(lines)-1]["token_reused"] != false {
		t.Fatalf("token_reused in the log: %v, %v, %v", lines[0]["token_reused"], lines[1]["token_reused"], lines[len(lines)-1]["token_reused"])
	}
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
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "authz.rego"), `package registry.authz
allowed contains {"type": s.type, "name": s.name, "action": "pull"} if some s in input.scopes
`)
	b, err := bundles.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policies.Compile(context.Background(), b, policies.DefaultQuery)
	if err != nil {
		t.Fatal(err)
	}
	f.engine.Swap(p)

	after := f.get(t, q, "Authorization", alice)
	if after.body["token"] == before.body["token"] {
		t.Fatal("the token granted under the old policy was served after the change")
	}
	_, claims := f.claims(t, after.body["token"].(string))
	want := []broker.AccessEntry{{Type: "repository", Name: "team/app", Actions: []string{"pull"}}}
	if got := accessOf(t, claims); !reflect.DeepEqual(got, want) {
		t.Fatalf("access = %+v, want %+v", got, want)
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
	clk.t = start
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
}

func TestTokenReuseWindowIsBounded(t *testing.T) {
	for _, d := range []time.Duration{-time.Second, 11 * time.Second} {
		_, err := broker.New(broker.Options{Services: []*broker.Service{{Name: "x", TokenReuse: d}}})
		if err == nil {
			t.Fatalf("token reuse %s accepted", d)
		}
	}
}
