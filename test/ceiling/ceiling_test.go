package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/broker"
)

// TestCeilingSignsTheRequestedScope: for both key types the endpoint answers
// a token signed with the key, carrying the requested scope.
func TestCeilingSignsTheRequestedScope(t *testing.T) {
	for _, c := range []struct {
		typ broker.KeyType
		alg string
	}{{broker.KeyEC, "ES256"}, {broker.KeyRSA, "RS256"}} {
		t.Run(c.alg, func(t *testing.T) {
			keyPEM, _, err := broker.GenerateKey(c.typ, "ceiling", time.Now(), time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "k.key")
			if err := os.WriteFile(file, keyPEM, 0o600); err != nil {
				t.Fatal(err)
			}
			key, method, err := loadKey(file)
			if err != nil || method.Alg() != c.alg {
				t.Fatalf("loadKey: %v %v", method, err)
			}
			ts := httptest.NewServer(&handler{key: key, method: method, issuer: "iss", service: "svc"})
			defer ts.Close()
			resp, err := http.Get(ts.URL + "/token?scope=repository:team/app:pull,push")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Token string `json:"token"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, %v", resp.StatusCode, err)
			}
			var cl claims
			if _, err := jwt.ParseWithClaims(body.Token, &cl, func(*jwt.Token) (any, error) { return key.Public(), nil },
				jwt.WithValidMethods([]string{c.alg}), jwt.WithAudience("svc"), jwt.WithIssuer("iss")); err != nil {
				t.Fatal(err)
			}
			if len(cl.Access) != 1 || cl.Access[0].Name != "team/app" || len(cl.Access[0].Actions) != 2 {
				t.Errorf("access %+v", cl.Access)
			}
		})
	}
}

func TestCeilingRefusesNonLoopbackListen(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "10.0.0.1:0"} {
		if err := run(addr, "", "i", "s", ""); err == nil || !strings.Contains(err.Error(), "-listen") {
			t.Errorf("%s: err %v, want a refusal of -listen", addr, err)
		}
	}
}
