package broker_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/identity/htpasswd"
	"github.com/tollgate/tollgate/identity/identitytest"
	"github.com/tollgate/tollgate/policies"
	"github.com/tollgate/tollgate/test/testenv"
)

// testPolicy grants alice pull,push on team/*, anyone pull on public/*, the
// admin everything including the catalog, and asks a 30-minute lifetime for
// ci/* pushes.
const testPolicy = `package registry.authz

project(name) := split(name, "/")[0]

allowed contains {"type": s.type, "name": s.name, "action": a} if {
	some s in input.scopes
	s.type == "repository"
	project(s.name) == "team"
	input.identity.subject == "alice"
	some a in ["pull", "push"]
	wants(s, a)
}

allowed contains {"type": s.type, "name": s.name, "action": "pull"} if {
	some s in input.scopes
	s.type == "repository"
	project(s.name) == "public"
	wants(s, "pull")
}

allowed contains {"type": s.type, "name": s.name, "action": a} if {
	input.identity.subject == "admin"
	some s in input.scopes
	some a in s.actions
}

allowed contains {"type": s.type, "name": s.name, "action": a} if {
	input.identity.subject == "ci"
	some s in input.scopes
	project(s.name) == "ci"
	some a in ["pull", "push"]
	wants(s, a)
}

token_ttl := 1800 if {
	input.identity.subject == "ci"
}

wants(s, a) if a in s.actions
wants(s, _) if "*" in s.actions
`

type fixture struct {
	srv      *broker.Server
	ts       *httptest.Server
	keys     *broker.KeySet
	htpasswd string
	file     *htpasswd.File
	engine   *policies.Engine
	now      time.Time
}

const svcName = "registry.test"

func newFixture(t testing.TB, mutate ...func(*broker.Options)) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{htpasswd: filepath.Join(dir, "htpasswd"), now: time.Now()}
	for _, u := range []string{"alice", "admin", "ci"} {
		if err := htpasswd.Set(f.htpasswd, u, u+"-secret", 4); err != nil {
			t.Fatal(err)
		}
	}
	file, err := htpasswd.Open(f.htpasswd)
	if err != nil {
		t.Fatal(err)
	}
	f.file = file
	chain := identity.NewChain([]identity.Connector{identitytest.Connector(t, "local", file)}, identity.NewCredentialCache(100, time.Minute))

	keyDir := filepath.Join(dir, "keys")
	genKey(t, keyDir, "a", broker.KeyEC, f.now.Add(-time.Hour))
	if f.keys, err = broker.LoadKeyDir(keyDir); err != nil {
		t.Fatal(err)
	}

	f.engine = policies.NewEngine(1000, time.Minute)
	f.swapPolicy(t, testPolicy)

	opts := broker.Options{
		Services: []*broker.Service{
			{Name: svcName, Default: true, Issuer: "tollgate-test", Realm: "http://localhost/token",
				TokenTTL: 5 * time.Minute, MaxTokenTTL: time.Hour, Keys: f.keys},
			{Name: "notary.test", Issuer: "tollgate-notary", Realm: "http://localhost/token",
				TokenTTL: 2 * time.Minute, MaxTokenTTL: time.Hour, Keys: f.keys},
		},
		Authenticator: chain,
		Authorizer:    f.engine,
		Anonymous:     true,
		RefreshTTL:    24 * time.Hour,
	}
	for _, m := range mutate {
		m(&opts)
	}
	if f.srv, err = broker.New(opts); err != nil {
		t.Fatal(err)
	}
	f.ts = httptest.NewServer(f.srv)
	t.Cleanup(f.ts.Close)
	return f
}

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

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// swapPolicy compiles one Rego module and puts it in force.
func (f *fixture) swapPolicy(t testing.TB, rego string) {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "authz.rego"), rego)
	b, err := bundles.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policies.Compile(context.Background(), b, policies.DefaultQuery)
	if err != nil {
		t.Fatal(err)
	}
	f.engine.Swap(p)
}

func genKey(t testing.TB, dir, name string, typ broker.KeyType, notBefore time.Time) {
	t.Helper()
	k, c, err := broker.GenerateKey(typ, "test", notBefore, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := broker.WriteKeyPair(dir, name, k, c); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (f *fixture) get(t *testing.T, query string, header ...string) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.ts.URL+"/token?"+query, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	return do(t, req)
}

func (f *fixture) post(t *testing.T, form url.Values) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.ts.URL+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(t, req)
}

