package broker_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/identity/htpasswd"
	"github.com/tollgate/tollgate/identity/identitytest"
	"github.com/tollgate/tollgate/identity/oidc"
	"github.com/tollgate/tollgate/test/testenv"
)

// oidcFixture is a broker whose chain holds an htpasswd connector and an
// OIDC connector trusting an httptest issuer, on a clock the test moves.
type oidcFixture struct {
	*fixture
	issuer *httptest.Server
	key    *ecdsa.PrivateKey
	down   atomic.Bool
	clock  clock
}

func (o *oidcFixture) now() time.Time { return o.clock.now() }

func newOIDCFixture(t *testing.T, mutate ...func(*broker.Options)) *oidcFixture {
	t.Helper()
	o := &oidcFixture{}
	o.clock.set(time.Now())
	var err error
	if o.key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		if o.down.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"issuer": o.issuer.URL, "jwks_uri": o.issuer.URL + "/jwks"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		b, _ := o.key.PublicKey.Bytes()
		enc := base64.RawURLEncoding.EncodeToString
		json.NewEncoder(w).Encode(map[string]any{"keys": []any{map[string]string{
			"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "x": enc(b[1:33]), "y": enc(b[33:]),
		}}})
	})
	o.issuer = httptest.NewServer(mux)
	t.Cleanup(o.issuer.Close)

	hp := filepath.Join(t.TempDir(), "htpasswd")
	if err := htpasswd.Set(hp, "admin", "admin-secret", 4); err != nil {
		t.Fatal(err)
	}
	file, err := htpasswd.Open(hp)
	if err != nil {
		t.Fatal(err)
	}
	v, err := oidc.New(oidc.Config{Now: o.now, Issuers: []oidc.IssuerConfig{{
		Issuer: o.issuer.URL, Audiences: []string{svcName}, Algorithms: []string{"ES256"},
		RefetchInterval: time.Second,
	}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	chain := identity.NewChain([]identity.Connector{identitytest.Connector(t, "local", file), identitytest.Connector(t, "sso", v)}, nil)
	o.fixture = newFixture(t, append([]func(*broker.Options){func(opts *broker.Options) {
		opts.Authenticator = chain
		opts.Now = o.now
		opts.RefreshTTL = 24 * time.Hour
	}}, mutate...)...)
	return o
}

// token is an OIDC token for alice that expires after ttl, with extra claims.
func (o *oidcFixture) token(t *testing.T, ttl time.Duration, extra map[string]any) string {
	t.Helper()
	return o.tokenWithHeader(t, ttl, extra, nil)
}

// tokenWithHeader is token with extra header fields.
func (o *oidcFixture) tokenWithHeader(t *testing.T, ttl time.Duration, extra, header map[string]any) string {
	t.Helper()
	c := jwt.MapClaims{"iss": o.issuer.URL, "sub": "alice", "aud": svcName, "groups": []string{"dev"},
		"iat": o.now().Unix(), "exp": o.now().Add(ttl).Unix()}
	for k, v := range extra {
		c[k] = v
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	tok.Header["kid"] = "k1"
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(o.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestOIDCRefreshTokenExpiresWithTheOIDCToken(t *testing.T) {
	o := newOIDCFixture(t)
	start := o.now()
	tok := o.token(t, 10*time.Minute, map[string]any{"team": "blue"})
	a := o.get(t, "service=registry.test&offline_token=true&scope=repository:team/app:pull", "Authorization", "Bearer "+tok)
	rt, _ := a.body["refresh_token"].(string)
	if a.status != 200 || rt == "" {
		t.Fatalf("bearer OIDC token with offline_token: %d %s", a.status, a.raw)
	}
	var rc jwt.MapClaims
	if _, _, err := jwt.NewParser().ParseUnverified(rt, &rc); err != nil {
		t.Fatal(err)
	}
	exp, _ := rc.GetExpirationTime()
	if want := start.Add(10 * time.Minute).Unix(); exp == nil || exp.Unix() > want {
		t.Fatalf("refresh token exp %v, want no later than the OIDC token's %d (refresh TTL is 24h)", exp, want)
	}
	// The refresh token carries the claims, and refreshing maps them again.
	if c, _ := rc["claims"].(map[string]any); c["team"] != "blue" || c["iss"] != o.issuer.URL {
		t.Fatalf("refresh token claims %v", rc["claims"])
	}
	o.clock.set(start.Add(9 * time.Minute))
	r := o.post(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "service": {svcName}, "scope": {"repository:team/app:pull"}})
	if r.status != 200 {
		t.Fatalf("refresh before the OIDC token expired: %d %s", r.status, r.raw)
	}
	var claims jwt.MapClaims // signed on the moved clock: checked by the other tests
	if _, _, err := jwt.NewParser().ParseUnverified(r.body["token"].(string), &claims); err != nil || claims["sub"] != "alice" || len(accessOf(t, claims)) != 1 {
		t.Fatalf("refreshed token claims %v (%v)", claims, err)
	}
	o.clock.set(start.Add(11 * time.Minute))
	if r := o.post(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "service": {svcName}}); r.status != 401 || !strings.Contains(r.raw, "expired") {
		t.Fatalf("refresh after the OIDC token expired: %d %s", r.status, r.raw)
	}

	// A password identity's refresh token keeps the configured lifetime and
	// carries no claims.
	o.clock.set(start)
	p := o.get(t, "service=registry.test&offline_token=true", "Authorization", basic("admin", "admin-secret"))
	var pc jwt.MapClaims
	if _, _, err := jwt.NewParser().ParseUnverified(p.body["refresh_token"].(string), &pc); err != nil {
		t.Fatal(err)
	}
	if exp, _ := pc.GetExpirationTime(); exp.Unix() != start.Add(24*time.Hour).Unix() || pc["claims"] != nil {
		t.Fatalf("htpasswd refresh token: exp %v, claims %v", exp, pc["claims"])
	}
}

// The OIDC token is accepted as Bearer, as the Basic password with any user
// name, and as the password of the POST password grant; a refused one gets
// 401 with the verifier's reason whichever way it came.
func TestOIDCTokenAsBearerBasicAndPasswordGrant(t *testing.T) {
	o := newOIDCFixture(t)
	good := o.token(t, 5*time.Minute, nil)
	for name, a := range map[string]answer{
		"bearer":         o.get(t, "service=registry.test&scope=repository:team/app:pull", "Authorization", "Bearer "+good),
		"basic":          o.get(t, "service=registry.test&scope=repository:team/app:pull", "Authorization", basic("anything", good)),
		"password grant": o.post(t, url.Values{"grant_type": {"password"}, "username": {"x"}, "password": {good}, "service": {svcName}, "scope": {"repository:team/app:pull"}}),
	} {
		if a.status != 200 {
			t.Fatalf("%s: %d %s", name, a.status, a.raw)
		}
		if _, claims := o.claims(t, a.body["token"].(string)); claims["sub"] != "alice" || len(accessOf(t, claims)) != 1 {
			t.Fatalf("%s: claims %v", name, claims)
		}
	}
	expired := o.token(t, -time.Hour, nil)
	for name, a := range map[string]answer{
		"bearer":         o.get(t, "service=registry.test", "Authorization", "Bearer "+expired),
		"basic":          o.get(t, "service=registry.test", "Authorization", basic("anything", expired)),
		"password grant": o.post(t, url.Values{"grant_type": {"password"}, "username": {"x"}, "password": {expired}, "service": {svcName}}),
	} {
		if a.status != 401 || !strings.Contains(a.raw, "OIDC token rejected: token is expired") {
			t.Fatalf("%s, expired token: %d %s", name, a.status, a.raw)
		}
	}
	if a := o.get(t, "service=registry.test", "Authorization", "Bearer garbage"); a.status != 401 || !strings.Contains(a.raw, "not a JWT") {
		t.Fatalf("garbage bearer: %d %s", a.status, a.raw)
	}
}

// The provider is down: callers with a token get 503 (an outage, not a
// wrong password, and no throttle failure), password users are unaffected.
func TestOIDCProviderDownIsUnavailableForTokensOnly(t *testing.T) {
	o := newOIDCFixture(t)
	o.down.Store(true)
	tok := o.token(t, 5*time.Minute, nil)
	if a := o.get(t, "service=registry.test", "Authorization", "Bearer "+tok); a.status != 503 {
		t.Fatalf("bearer, provider down: %d %s", a.status, a.raw)
	}
	if a := o.get(t, "service=registry.test", "Authorization", basic("x", tok)); a.status != 503 {
		t.Fatalf("basic with token, provider down: %d %s", a.status, a.raw)
	}
	if a := o.get(t, "service=registry.test", "Authorization", basic("admin", "admin-secret")); a.status != 200 {
		t.Fatalf("htpasswd user, provider down: %d %s", a.status, a.raw)
	}
	o.down.Store(false)
	o.clock.add(2 * time.Second) // past the refetch interval
	tok = o.token(t, 5*time.Minute, nil)
	if a := o.get(t, "service=registry.test", "Authorization", "Bearer "+tok); a.status != 200 {
		t.Fatalf("bearer, provider back: %d %s", a.status, a.raw)
	}
}

// TestValidOIDCTokenIsNotLockedByUserName: the user name beside a token
// sent as a Basic password is arbitrary (`docker login -u oauth2 -p $TOKEN`);
// wrong passwords for that name from elsewhere must not stop the token.
func TestValidOIDCTokenIsNotLockedByUserName(t *testing.T) {
	o := newOIDCFixture(t, func(opts *broker.Options) {
		opts.Throttle = &broker.Throttle{Store: broker.NewMemoryCounters(1000, time.Hour), Window: time.Minute,
			MaxPerUser: 5, MaxPerAddress: 100, KnownAddressWindow: time.Hour}
	})
	for i := range 10 {
		if code, _ := tokenFrom(o.fixture, "203.0.113.1", "oauth2", fmt.Sprint("guess-", i)); code != http.StatusUnauthorized && code != http.StatusTooManyRequests {
			t.Fatalf("guess %d: %d", i, code)
		}
	}
	if code, _ := tokenFrom(o.fixture, "198.51.100.9", "oauth2", o.token(t, 10*time.Minute, nil)); code != http.StatusOK {
		t.Fatalf("a valid OIDC token as the password of oauth2 after guesses at that name: %d, want 200", code)
	}
}

// maxOIDCToken is the longest OIDC token the broker accepts as a credential.
const maxOIDCToken = 8 << 10

// largestOIDCToken is an OIDC token of exactly maxOIDCToken bytes, its
// length made up by a padding claim (and, since base64 cannot end on every
// length, a padding header field).
func (o *oidcFixture) largestOIDCToken(t *testing.T, ttl time.Duration) string {
	t.Helper()
	for pad := 0; pad < 4; pad++ {
		header := map[string]any{"x": strings.Repeat("h", pad)}
		short := o.tokenWithHeader(t, ttl, map[string]any{"pad": ""}, header)
		for n := (maxOIDCToken - len(short)) * 3 / 4; n < maxOIDCToken; n++ {
			tok := o.tokenWithHeader(t, ttl, map[string]any{"pad": strings.Repeat("p", n)}, header)
			if len(tok) == maxOIDCToken {
				return tok
			}
			if len(tok) > maxOIDCToken {
				break
			}
		}
	}
	t.Fatal("no OIDC token of exactly the accepted length")
	return ""
}

// A refresh token the broker issues is one it accepts: the largest OIDC
// token it takes as a credential gets a refresh token, and that refresh
// token gets a new access token, whatever the broker's signing key.
func TestLargestOIDCTokenGetsARefreshTokenTheBrokerAccepts(t *testing.T) {
	for _, typ := range []broker.KeyType{broker.KeyRSA, broker.KeyEC} {
		t.Run(string(typ), func(t *testing.T) {
			o := newOIDCFixture(t, func(opts *broker.Options) {
				dir := filepath.Join(t.TempDir(), "keys")
				genKey(t, dir, "signer", typ, time.Now().Add(-time.Hour))
				keys, err := broker.LoadKeyDir(dir)
				if err != nil {
					t.Fatal(err)
				}
				for _, svc := range opts.Services {
					svc.Keys = keys
				}
			})
			tok := o.largestOIDCToken(t, 10*time.Minute)
			if a := o.get(t, "service=registry.test", "Authorization", "Bearer "+tok+"x"); a.status != 400 {
				t.Fatalf("OIDC token one byte over %d: %d %s, want 400 (the bound this test sits on moved)", maxOIDCToken, a.status, a.raw)
			}
			a := o.get(t, "service=registry.test&offline_token=true&scope=repository:team/app:pull", "Authorization", "Bearer "+tok)
			rt, _ := a.body["refresh_token"].(string)
			if a.status != 200 || rt == "" {
				t.Fatalf("largest OIDC token with offline_token: %d %.300s", a.status, a.raw)
			}
			r := o.post(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "service": {svcName}, "scope": {"repository:team/app:pull"}})
			if r.status != 200 {
				t.Fatalf("refresh token of %d bytes (for an OIDC token of %d): %d %s", len(rt), len(tok), r.status, r.raw)
			}
			t.Logf("OIDC token %d bytes, refresh token %d bytes", len(tok), len(rt))
		})
	}
}

// rawToken signs payload, bytes as given (encoding/json would escape what
// this test needs unescaped), as the issuer's ES256 key.
func (o *oidcFixture) rawToken(t *testing.T, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	signing := enc([]byte(`{"alg":"ES256","kid":"k1"}`)) + "." + enc([]byte(payload))
	sig, err := jwt.SigningMethodES256.Sign(signing, o.key)
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + enc(sig)
}

// Claims that grow when encoded again (invalid UTF-8 becomes U+FFFD, three
// bytes for one) would make a refresh token over the accepted size: the
// broker answers without one and says so in its log, rather than hand out
// a refresh token it will refuse.
func TestRefreshTokenOverTheAcceptedSizeIsNotIssued(t *testing.T) {
	var logs testenv.SyncBuffer
	o := newOIDCFixture(t, func(opts *broker.Options) { opts.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	payload := fmt.Sprintf(`{"iss":%q,"sub":"alice","aud":%q,"exp":%d,"x":"%s"}`,
		o.issuer.URL, svcName, o.now().Add(10*time.Minute).Unix(), strings.Repeat("\xff", 5800))
	tok := o.rawToken(t, payload)
	if len(tok) > maxOIDCToken {
		t.Fatalf("test token of %d bytes is over the accepted %d", len(tok), maxOIDCToken)
	}
	a := o.get(t, "service=registry.test&offline_token=true", "Authorization", "Bearer "+tok)
	if a.status != 200 {
		t.Fatalf("OIDC token with invalid UTF-8 in a claim: %d %.300s", a.status, a.raw)
	}
	if rt, _ := a.body["refresh_token"].(string); rt != "" {
		t.Fatalf("a refresh token of %d bytes was issued; the broker refuses it:\n%v",
			len(rt), o.post(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "service": {svcName}}).raw)
	}
	if all := logs.String(); !strings.Contains(all, "refresh token not issued") || strings.Contains(all, tok) {
		t.Fatalf("the omitted refresh token was not logged (or the credential was):\n%.2000s", all)
	}
}
