package oidc

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/identity"
)

// testIssuer is an httptest OIDC issuer: discovery, a JWKS it can rotate
// and take down, and a count of JWKS fetches.
type testIssuer struct {
	t       testing.TB
	srv     *httptest.Server
	mu      sync.Mutex
	keys    map[string]crypto.Signer // by kid
	down    atomic.Bool
	fetches atomic.Int64
}

// The test keys are made once: RSA generation is slow under -race.
var (
	rsaKey1, rsaKey2 = mustRSA(), mustRSA()
	ecKey1, _        = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, edKey1, _     = ed25519.GenerateKey(rand.Reader)
)

func mustRSA() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

func newTestIssuer(t testing.TB) *testIssuer {
	ti := &testIssuer{t: t, keys: map[string]crypto.Signer{"rsa1": rsaKey1, "ec1": ecKey1, "ed1": edKey1}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		if ti.down.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"issuer": ti.srv.URL, "jwks_uri": ti.srv.URL + "/jwks"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		ti.fetches.Add(1)
		if ti.down.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		ti.mu.Lock()
		defer ti.mu.Unlock()
		var keys []map[string]string
		for kid, k := range ti.keys {
			keys = append(keys, publicJWK(kid, k.Public()))
		}
		json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	})
	ti.srv = httptest.NewServer(mux)
	t.Cleanup(ti.srv.Close)
	return ti
}

func publicJWK(kid string, pub crypto.PublicKey) map[string]string {
	enc := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": enc(k.N.Bytes()), "e": enc(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		b, _ := k.Bytes()
		return map[string]string{"kty": "EC", "kid": kid, "crv": "P-256", "x": enc(b[1:33]), "y": enc(b[33:])}
	case ed25519.PublicKey:
		return map[string]string{"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": enc(k)}
	}
	panic("key type")
}

// rotate replaces every key with one new RSA key under kid.
func (ti *testIssuer) rotate(kid string, k crypto.Signer) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.keys = map[string]crypto.Signer{kid: k}
}

// claims are a valid token's claims at now, for audience "registry".
func (ti *testIssuer) claims(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"iss": ti.srv.URL, "sub": "alice", "aud": "registry", "name": "Alice",
		"groups": []string{"dev", "ops"}, "org": "acme",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	}
}

func sign(t testing.TB, method jwt.SigningMethod, kid string, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// clock is a settable time source for the verifier.
type clock struct{ ns atomic.Int64 }

func newClock() *clock               { c := &clock{}; c.set(time.Now()); return c }
func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *clock) add(d time.Duration) { c.set(c.now().Add(d)) }

func (ti *testIssuer) config() IssuerConfig {
	return IssuerConfig{
		Issuer: ti.srv.URL, Audiences: []string{"registry"},
		Algorithms:   []string{"RS256", "ES256", "EdDSA"},
		GroupsPrefix: "oidc:", RequiredClaims: map[string]string{"org": "acme"},
	}
}