func do(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if err := json.Unmarshal(raw, &a.body); err != nil && resp.Header.Get("Content-Type") == "application/json" {
		t.Fatalf("invalid JSON answer %q: %v", raw, err)
	}
	return a
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// claims verifies a token against the fixture's published certificates the
// way a registry does and returns its claims.
func (f *fixture) claims(t *testing.T, tok string) (map[string]any, map[string]any) {
	t.Helper()
	var claims jwt.MapClaims
	parsed, err := jwt.ParseWithClaims(tok, &claims, func(tk *jwt.Token) (any, error) {
		x5c, _ := tk.Header["x5c"].([]any)
		if len(x5c) != 1 {
			return nil, errors.New("want one x5c certificate")
		}
		der, _ := base64.StdEncoding.DecodeString(x5c[0].(string))
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		for _, k := range f.keys.Published(time.Now()) {
			if k.Cert.Equal(cert) && tk.Header["kid"] == k.ID {
				return cert.PublicKey, nil
			}
		}
		return nil, errors.New("certificate not published or kid mismatch")
	}, jwt.WithValidMethods([]string{"ES256", "RS256"}))
	if err != nil {
		t.Fatalf("token does not verify: %v", err)
	}
	return parsed.Header, claims
}

func accessOf(t *testing.T, claims map[string]any) []broker.AccessEntry {
	t.Helper()
	raw, _ := json.Marshal(claims["access"])
	var out []broker.AccessEntry
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestTokenForPasswordUserCarriesExactlyTheGrant(t *testing.T) {
	f := newFixture(t)
	a := f.get(t, "service=registry.test&scope=repository:team/app:pull,push,delete&scope=repository:other/x:pull",
		"Authorization", basic("alice", "alice-secret"))
	if a.status != 200 {
		t.Fatalf("status %d: %s", a.status, a.raw)
	}
	tok, _ := a.body["token"].(string)
	if tok == "" || a.body["access_token"] != tok {
		t.Fatalf("token and access_token must carry the same JWT: %s", a.raw)
	}
	if a.body["expires_in"] != float64(300) {
		t.Fatalf("expires_in = %v, want 300", a.body["expires_in"])
	}
	issued, err := time.Parse(time.RFC3339, a.body["issued_at"].(string))
	if err != nil || time.Since(issued) > time.Minute {
		t.Fatalf("issued_at %v: %v", a.body["issued_at"], err)
	}
	if _, ok := a.body["refresh_token"]; ok {
		t.Fatal("refresh_token issued without offline_token=true")
	}
	hdr, claims := f.claims(t, tok)
	if hdr["typ"] != "JWT" || hdr["alg"] != "ES256" {
		t.Fatalf("header %v", hdr)
	}
	if claims["aud"] != svcName {
		t.Fatalf("aud = %#v, want the plain string %q", claims["aud"], svcName)
	}
	if claims["iss"] != "tollgate-test" || claims["sub"] != "alice" || claims["jti"] == "" {
		t.Fatalf("claims %v", claims)
	}
	exp, iat, nbf := claims["exp"].(float64), claims["iat"].(float64), claims["nbf"].(float64)
	if exp-iat != 300 || nbf > iat || iat-nbf > 30 {
		t.Fatalf("exp %v iat %v nbf %v", exp, iat, nbf)
	}
	want := []broker.AccessEntry{{Type: "repository", Name: "team/app", Actions: []string{"pull", "push"}}}
	if got := accessOf(t, claims); !reflect.DeepEqual(got, want) {
		t.Fatalf("access = %+v, want %+v", got, want)
	}
	// jti is unique per token.
	b := f.get(t, "service=registry.test&scope=repository:team/app:pull", "Authorization", basic("alice", "alice-secret"))
	_, c2 := f.claims(t, b.body["token"].(string))
	if c2["jti"] == claims["jti"] {
		t.Fatal("two tokens share a jti")
	}
}

func TestTokenStatuses(t *testing.T) {
	f := newFixture(t)
	long := strings.Repeat("a", 20000)
	tests := []struct {
		name   string
		query  string
		header []string
		status int
		code   string
	}{
		{"anonymous login check", "service=registry.test", nil, 200, ""},
		{"missing service uses the default", "scope=repository:public/x:pull", nil, 200, ""},
		{"empty scope is a login check", "service=registry.test&scope=", []string{"Authorization", basic("alice", "alice-secret")}, 200, ""},
		{"wrong password", "service=registry.test", []string{"Authorization", basic("alice", "nope")}, 401, "UNAUTHORIZED"},
		{"unknown user", "service=registry.test", []string{"Authorization", basic("mallory", "x")}, 401, "UNAUTHORIZED"},
		{"empty password", "service=registry.test", []string{"Authorization", basic("alice", "")}, 401, "UNAUTHORIZED"},
		{"unknown service", "service=evil.test", nil, 400, "INVALID_REQUEST"},
		{"service twice", "service=registry.test&service=notary.test", nil, 400, "INVALID_REQUEST"},
		{"malformed scope", "service=registry.test&scope=repository:nope", nil, 400, "INVALID_SCOPE"},
		{"control character in scope", "service=registry.test&scope=repository:a%01b:pull", nil, 400, "INVALID_SCOPE"},
		{"invalid UTF-8 in scope", "service=registry.test&scope=repository:a%ffb:pull", nil, 400, "INVALID_SCOPE"},
		{"malformed query", "service=registry.test&scope=%zz", nil, 400, "INVALID_REQUEST"},
		{"oversized query", "service=registry.test&scope=" + long, nil, 413, "INVALID_REQUEST"},
		{"Basic not base64", "service=registry.test", []string{"Authorization", "Basic !!!"}, 400, "INVALID_REQUEST"},
		{"Basic without colon", "service=registry.test", []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("alice"))}, 400, "INVALID_REQUEST"},
		{"unknown scheme", "service=registry.test", []string{"Authorization", "Digest foo"}, 400, "INVALID_REQUEST"},
		{"garbage bearer", "service=registry.test", []string{"Authorization", "Bearer garbage"}, 401, "UNAUTHORIZED"},
		{"two Authorization headers", "service=registry.test", []string{"Authorization", basic("alice", "alice-secret"), "Authorization", basic("admin", "admin-secret")}, 400, "INVALID_REQUEST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := f.get(t, tt.query, tt.header...)
			if a.status != tt.status {
				t.Fatalf("status %d, want %d: %s", a.status, tt.status, a.raw)
			}
			if tt.status == 200 {
				return
			}
			errs, _ := a.body["errors"].([]any)
			if len(errs) != 1 {
				t.Fatalf("want one JSON error, got %s", a.raw)
			}
			e := errs[0].(map[string]any)
			if e["code"] != tt.code || e["message"] == "" {
				t.Fatalf("error %v, want code %s with a message", e, tt.code)
			}
			if tt.status == 401 && !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Basic realm=") {
				t.Fatalf("401 without a Basic challenge: %v", a.header)
			}
		})
	}
}

