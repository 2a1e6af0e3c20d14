package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/identity"
)

// deviceIssuer is an httptest provider with discovery, a JWKS of rsaKey1
// and a token endpoint the test answers.
func deviceIssuer(t *testing.T, token http.HandlerFunc) (*httptest.Server, *deviceClient, *clock) {
	t.Helper()
	var srv *httptest.Server
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL, "jwks_uri": srv.URL + "/jwks",
			"token_endpoint": srv.URL + "/token", "device_authorization_endpoint": srv.URL + "/device"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{publicJWK("rsa1", rsaKey1.Public())}})
	})
	mux.HandleFunc("/token", token)
	srv = httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c := newClock()
	v := newVerifier(t, c, IssuerConfig{Issuer: srv.URL, Audiences: []string{"registry"}, Algorithms: []string{"RS256"}})
	dc := newDeviceClient(&DeviceLoginConfig{ClientID: "broker"}, v.issuers[srv.URL], "CLIENT-SECRET")
	return srv, dc, c
}

// A token endpoint that redirects must not make the broker send its client
// secret and the user's refresh token to wherever the redirect points: a
// 307 or 308 makes net/http send the form body again.
func TestDeviceTokenEndpointRedirectDoesNotCarryTheSecret(t *testing.T) {
	var leaked atomic.Value
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		leaked.Store(string(body))
		http.Error(w, "no", http.StatusBadRequest)
	}))
	defer elsewhere.Close()
	for _, code := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		leaked.Store("")
		_, dc, _ := deviceIssuer(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, elsewhere.URL+"/steal", code)
		})
		_, err := dc.RefreshDevice(context.Background(), "USER-REFRESH-TOKEN")
		if body := leaked.Load().(string); strings.Contains(body, "CLIENT-SECRET") || strings.Contains(body, "USER-REFRESH-TOKEN") {
			t.Errorf("%d: the redirect target received %q", code, body)
		}
		if !errors.Is(err, identity.ErrUnavailable) {
			t.Errorf("%d: err = %v, want ErrUnavailable", code, err)
		}
	}
}

// ID tokens the broker is handed at its token endpoint are checked as
// strictly as bearer tokens: another audience, another issuer, alg none,
// expired or without exp, or signed by a stranger give no identity.
func TestDeviceIDTokensAreCheckedStrictly(t *testing.T) {
	var idToken atomic.Value
	srv, dc, c := deviceIssuer(t, func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"id_token": idToken.Load().(string), "refresh_token": "rt-2"})
	})
	now := c.now()
	good := func() jwt.MapClaims {
		return jwt.MapClaims{"iss": srv.URL, "sub": "alice", "aud": "broker", "iat": now.Unix(), "exp": now.Add(5 * 60e9).Unix()}
	}
	with := func(k string, v any) jwt.MapClaims {
		m := good()
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, good()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	idToken.Store(sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, good()))
	if login, err := dc.RefreshDevice(context.Background(), "rt-1"); err != nil || login.Identity.Subject != "alice" || login.RefreshToken != "rt-2" {
		t.Fatalf("a good ID token: %+v, %v", login, err)
	}
	for name, tok := range map[string]string{
		"bearer audience": sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, with("aud", "registry")),
		"other issuer":    sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, with("iss", "https://evil.test")),
		"expired":         sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, with("exp", now.Add(-10*60e9).Unix())),
		"no exp":          sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, with("exp", nil)),
		"stranger's key":  sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey2, good()),
		"alg none":        none,
		"not a JWT":       "garbage",
	} {
		idToken.Store(tok)
		if login, err := dc.RefreshDevice(context.Background(), "rt-1"); err == nil {
			t.Errorf("%s: accepted as %+v", name, login.Identity)
		}
	}
}
