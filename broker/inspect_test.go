package broker_test

import (
	"encoding/base64"
	"encoding/pem"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/broker"
)

// forged signs claims with a key of its own (not one the fixture publishes),
// with or without an x5c header.
func forged(t *testing.T, claims jwt.MapClaims, x5c bool) string {
	t.Helper()
	keyPEM, certPEM, err := broker.GenerateKey(broker.KeyEC, "other", time.Now().Add(-time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	k, err := jwt.ParseECPrivateKeyFromPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header["kid"] = "OTHR:KEY0"
	if x5c {
		tok.Header["x5c"] = []string{base64.StdEncoding.EncodeToString(block.Bytes)}
	}
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func findings(in *broker.Inspection, level, check string) []string {
	var out []string
	for _, f := range in.Findings {
		if f.Level == level && f.Check == check {
			out = append(out, f.Message)
		}
	}
	return out
}

func TestInspect(t *testing.T) {
	f := newFixture(t)
	a := f.get(t, "service="+svcName+"&scope=repository:team/app:pull,push", "Authorization", basic("alice", "alice-secret"))
	good, _ := a.body["token"].(string)
	if good == "" {
		t.Fatalf("no token: %s", a.raw)
	}
	resp, err := http.Get(f.ts.URL + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	bundle := f.keys.CertBundle(time.Now())
	opts := broker.InspectOptions{JWKS: jwks, RootCertBundle: bundle, Issuer: "tollgate-test", Service: svcName,
		Need: []string{"repository:team/app:pull,push"}, Now: time.Now()}

	in := broker.Inspect(good, opts)
	if in.Problems() != 0 {
		t.Fatalf("a good token has problems: %+v", in.Findings)
	}
	for _, check := range []string{"algorithm", "audience", "issuer", "expiry", "x5c", "kid", "signature", "access"} {
		if len(findings(in, "ok", check)) == 0 {
			t.Errorf("no ok finding for %s: %+v", check, in.Findings)
		}
	}
	if len(in.Access) != 1 || in.Access[0].Name != "team/app" {
		t.Errorf("access %+v", in.Access)
	}

	base := jwt.MapClaims{"iss": "tollgate-test", "aud": svcName, "exp": time.Now().Add(time.Hour).Unix(),
		"access": []map[string]any{{"type": "repository", "name": "team/app", "actions": []string{"pull"}}}}
	with := func(k string, v any) jwt.MapClaims {
		c := jwt.MapClaims{}
		for key, val := range base {
			c[key] = val
		}
		c[k] = v
		return c
	}
	otherBundle := func() []byte {
		_, certPEM, _ := broker.GenerateKey(broker.KeyEC, "elsewhere", time.Now().Add(-time.Hour), time.Hour)
		return certPEM
	}

	cases := []struct {
		name, token string
		opts        func(o *broker.InspectOptions)
		check, want string
	}{
		{"array aud", forged(t, with("aud", []string{svcName}), true), nil, "audience", "aud is an array: distribution 2.8 rejects it"},
		{"missing x5c", forged(t, base, false), nil, "x5c", "no x5c header"},
		{"unknown key", forged(t, base, true), nil, "kid", `kid "OTHR:KEY0" is not among the 1 published keys`},
		{"expired", good, func(o *broker.InspectOptions) { o.Now = time.Now().Add(2 * time.Hour) }, "expiry", "expired at"},
		{"lacks action", good, func(o *broker.InspectOptions) { o.Need = []string{"repository:team/app:delete"} }, "access", "lacks delete on repository:team/app (it grants pull,push)"},
		{"nothing on repo", good, func(o *broker.InspectOptions) { o.Need = []string{"repository:other/app:pull"} }, "access", "nothing on repository:other/app"},
		{"wrong issuer", good, func(o *broker.InspectOptions) { o.Issuer = "someone-else" }, "issuer", `is not the registry's issuer "someone-else"`},
		{"wrong service", good, func(o *broker.InspectOptions) { o.Service = "other.registry" }, "audience", `is not the registry's service "other.registry"`},
		{"wrong cert bundle", good, func(o *broker.InspectOptions) { o.RootCertBundle = otherBundle() }, "x5c", "does not chain to the registry's rootcertbundle"},
		{"bad alg", forgedHS(t, base), nil, "algorithm", `alg "HS256"`},
		{"garbage", "not-a-token", nil, "format", "not a JWT"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := opts
			if tc.opts != nil {
				tc.opts(&o)
			}
			in := broker.Inspect(tc.token, o)
			got := findings(in, "problem", tc.check)
			if len(got) == 0 || !strings.Contains(strings.Join(got, "\n"), tc.want) {
				t.Fatalf("want a %s problem containing %q, got %+v", tc.check, tc.want, in.Findings)
			}
		})
	}
}

func forgedHS(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