func TestMissingServiceWithoutDefaultIsBadRequest(t *testing.T) {
	f := newFixture(t, func(o *broker.Options) {
		o.Services[0].Default = false
	})
	if a := f.get(t, "scope=repository:public/x:pull"); a.status != 400 || !strings.Contains(a.raw, "missing service") {
		t.Fatalf("status %d: %s", a.status, a.raw)
	}
}

func TestAnonymousGetsOnlyWhatPolicyAllows(t *testing.T) {
	f := newFixture(t)
	a := f.get(t, "service=registry.test&scope=repository:public/x:pull,push&scope=repository:team/app:pull")
	if a.status != 200 {
		t.Fatalf("status %d: %s", a.status, a.raw)
	}
	_, claims := f.claims(t, a.body["token"].(string))
	want := []broker.AccessEntry{{Type: "repository", Name: "public/x", Actions: []string{"pull"}}}
	if got := accessOf(t, claims); !reflect.DeepEqual(got, want) || claims["sub"] != "" {
		t.Fatalf("access %+v sub %q", got, claims["sub"])
	}
}

func TestAnonymousDisabledAsksForCredentials(t *testing.T) {
	f := newFixture(t, func(o *broker.Options) { o.Anonymous = false })
	if a := f.get(t, "service=registry.test&scope=repository:public/x:pull"); a.status != 401 {
		t.Fatalf("status %d: %s", a.status, a.raw)
	}
}

