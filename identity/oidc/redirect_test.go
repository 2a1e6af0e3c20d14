package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/identity"
)

// An issuer served over https whose JWKS answer is a redirect to plain
// http (here a loopback server, which a configured jwks_uri may name) must
// not hand the verifier keys fetched over the downgraded hop: whoever sits
// on the path could serve their own keys.
func TestKeysAreNeverFetchedThroughARedirectToPlainHTTP(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{publicJWK("rsa1", rsaKey1.Public())}})
	}))
	t.Cleanup(plain.Close)
	var tlsSrv *httptest.Server
	tlsSrv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			json.NewEncoder(w).Encode(map[string]string{"issuer": tlsSrv.URL, "jwks_uri": tlsSrv.URL + "/jwks"})
		case "/jwks":
			http.Redirect(w, r, plain.URL+"/jwks", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(tlsSrv.Close)

	c := newClock()
	ic := IssuerConfig{Issuer: tlsSrv.URL, Audiences: []string{"registry"}, Algorithms: []string{"RS256"}, HTTPClient: tlsSrv.Client()}
	v := newVerifier(t, c, ic)
	tok := sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, jwt.MapClaims{
		"iss": tlsSrv.URL, "sub": "alice", "aud": "registry",
		"iat": c.now().Unix(), "exp": c.now().Add(5 * 60e9).Unix(),
	})
	_, ok, err := v.Verify(context.Background(), tok)
	if ok || !errors.Is(err, identity.ErrUnavailable) || !strings.Contains(err.Error(), "redirect") {
		t.Fatalf("Verify through an https→http redirect = %v, %v; want unavailable, naming the redirect", ok, err)
	}
}
