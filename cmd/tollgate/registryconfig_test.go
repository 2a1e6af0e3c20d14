package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/internal/config"
)

func TestRealmWarning(t *testing.T) {
	if realmWarning("http://127.0.0.1:5001/token") == "" || realmWarning("http://10.1.2.3/token") == "" {
		t.Error("no warning for a private IP literal realm")
	}
	if w := realmWarning("https://registry.example.com/token"); w != "" {
		t.Errorf("warning for a public name: %s", w)
	}
	if w := realmWarning("http://localhost:5001/token"); w != "" {
		t.Errorf("warning for localhost: %s", w)
	}
}

// TestRegistryConfigFormats: yaml as before, env as REGISTRY_AUTH_TOKEN_*
// variables, jwks with the key set written where auth.token.jwks says.
func TestRegistryConfigFormats(t *testing.T) {
	path := checkDir(t, fullConfig)
	dir := filepath.Dir(path)
	bundle, jwksFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "token.jwks")
	section := `auth:
  token:
    realm: "http://localhost:5001/token"
    service: "registry.test"
    issuer: "tollgate-test"
    rootcertbundle: "` + bundle + `"
`
	for _, tc := range []struct{ format, want string }{
		{"yaml", section},
		{"jwks", section + `    jwks: "` + jwksFile + `"` + "\n"},
		{"env", "REGISTRY_AUTH_TOKEN_REALM=http://localhost:5001/token\nREGISTRY_AUTH_TOKEN_SERVICE=registry.test\n" +
			"REGISTRY_AUTH_TOKEN_ISSUER=tollgate-test\nREGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE=" + bundle + "\n"},
	} {
		args := []string{"registry-config", "--config", path, "--bundle", bundle, "--format", tc.format}
		if tc.format == "jwks" {
			args = append(args, "--jwks", jwksFile)
		}
		out, err := run(t, "", args...)
		if err != nil || !strings.HasPrefix(out, tc.want+"wrote the certificate bundle (1 keys)") {
			t.Errorf("--format %s: %v\n%s\nwant it to start with\n%s", tc.format, err, out, tc.want)
		}
	}

	// The JWKS holds the service's published key, by the kid tokens carry.
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	services, err := cfg.LoadServices()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(jwksFile)
	if err != nil {
		t.Fatal(err)
	}
	var set struct{ Keys []broker.JWK }
	if err := json.Unmarshal(raw, &set); err != nil || len(set.Keys) != 1 || set.Keys[0].Kid != services[0].Keys.Keys()[0].ID || set.Keys[0].Kty != "EC" {
		t.Fatalf("jwks file (%v):\n%s", err, raw)
	}

	for _, bad := range [][]string{
		{"--format", "toml"},
		{"--format", "jwks"},                    // where to write it?
		{"--format", "env", "--jwks", jwksFile}, // --jwks would be ignored
	} {
		if out, err := run(t, "", append([]string{"registry-config", "--config", path, "--bundle", bundle}, bad...)...); err == nil {
			t.Errorf("%v accepted:\n%s", bad, out)
		}
	}
}