func TestStarExpandsToHeldActions(t *testing.T) {
	f := newFixture(t)
	a := f.get(t, "service=registry.test&scope=repository:team/app:*", "Authorization", basic("alice", "alice-secret"))
	_, claims := f.claims(t, a.body["token"].(string))
	want := []broker.AccessEntry{{Type: "repository", Name: "team/app", Actions: []string{"pull", "push"}}}
	if got := accessOf(t, claims); !reflect.DeepEqual(got, want) {
		t.Fatalf("access %+v, want %+v", got, want)
	}
	// The admin's policy grants "*" itself on the catalog, which is asked as "*".
	a = f.get(t, "service=registry.test&scope=registry:catalog:*", "Authorization", basic("admin", "admin-secret"))
	_, claims = f.claims(t, a.body["token"].(string))
	want = []broker.AccessEntry{{Type: "registry", Name: "catalog", Actions: []string{"*"}}}
	if got := accessOf(t, claims); !reflect.DeepEqual(got, want) {
		t.Fatalf("access %+v, want %+v", got, want)
	}
}

func TestServicesHaveTheirOwnAudienceIssuerAndLifetime(t *testing.T) {
	f := newFixture(t)
	a := f.get(t, "service=notary.test&scope=repository:team/app:pull", "Authorization", basic("alice", "alice-secret"))
	if a.status != 200 || a.body["expires_in"] != float64(120) {
		t.Fatalf("status %d: %s", a.status, a.raw)
	}
	_, claims := f.claims(t, a.body["token"].(string))
	if claims["aud"] != "notary.test" || claims["iss"] != "tollgate-notary" {
		t.Fatalf("claims %v", claims)
	}
}

func TestPolicyTokenTTLIsClampedToServiceMaximum(t *testing.T) {
	f := newFixture(t)
	a := f.get(t, "service=registry.test&scope=repository:ci/app:push", "Authorization", basic("ci", "ci-secret"))
	if a.body["expires_in"] != float64(1800) {
		t.Fatalf("expires_in %v, want the policy's 1800", a.body["expires_in"])
	}
	// notary.test caps at one hour as well; lower the registry's cap to see the clamp.
	g := newFixture(t, func(o *broker.Options) { o.Services[0].MaxTokenTTL = 10 * time.Minute })
	a = g.get(t, "service=registry.test&scope=repository:ci/app:push", "Authorization", basic("ci", "ci-secret"))
	if a.body["expires_in"] != float64(600) {
		t.Fatalf("expires_in %v, want the service maximum 600", a.body["expires_in"])
	}
}

func TestPostGrantsAndRefreshTokens(t *testing.T) {
	f := newFixture(t)
	a := f.post(t, url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-secret"},
		"service": {svcName}, "client_id": {"test"}, "access_type": {"offline"}, "scope": {"repository:team/app:pull repository:team/b:push"}})
	if a.status != 200 {
		t.Fatalf("password grant: %d %s", a.status, a.raw)
	}
	rt, _ := a.body["refresh_token"].(string)
	if rt == "" {
		t.Fatalf("no refresh token for access_type=offline: %s", a.raw)
	}
	_, claims := f.claims(t, a.body["access_token"].(string))
	if got := accessOf(t, claims); len(got) != 2 {
		t.Fatalf("space-separated scopes in POST: access %+v", got)
	}

	// The refresh token is not an access token: wrong audience, no access.
	var rc jwt.MapClaims
	if _, _, err := jwt.NewParser().ParseUnverified(rt, &rc); err != nil {
		t.Fatal(err)
	}
	if rc["aud"] == svcName || rc["access"] != nil || rc["token_use"] != "refresh" {
		t.Fatalf("refresh token claims look like an access token: %v", rc)
	}

	r := f.post(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "service": {svcName},
		"client_id": {"test"}, "scope": {"repository:team/app:pull,push"}})
	if r.status != 200 {
		t.Fatalf("refresh grant: %d %s", r.status, r.raw)
	}
	if _, rotated := r.body["refresh_token"]; rotated {
		t.Fatal("refresh token rotated on use")
	}
	_, claims = f.claims(t, r.body["token"].(string))
	if claims["sub"] != "alice" || len(accessOf(t, claims)) != 1 {
		t.Fatalf("refreshed token claims %v", claims)
	}

	// A refresh token is bound to its service.
	if x := f.post(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "service": {"notary.test"}}); x.status != 401 || x.body["error"] != "invalid_grant" {
		t.Fatalf("refresh for another service: %d %s", x.status, x.raw)
	}
	// Tampered: flip a payload character.
	parts := strings.Split(rt, ".")
	tampered := parts[0] + "." + parts[1][:len(parts[1])-2] + "A" + parts[1][len(parts[1])-1:] + "." + parts[2]
	if x := f.post(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tampered}, "service": {svcName}}); x.status != 401 {
		t.Fatalf("tampered refresh token: %d %s", x.status, x.raw)
	}
	// A registry access token is not a refresh token.
	if x := f.post(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.body["token"].(string)}, "service": {svcName}}); x.status != 401 {
		t.Fatalf("access token used as refresh token: %d %s", x.status, x.raw)
	}

	// GET with offline_token=true also issues one (docker login).
	g := f.get(t, "service=registry.test&offline_token=true&client_id=docker", "Authorization", basic("alice", "alice-secret"))
	if g.body["refresh_token"] == nil {
		t.Fatalf("no refresh token for offline_token=true: %s", g.raw)
	}
	// Anonymous callers never get one.
	if g := f.get(t, "service=registry.test&offline_token=true"); g.body["refresh_token"] != nil {
		t.Fatal("refresh token issued to an anonymous caller")
	}

	// The user is removed: the next refresh fails.
	if err := htpasswd.Remove(f.htpasswd, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := f.file.Reload(); err != nil { // as the file watcher does
		t.Fatal(err)
	}
	if x := f.post(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "service": {svcName}}); x.status != 401 || !strings.Contains(x.raw, "no longer valid") {
		t.Fatalf("refresh after removal: %d %s", x.status, x.raw)
	}
}

