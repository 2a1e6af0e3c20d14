package config

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// oidcIssuer is an httptest issuer with one ES256 key, for the YAML tests.
func oidcIssuer(t *testing.T) (*httptest.Server, func(claims jwt.MapClaims) string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL, "jwks_uri": srv.URL + "/keys"})
		case "/keys":
			b, _ := key.PublicKey.Bytes()
			enc := base64.RawURLEncoding.EncodeToString
			json.NewEncoder(w).Encode(map[string]any{"keys": []any{map[string]string{
				"kty": "EC", "crv": "P-256", "kid": "k", "x": enc(b[1:33]), "y": enc(b[33:])}}})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, func(claims jwt.MapClaims) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
		tok.Header["kid"] = "k"
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

func TestOIDCConnectorFromYAML(t *testing.T) {
	srv, sign := oidcIssuer(t)
	cfg := strings.Replace(validConfig, "  - {name: local, type: htpasswd, file: users}\n", fmt.Sprintf(`  - name: cluster
    type: oidc
    issuers:
      - issuer: %q
        audience: [registry.test, other]
        algorithms: [ES256]
        subject_claim: sub
        name_claim: kubernetes.io.serviceaccount.name
        groups_claim: kubernetes.io.namespace
        groups_prefix: "k8s:"
        required_claims: {kubernetes.io.namespace: builds, verified: true}
        leeway: 10s
        refresh_ttl: 1h
        timeout: 2s
        jwks_refetch_interval: 1s
        jwks_max_age: 10m
`, srv.URL), 1)
	c, err := Load(writeConfig(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	chain, err := c.BuildChain(ConnectorEnv{Ctx: ctx, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims := jwt.MapClaims{"iss": srv.URL, "aud": "other", "sub": "system:serviceaccount:builds:ci",
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "verified": true,
		"kubernetes.io": map[string]any{"namespace": "builds", "serviceaccount": map[string]any{"name": "ci"}}}
	id, ok, err := chain.VerifyToken(ctx, sign(claims))
	if !ok {
		t.Fatal(err)
	}
	if id.Connector != "cluster" || id.Subject != "system:serviceaccount:builds:ci" || id.Name != "ci" ||
		len(id.Groups) != 1 || id.Groups[0] != "k8s:builds" {
		t.Fatalf("identity %+v", id)
	}
	if want := now.Add(time.Hour); id.Expiry.Before(want.Add(-time.Second)) {
		t.Fatalf("refresh_ttl: expiry %v, want about %v", id.Expiry, want)
	}
	claims["verified"] = false
	if _, ok, _ := chain.VerifyToken(ctx, sign(claims)); ok {
		t.Fatal("required claim verified: true not enforced")
	}
}

func TestOIDCConnectorConfigErrors(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"no issuers":   {"issuers: []", "identity[0].issuers: at least one is required at line 8"},
		"alg none":     {"issuers: [{issuer: https://idp.example.com, audience: r, algorithms: [none]}]", `identity[0].issuers[0].algorithms: "none" is not accepted`},
		"HS256":        {"issuers: [{issuer: https://idp.example.com, audience: r, algorithms: [HS256]}]", `"HS256" is not accepted`},
		"no audience":  {"issuers: [{issuer: https://idp.example.com}]", "identity[0].issuers[0].audience: required"},
		"unknown key":  {"issuers: [{issuer: https://idp.example.com, audience: r, audiance: x}]", "identity[0].issuers[0].audiance: unknown key (did you mean audience?) at line 8"},
		"plain http":   {"issuers: [{issuer: http://idp.example.com, audience: r}]", "https only"},
		"bad ca_file":  {"issuers: [{issuer: https://idp.example.com, audience: r, ca_file: /nonexistent}]", "identity[0].issuers[0].ca_file: open /nonexistent"},
		"long leeway":  {"issuers: [{issuer: https://idp.example.com, audience: r, leeway: 1h}]", "identity[0].issuers[0].leeway: at most"},
		"audience map": {"issuers: [{issuer: https://idp.example.com, audience: {a: b}}]", "identity[0].issuers[0].audience: want a string or a list of strings at line 8"},
		"device login without client": {"issuers: [{issuer: https://idp.example.com, audience: r}], device_login: {client_secret: s}",
			"identity[0].device_login.client_id: required: the broker's client id at the provider at line 8"},
		"device login without secret": {"issuers: [{issuer: https://idp.example.com, audience: r}], device_login: {client_id: c}",
			"identity[0].device_login.client_secret: required"},
		"device login, two secrets": {"issuers: [{issuer: https://idp.example.com, audience: r}], device_login: {client_id: c, client_secret: s, client_secret_env: E}",
			"identity[0].device_login.client_secret: give only one"},
		"device login, other issuer": {"issuers: [{issuer: https://idp.example.com, audience: r}], device_login: {issuer: https://x.example.com, client_id: c, client_secret: s}",
			`identity[0].device_login.issuer: "https://x.example.com" is not one of the connector's issuers`},
		"device login, secret env unset": {"issuers: [{issuer: https://idp.example.com, audience: r}], device_login: {client_id: c, client_secret_env: TOLLGATE_TEST_UNSET}",
			"identity[0].device_login.client_secret: environment variable TOLLGATE_TEST_UNSET is not set"},
		"device login, typo": {"issuers: [{issuer: https://idp.example.com, audience: r}], device_login: {client_id: c, client_secret: s, revalidate: 1m}",
			"identity[0].device_login.revalidate: unknown key"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := strings.Replace(validConfig, "  - {name: local, type: htpasswd, file: users}\n",
				"  - {name: sso, type: oidc, "+tc.yaml+"}\n", 1)
			c, err := Load(writeConfig(t, cfg))
			if err == nil {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				_, err = c.BuildChain(ConnectorEnv{Ctx: ctx})
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
}