func newVerifier(t testing.TB, c *clock, ics ...IssuerConfig) *Verifier {
	t.Helper()
	v, err := New(Config{Issuers: ics, Now: c.now}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerifyMapsClaimsToIdentity(t *testing.T) {
	ti, c := newTestIssuer(t), newClock()
	v := newVerifier(t, c, ti.config())
	for _, tc := range []struct {
		name   string
		method jwt.SigningMethod
		kid    string
		key    any
	}{
		{"RS256", jwt.SigningMethodRS256, "rsa1", rsaKey1},
		{"ES256", jwt.SigningMethodES256, "ec1", ecKey1},
		{"EdDSA", jwt.SigningMethodEdDSA, "ed1", edKey1},
		{"no kid", jwt.SigningMethodES256, "", ecKey1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := ti.claims(c.now())
			id, ok, err := v.Verify(context.Background(), sign(t, tc.method, tc.kid, tc.key, cl))
			if err != nil || !ok {
				t.Fatalf("Verify = %v, %v", ok, err)
			}
			if id.Subject != "alice" || id.Name != "Alice" || strings.Join(id.Groups, ",") != "oidc:dev,oidc:ops" {
				t.Fatalf("identity %+v", id)
			}
			if id.Claims["org"] != "acme" || id.Claims["iss"] != ti.srv.URL {
				t.Fatalf("claims %v", id.Claims)
			}
			if want := time.Unix(cl["exp"].(int64), 0); !id.Expiry.Equal(want) {
				t.Fatalf("expiry %v, want the token's exp %v", id.Expiry, want)
			}
		})
	}
	if n := ti.fetches.Load(); n != 1 {
		t.Fatalf("%d JWKS fetches for four tokens, want 1", n)
	}
}

func TestVerifyRefusesBadTokensWithAReason(t *testing.T) {
	ti, c := newTestIssuer(t), newClock()
	v := newVerifier(t, c, ti.config())
	now := c.now()
	with := func(k string, val any) jwt.MapClaims {
		cl := ti.claims(now)
		if val == nil {
			delete(cl, k)
		} else {
			cl[k] = val
		}
		return cl
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(&rsaKey1.PublicKey))})
	good := sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, ti.claims(now))
	parts := strings.Split(good, ".")
	for _, tc := range []struct {
		name, token, reason string
	}{
		{"expired", sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, with("exp", now.Add(-time.Minute).Unix())), "expired"},
		{"not yet valid", sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, with("nbf", now.Add(time.Minute).Unix())), "not valid yet"},
		{"no exp", sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, with("exp", nil)), "exp"},
		{"wrong audience", sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, with("aud", "elsewhere")), "audience"},
		{"alg none", sign(t, jwt.SigningMethodNone, "rsa1", jwt.UnsafeAllowNoneSignatureType, ti.claims(now)), `algorithm "none" is not accepted`},
		{"HS256 keyed with the public key", sign(t, jwt.SigningMethodHS256, "rsa1", pubPEM, ti.claims(now)), `algorithm "HS256" is not accepted`},
		{"alg not allowed", sign(t, jwt.SigningMethodRS512, "rsa1", rsaKey1, ti.claims(now)), `algorithm "RS512" is not accepted`},
		{"ES256 under an RSA kid", sign(t, jwt.SigningMethodES256, "rsa1", ecKey1, ti.claims(now)), "does not fit"},
		{"unknown kid", sign(t, jwt.SigningMethodRS256, "nope", rsaKey1, ti.claims(now)), `signing key "nope"`},
		{"signed by another key", sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey2, ti.claims(now)), "signature is invalid"},
		{"tampered", parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"`+ti.srv.URL+`","sub":"admin"}`)) + "." + parts[2], "signature is invalid"},
		{"required claim differs", sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, with("org", "evil")), `required claim "org"`},
		{"required claim missing", sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, with("org", nil)), `required claim "org"`},
		{"no subject", sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, with("sub", nil)), "no subject"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ok, err := v.Verify(context.Background(), tc.token)
			var rej *identity.RejectedError
			if ok || !errors.As(err, &rej) || !strings.Contains(rej.Reason, tc.reason) {
				t.Fatalf("Verify = %v, %v; want a rejection saying %q", ok, err, tc.reason)
			}
			if errors.Is(err, identity.ErrUnavailable) {
				t.Fatal("a bad token must not read as an outage")
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Tokens that are not JWTs, or come from an issuer that is not configured,
// are no business of this connector: ok=false and no error, so a chain asks
// the next one, and the provider is never contacted for them.
func TestVerifyIgnoresForeignTokens(t *testing.T) {
	ti, c := newTestIssuer(t), newClock()
	v := newVerifier(t, c, ti.config())
	foreign := ti.claims(c.now())
	foreign["iss"] = "https://elsewhere.example"
	for name, tok := range map[string]string{
		"garbage":        "not a token",
		"three dots":     "a.b.c",
		"empty":          "",
		"unknown issuer": sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, foreign),
		"unknown alg":    "eyJhbGciOiJYWVoifQ.e30.c2ln",
	} {
		if _, ok, err := v.Verify(context.Background(), tok); ok || err != nil {
			t.Errorf("%s: Verify = %v, %v; want false, nil", name, ok, err)
		}
	}
	if n := ti.fetches.Load(); n != 0 {
		t.Fatalf("%d JWKS fetches for foreign tokens", n)
	}
}

func TestVerifyLeewayIsConfigurable(t *testing.T) {
	ti, c := newTestIssuer(t), newClock()
	ic := ti.config()
	ic.Leeway = 2 * time.Minute
	v := newVerifier(t, c, ic)
	cl := ti.claims(c.now())
	cl["exp"] = c.now().Add(-time.Minute).Unix()
	if _, ok, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, cl)); !ok {
		t.Fatalf("expired a minute ago with 2m leeway: %v", err)
	}
	if _, err := New(Config{Issuers: []IssuerConfig{{Issuer: ti.srv.URL, Audiences: []string{"x"}, Leeway: time.Hour}}}, nil); err == nil {
		t.Fatal("an hour of leeway accepted")
	}
}

// A flood of made-up key ids must not become a flood of JWKS fetches.
func TestUnknownKidFloodFetchesAtMostOnce(t *testing.T) {
	ti, c := newTestIssuer(t), newClock()
	v := newVerifier(t, c, ti.config())
	tokens := make([]string, 1000)
	for i := range tokens {
		tokens[i] = sign(t, jwt.SigningMethodES256, rand.Text(), ecKey1, ti.claims(c.now()))
	}
	var wg sync.WaitGroup
	var accepted atomic.Int64
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < len(tokens); i += 16 {
				if _, ok, _ := v.Verify(context.Background(), tokens[i]); ok {
					accepted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if accepted.Load() != 0 {
		t.Fatalf("%d tokens with unknown kids accepted", accepted.Load())
	}
	if n := ti.fetches.Load(); n != 1 {
		t.Fatalf("1000 unknown kids caused %d JWKS fetches, want 1 (the first)", n)
	}
}

func TestKeyRotationVerifiesAfterOneRefetch(t *testing.T) {
	ti, c := newTestIssuer(t), newClock()
	ic := ti.config()
	ic.RefetchInterval = 10 * time.Second
	v := newVerifier(t, c, ic)
	old := sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, ti.claims(c.now()))
	if _, ok, err := v.Verify(context.Background(), old); !ok {
		t.Fatal(err)
	}
	ti.rotate("rsa2", rsaKey2)
	fresh := sign(t, jwt.SigningMethodRS256, "rsa2", rsaKey2, ti.claims(c.now()))
	// Within the refetch interval the new kid is unknown...
	if _, ok, err := v.Verify(context.Background(), fresh); ok || err == nil {
		t.Fatalf("new key accepted before a refetch was allowed: %v", err)
	}
	// ...after it, one fetch learns it and drops the rotated-out key.
	c.add(11 * time.Second)
	fresh = sign(t, jwt.SigningMethodRS256, "rsa2", rsaKey2, ti.claims(c.now()))
	if _, ok, err := v.Verify(context.Background(), fresh); !ok {
		t.Fatalf("rotated key: %v", err)
	}
	_, ok, err := v.Verify(context.Background(), old)
	var rej *identity.RejectedError
	if ok || !errors.As(err, &rej) || !strings.Contains(rej.Reason, `"rsa1"`) {
		t.Fatalf("rotated-out key: %v, %v", ok, err)
	}
	if n := ti.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2 (start, rotation)", n)
	}
}

func TestKeysAreFetchedAgainWhenOld(t *testing.T) {
	ti, c := newTestIssuer(t), newClock()
	v := newVerifier(t, c, ti.config())
	if _, ok, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, ti.claims(c.now()))); !ok {
		t.Fatal(err)
	}
	ti.rotate("rsa2", rsaKey2)
	c.add(DefaultKeysMaxAge + time.Second)
	_, ok, _ := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, ti.claims(c.now())))
	if ok || ti.fetches.Load() != 2 {
		t.Fatalf("retired key still accepted after max age (ok=%v, %d fetches)", ok, ti.fetches.Load())
	}
	// Old keys are kept while the provider is down.
	ti.rotate("rsa1", rsaKey1)
	c.add(DefaultKeysMaxAge + time.Second)
	ti.down.Store(true)
	if _, ok, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, "rsa2", rsaKey2, ti.claims(c.now()))); !ok {
		t.Fatalf("cached key refused while the provider is down: %v", err)
	}
}

func TestProviderDownAtStartIsUnavailableThenRecovers(t *testing.T) {
	ti, c := newTestIssuer(t), newClock()
	ti.down.Store(true)
	ic := ti.config()
	ic.RefetchInterval = 5 * time.Second
	v := newVerifier(t, c, ic)
	v.Warm(context.Background())
	tok := sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, ti.claims(c.now()))
	for range 50 {
		if _, ok, err := v.Verify(context.Background(), tok); ok || !errors.Is(err, identity.ErrUnavailable) {
			t.Fatalf("provider down: Verify = %v, %v; want ErrUnavailable", ok, err)
		}
	}
	if n := ti.fetches.Load(); n != 0 { // discovery failed first; rate limited after
		t.Fatalf("%d JWKS fetches while discovery is down", n)
	}
	ti.down.Store(false)
	c.add(6 * time.Second)
	tok = sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, ti.claims(c.now()))
	if _, ok, err := v.Verify(context.Background(), tok); !ok {
		t.Fatalf("provider back: %v", err)
	}
}

func TestDiscoveryMustNameTheIssuer(t *testing.T) {
	ti, c := newTestIssuer(t), newClock()
	ic := ti.config()
	ic.Issuer = strings.Replace(ti.srv.URL, "127.0.0.1", "localhost", 1)
	v := newVerifier(t, c, ic)
	cl := ti.claims(c.now())
	cl["iss"] = ic.Issuer
	_, ok, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, cl))
	if ok || !errors.Is(err, identity.ErrUnavailable) || !strings.Contains(err.Error(), "names issuer") {
		t.Fatalf("Verify = %v, %v", ok, err)
	}
}

// A Kubernetes service-account token is mapped by configuration alone.
func TestKubernetesServiceAccountClaims(t *testing.T) {
	ti, c := newTestIssuer(t), newClock()
	v := newVerifier(t, c, IssuerConfig{
		Issuer: ti.srv.URL, Audiences: []string{"registry"},
		GroupsClaim: "kubernetes.io.namespace", GroupsPrefix: "k8s-namespace:",
		NameClaim:      "kubernetes.io.serviceaccount.name",
		RequiredClaims: map[string]string{"kubernetes.io.serviceaccount.name": "builder"},
	})
	cl := jwt.MapClaims{
		"iss": ti.srv.URL, "aud": []string{"registry", "https://kubernetes.default.svc"},
		"sub": "system:serviceaccount:builds:builder", "iat": c.now().Unix(), "exp": c.now().Add(time.Hour).Unix(),
		"kubernetes.io": map[string]any{"namespace": "builds", "serviceaccount": map[string]any{"name": "builder", "uid": "u1"}},
	}
	id, ok, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, cl))
	if !ok {
		t.Fatal(err)
	}
	if id.Subject != "system:serviceaccount:builds:builder" || id.Name != "builder" || len(id.Groups) != 1 || id.Groups[0] != "k8s-namespace:builds" {
		t.Fatalf("identity %+v", id)
	}
	cl["kubernetes.io"].(map[string]any)["serviceaccount"].(map[string]any)["name"] = "other"
	if _, ok, _ := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, cl)); ok {
		t.Fatal("required nested claim not enforced")
	}
}

func TestLookupClaim(t *testing.T) {
	claims := map[string]any{
		"sub": "a", "https://example.com/groups": []any{"g"}, "a.b": "literal",
		"a":             map[string]any{"b": "nested", "c": map[string]any{"d": 1.0}},
		"kubernetes.io": map[string]any{"namespace": "ns"},
	}
	for path, want := range map[string]any{
		"sub": "a", "a.b": "literal", "a.c.d": 1.0, "kubernetes.io.namespace": "ns",
		"missing": nil, "a.x": nil, "sub.x": nil, ".": nil, "": nil,
	} {
		if got := lookupClaim(claims, path); got != want {
			t.Errorf("lookupClaim(%q) = %v, want %v", path, got, want)
		}
	}
	if got := lookupClaim(claims, "https://example.com/groups"); got == nil {
		t.Error("URL-named claim not found")
	}
	for _, tc := range []struct {
		v    any
		want string
		ok   bool
	}{
		{"x", "x", true}, {true, "true", true}, {1.0, "1", true}, {[]any{"a", "x"}, "x", true},
		{[]any{[]any{"x"}}, "x", false}, {map[string]any{"x": "x"}, "x", false}, {nil, "", false}, {"x", "y", false},
	} {
		if claimMatches(tc.v, tc.want) != tc.ok {
			t.Errorf("claimMatches(%v, %q) != %v", tc.v, tc.want, tc.ok)
		}
	}
}

func TestRefreshRemapsTheKeptClaims(t *testing.T) {
	ti, c := newTestIssuer(t), newClock()
	v := newVerifier(t, c, ti.config())
	id, ok, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, ti.claims(c.now())))
	if !ok {
		t.Fatal(err)
	}
	// What the broker keeps in a refresh token: subject, claims (through
	// JSON, as a refresh token carries them) and the refresh token's expiry.
	var kept map[string]any
	raw, _ := json.Marshal(id.Claims)
	json.Unmarshal(raw, &kept)
	prev := identity.Identity{Subject: id.Subject, Claims: kept, Expiry: c.now().Add(time.Minute)}
	got, ok, err := v.Refresh(context.Background(), prev)
	if !ok || err != nil || got.Subject != "alice" || strings.Join(got.Groups, ",") != "oidc:dev,oidc:ops" || !got.Expiry.Equal(prev.Expiry) {
		t.Fatalf("Refresh = %+v, %v, %v", got, ok, err)
	}
	// The required claim changes in the configuration: refresh fails.
	ic := ti.config()
	ic.RequiredClaims = map[string]string{"org": "other"}
	if _, ok, _ := newVerifier(t, c, ic).Refresh(context.Background(), prev); ok {
		t.Fatal("refresh after the required claim changed")
	}
	// The issuer is no longer configured: refresh fails.
	other := newTestIssuer(t)
	if _, ok, _ := newVerifier(t, c, other.config()).Refresh(context.Background(), prev); ok {
		t.Fatal("refresh for an issuer no longer trusted")
	}
	if _, ok, _ := v.Refresh(context.Background(), identity.Identity{Subject: "alice"}); ok {
		t.Fatal("refresh without claims")
	}
}

func TestRefreshTTLLetsRefreshOutliveTheToken(t *testing.T) {
	ti, c := newTestIssuer(t), newClock()
	ic := ti.config()
	ic.RefreshTTL = 12 * time.Hour
	v := newVerifier(t, c, ic)
	id, ok, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, ti.claims(c.now())))
	if !ok {
		t.Fatal(err)
	}
	if want := c.now().Add(12 * time.Hour); !id.Expiry.Equal(want) {
		t.Fatalf("expiry %v, want %v", id.Expiry, want)
	}
}

func TestConfigRefusesUnsafeSettings(t *testing.T) {
	base := func() IssuerConfig {
		return IssuerConfig{Issuer: "https://idp.example.com", Audiences: []string{"registry"}}
	}
	for name, mod := range map[string]func(*IssuerConfig){
		"alg none":           func(c *IssuerConfig) { c.Algorithms = []string{"none"} },
		"HMAC":               func(c *IssuerConfig) { c.Algorithms = []string{"RS256", "HS256"} },
		"no audience":        func(c *IssuerConfig) { c.Audiences = nil },
		"empty audience":     func(c *IssuerConfig) { c.Audiences = []string{""} },
		"no issuer":          func(c *IssuerConfig) { c.Issuer = "" },
		"plain http":         func(c *IssuerConfig) { c.Issuer = "http://idp.example.com" },
		"plain http jwks":    func(c *IssuerConfig) { c.JWKSURL = "http://idp.example.com/keys" },
		"negative leeway":    func(c *IssuerConfig) { c.Leeway = -time.Second },
		"negative refresh":   func(c *IssuerConfig) { c.RefreshTTL = -time.Second },
		"empty required key": func(c *IssuerConfig) { c.RequiredClaims = map[string]string{"": "x"} },
	} {
		c := base()
		mod(&c)
		if _, err := New(Config{Issuers: []IssuerConfig{c}}, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(Config{Issuers: []IssuerConfig{base(), base()}}, nil); err == nil {
		t.Error("the same issuer twice: accepted")
	}
	ok := base()
	ok.Issuer = "kubernetes/serviceaccount" // not a URL: fine with jwks_url
	ok.JWKSURL = "http://127.0.0.1:6443/openid/v1/jwks"
	if _, err := New(Config{Issuers: []IssuerConfig{ok}}, nil); err != nil {
		t.Errorf("non-URL issuer with a loopback jwks_url: %v", err)
	}
}

func TestParseJWKRefusesWeakAndForeignKeys(t *testing.T) {
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	enc := base64.RawURLEncoding.EncodeToString
	for name, k := range map[string]map[string]string{
		"RSA 1024":      publicJWK("k", &small.PublicKey),
		"encryption":    func() map[string]string { m := publicJWK("k", &rsaKey1.PublicKey); m["use"] = "enc"; return m }(),
		"symmetric":     {"kty": "oct", "k": enc([]byte("secret"))},
		"off curve":     {"kty": "EC", "crv": "P-256", "x": enc(make([]byte, 32)), "y": enc(make([]byte, 32))},
		"unknown crv":   {"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"},
		"bad ed25519":   {"kty": "OKP", "crv": "Ed25519", "x": enc([]byte("short"))},
		"X25519":        {"kty": "OKP", "crv": "X25519", "x": enc(make([]byte, 32))},
		"HS256 alg":     func() map[string]string { m := publicJWK("k", &rsaKey1.PublicKey); m["alg"] = "HS256"; return m }(),
		"not base64":    {"kty": "RSA", "n": "!!!", "e": "AQAB"},
		"huge exponent": {"kty": "RSA", "n": enc(rsaKey1.N.Bytes()), "e": enc(make([]byte, 9))},
	} {
		raw, _ := json.Marshal(k)
		if _, _, err := parseJWK(raw); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func FuzzParseJWK(f *testing.F) {
	for _, k := range []crypto.PublicKey{&rsaKey1.PublicKey, &ecKey1.PublicKey, edKey1.Public()} {
		raw, _ := json.Marshal(publicJWK("k", k))
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		_, _, _ = parseJWK(raw) // must not panic
	})
}

func FuzzVerify(f *testing.F) {
	ti, c := newTestIssuer(f), newClock()
	v := newVerifier(f, c, ti.config())
	f.Add(sign(f, jwt.SigningMethodRS256, "rsa1", rsaKey1, ti.claims(c.now())))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Fuzz(func(t *testing.T, raw string) {
		_, _, _ = v.Verify(context.Background(), raw) // must not panic
	})
}

// hs256 signs with a raw HMAC key, as an attacker holding a public key would.
func hs256(key []byte, signingInput string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signingInput))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// The classic key-confusion token, built by hand (no library helps): the
// header says HS256 and the MAC is keyed with the issuer's public key.
func TestHS256KeyedWithThePublicJWKIsRefused(t *testing.T) {
	ti, c := newTestIssuer(t), newClock()
	v := newVerifier(t, c, ti.config())
	jwkJSON, _ := json.Marshal(publicJWK("rsa1", &rsaKey1.PublicKey))
	payload, _ := json.Marshal(ti.claims(c.now()))
	input := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT","kid":"rsa1"}`)) + "." + base64.RawURLEncoding.EncodeToString(payload)
	tok := input + "." + hs256(jwkJSON, input)
	if _, ok, err := v.Verify(context.Background(), tok); ok || err == nil {
		t.Fatalf("HS256 keyed with the public JWK: %v, %v", ok, err)
	}
}