func TestExpiredRefreshTokenIsRefused(t *testing.T) {
	start := time.Now()
	clock := start
	f := newFixture(t, func(o *broker.Options) {
		o.Now = func() time.Time { return clock }
		o.RefreshTTL = time.Hour
	})
	a := f.get(t, "service=registry.test&offline_token=true", "Authorization", basic("alice", "alice-secret"))
	rt, _ := a.body["refresh_token"].(string)
	clock = start.Add(2 * time.Hour)
	if x := f.post(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "service": {svcName}}); x.status != 401 || !strings.Contains(x.raw, "expired") {
		t.Fatalf("expired refresh token: %d %s", x.status, x.raw)
	}
}

func TestPostErrors(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name   string
		form   url.Values
		status int
		oauth  string
	}{
		{"unsupported grant", url.Values{"grant_type": {"client_credentials"}}, 400, "unsupported_grant_type"},
		{"missing grant", url.Values{"username": {"alice"}}, 400, "invalid_request"},
		{"password grant without password", url.Values{"grant_type": {"password"}, "username": {"alice"}}, 400, "invalid_request"},
		{"wrong password", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"x"}}, 401, "invalid_grant"},
		{"garbage refresh token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"abc"}}, 401, "invalid_grant"},
		{"repeated grant_type", url.Values{"grant_type": {"password", "refresh_token"}}, 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := f.post(t, tt.form)
			if a.status != tt.status || a.body["error"] != tt.oauth || a.body["error_description"] == "" || a.body["errors"] == nil {
				t.Fatalf("got %d %s, want %d %s", a.status, a.raw, tt.status, tt.oauth)
			}
		})
	}

	req, _ := http.NewRequest(http.MethodPost, f.ts.URL+"/token", strings.NewReader(`{"grant_type":"password"}`))
	req.Header.Set("Content-Type", "application/json")
	if a := do(t, req); a.status != 400 {
		t.Fatalf("JSON body: %d %s", a.status, a.raw)
	}
	req, _ = http.NewRequest(http.MethodPost, f.ts.URL+"/token", strings.NewReader("grant_type=password&x="+strings.Repeat("a", 64<<10)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if a := do(t, req); a.status != 413 {
		t.Fatalf("oversized body: %d %s", a.status, a.raw)
	}
	req, _ = http.NewRequest(http.MethodPut, f.ts.URL+"/token", nil)
	if a := do(t, req); a.status != 405 || a.header.Get("Allow") == "" {
		t.Fatalf("PUT: %d %s", a.status, a.raw)
	}
}

func TestCachedRegistryTokenSentAsBearerGetsClearMessage(t *testing.T) {
	f := newFixture(t)
	a := f.get(t, "service=registry.test&scope=repository:team/app:pull", "Authorization", basic("alice", "alice-secret"))
	b := f.get(t, "service=registry.test&scope=repository:team/app:pull", "Authorization", "Bearer "+a.body["token"].(string))
	if b.status != 401 || !strings.Contains(b.raw, "registry access token") {
		t.Fatalf("status %d: %s", b.status, b.raw)
	}
}

// downConnector injects an outage the real htpasswd file cannot produce.
type downConnector struct{}

func (downConnector) Login(context.Context, string, string) (identity.Identity, bool, error) {
	return identity.Identity{}, false, identity.ErrUnavailable
}

func TestBackendOutageIs503NotWrongPassword(t *testing.T) {
	f := newFixture(t, func(o *broker.Options) {
		o.Authenticator = identity.NewChain([]identity.Connector{identitytest.Connector(t, "ldap", downConnector{})}, nil)
	})
	a := f.get(t, "service=registry.test&scope=repository:team/app:pull", "Authorization", basic("alice", "alice-secret"))
	if a.status != 503 || a.header.Get("WWW-Authenticate") != "" || a.header.Get("Retry-After") == "" {
		t.Fatalf("status %d headers %v: %s", a.status, a.header, a.raw)
	}
}

// hangingConnector is a directory that answers only when the caller gives
// up, as an LDAP server that accepts and never replies does.
type hangingConnector struct{ asked chan struct{} }

func (h hangingConnector) Login(ctx context.Context, _, _ string) (identity.Identity, bool, error) {
	close(h.asked)
	<-ctx.Done()
	return identity.Identity{}, false, fmt.Errorf("ldap search: %w: %v", identity.ErrUnavailable, ctx.Err())
}

// A client that hangs up while its identity backend is slow is not a
// backend outage: the request is logged and counted as cancelled, with
// nothing written, and never as unavailable.
func TestCancelledRequestIsNotAnOutage(t *testing.T) {
	var logs testenv.SyncBuffer
	reg := prometheus.NewRegistry()
	hang := hangingConnector{asked: make(chan struct{})}
	f := newFixture(t, func(o *broker.Options) {
		o.Authenticator = identity.NewChain([]identity.Connector{identitytest.Connector(t, "ldap", hang)}, nil)
		o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
		o.Metrics = broker.NewMetrics(reg)
	})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.ts.URL+"/token?service=registry.test&scope=repository:team/app:pull", nil)
	req.Header.Set("Authorization", basic("alice", "alice-secret"))
	go func() { <-hang.asked; cancel() }()
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the request was answered (%d) although its client went away", resp.StatusCode)
	}

	// The server notices the hang-up and finishes on its own time.
	deadline := time.Now().Add(5 * time.Second)
	for logs.String() == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	lines := logLines(t, &logs)
	if len(lines) != 1 || lines[0]["outcome"] != "cancelled" || lines[0]["status"] != float64(499) || lines[0]["level"] != "INFO" {
		t.Fatalf("log: %v, want one INFO line with outcome cancelled, status 499", lines)
	}
	if got := requestsByOutcome(t, reg); got["cancelled"] != 1 || got["unavailable"] != 0 {
		t.Fatalf("tollgate_token_requests_total by outcome: %v, want one cancelled and no unavailable", got)
	}
}

// requestsByOutcome reads tollgate_token_requests_total from reg, summed by outcome.
func requestsByOutcome(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range families {
		if mf.GetName() != "tollgate_token_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

func TestNoPolicyFailsClosed(t *testing.T) {
	f := newFixture(t, func(o *broker.Options) { o.Authorizer = policies.NewEngine(10, time.Minute) })
	a := f.get(t, "service=registry.test&scope=repository:public/x:pull")
	if a.status != 503 || a.body["token"] != nil {
		t.Fatalf("status %d: %s", a.status, a.raw)
	}
}

func TestPolicyRuntimeErrorFailsClosed(t *testing.T) {
	f := newFixture(t)
	// Two values for one complete rule: a runtime conflict error.
	f.swapPolicy(t, `package registry.authz
allowed contains {"type": "repository", "name": "x", "action": "pull"}
token_ttl := 60 if input.service
token_ttl := 120 if input.service
`)
	a := f.get(t, "service=registry.test&scope=repository:x:pull")
	if a.status != 500 || a.body["token"] != nil || strings.Contains(a.raw, "conflict") {
		t.Fatalf("status %d: %s", a.status, a.raw)
	}
}

func TestPublishedKeys(t *testing.T) {
	f := newFixture(t)
	a := do(t, mustRequest(t, f.ts.URL+"/.well-known/jwks.json"))
	keys, _ := a.body["keys"].([]any)
	if a.status != 200 || len(keys) != 1 {
		t.Fatalf("jwks: %d %s", a.status, a.raw)
	}
	k := keys[0].(map[string]any)
	signer := f.keys.Signer(time.Now())
	if k["kid"] != signer.ID || k["kty"] != "EC" || k["crv"] != "P-256" || k["alg"] != "ES256" {
		t.Fatalf("jwk %v", k)
	}
	c := do(t, mustRequest(t, f.ts.URL+"/certs.pem"))
	if c.status != 200 || !strings.Contains(c.raw, "BEGIN CERTIFICATE") {
		t.Fatalf("certs.pem: %d %s", c.status, c.raw)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if r := do(t, mustRequest(t, f.ts.URL+path)); r.status != 200 {
			t.Fatalf("%s: %d", path, r.status)
		}
	}
}

func mustRequest(t *testing.T, u string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// logLines parses every line of a JSON log.
func logLines(t *testing.T, b *testenv.SyncBuffer) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestDecisionLogLineNeverHoldsSecrets(t *testing.T) {
	var logs testenv.SyncBuffer
	f := newFixture(t, func(o *broker.Options) { o.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	a := f.get(t, "service=registry.test&scope=repository:team/app:pull,delete&offline_token=true", "Authorization", basic("alice", "alice-secret"))
	f.get(t, "service=registry.test&scope=repository:team/app:pull", "Authorization", basic("alice", "wrong-secret"))
	f.get(t, "service=registry.test&scope=repository:team/app:pull")
	f.post(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {a.body["refresh_token"].(string)}, "service": {svcName}})

	lines := logLines(t, &logs)
	if len(lines) != 4 {
		t.Fatalf("%d log lines for 4 requests", len(lines))
	}
	want := []struct {
		status  float64
		outcome string
	}{{200, "partial"}, {401, "unauthorized"}, {200, "denied"}, {200, "login"}}
	for i, w := range want {
		if lines[i]["msg"] != "token" || lines[i]["status"] != w.status || lines[i]["outcome"] != w.outcome {
			t.Errorf("line %d: %v, want status %v outcome %s", i, lines[i], w.status, w.outcome)
		}
	}
	first := lines[0]
	if first["subject"] != "alice" || first["connector"] != "local" || first["service"] != svcName ||
		first["policy_revision"] == "" || first["latency_ms"] == nil {
		t.Errorf("first line lacks fields: %v", first)
	}
	if g, _ := first["granted"].([]any); len(g) != 1 || g[0] != "repository:team/app:pull" {
		t.Errorf("granted = %v", first["granted"])
	}
	all := logs.String()
	for _, secret := range []string{"alice-secret", "wrong-secret", a.body["token"].(string), a.body["refresh_token"].(string)} {
		if strings.Contains(all, secret) {
			t.Fatalf("the log holds a secret: %q", secret)
		}
	}
}

// TestPostTakesServiceFromTheQueryString: a POST that names its service in
// the query (a realm URL with ?service=) gets that service, not silently the
// default; the same key with another value in the form is refused.
func TestPostTakesServiceFromTheQueryString(t *testing.T) {
	f := newFixture(t)
	post := func(query string, form url.Values) answer {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, f.ts.URL+"/token?"+query, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return do(t, req)
	}
	login := url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-secret"}}
	a := post("service=notary.test&scope=repository:team/app:pull", login)
	if a.status != http.StatusOK {
		t.Fatalf("service in the query: %d %s", a.status, a.raw)
	}
	if _, c := f.claims(t, a.body["access_token"].(string)); c["aud"] != "notary.test" || c["iss"] != "tollgate-notary" {
		t.Fatalf("service in the query: token for %v from %v, want notary.test", c["aud"], c["iss"])
	}
	withForm := url.Values{"service": {"registry.test"}}
	for k, v := range login {
		withForm[k] = v
	}
	if a := post("service=notary.test", withForm); a.status != http.StatusBadRequest || !strings.Contains(a.raw, "service") {
		t.Fatalf("conflicting services: %d %s, want 400 naming service", a.status, a.raw)
	}
	if a := post("service=registry.test", withForm); a.status != http.StatusOK {
		t.Fatalf("the same service in both: %d %s", a.status, a.raw)
	}
}
