package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRegistryConfigFormatsStartDistribution3: the auth configuration
// `registry-config` prints in its jwks and env forms starts distribution 3,
// which then accepts the broker's tokens. The JWKS alone is not enough:
// tokens carry x5c, which distribution 3 checks against rootcertbundle, so
// a registry given only the JWKS refuses them (why the jwks form keeps it).
func TestRegistryConfigFormatsStartDistribution3(t *testing.T) {
	f := flavors[1]
	tool(t, f.bin)
	b := startBroker(t)
	dir := t.TempDir()
	bundle, jwks := filepath.Join(dir, "token-ca.pem"), filepath.Join(dir, "token.jwks")
	jwksSection := tollgate(t, "", "registry-config", "--config", b.config, "--service", f.service, "--bundle", bundle, "--format", "jwks", "--jwks", jwks)
	jwksSection = strings.Split(jwksSection, "wrote the certificate bundle")[0]
	envForm := tollgate(t, "", "registry-config", "--config", b.config, "--service", f.service, "--bundle", bundle, "--format", "env")
	var env []string
	for _, l := range strings.Split(envForm, "\n") {
		if strings.HasPrefix(l, "REGISTRY_AUTH_TOKEN_") {
			env = append(env, l)
		}
	}
	var jwksOnly []string
	for _, l := range strings.Split(jwksSection, "\n") {
		if !strings.Contains(l, "rootcertbundle:") {
			jwksOnly = append(jwksOnly, l)
		}
	}
	token := b.getToken(t, f.service, "alice", "repository:team/app:pull")
	for _, tc := range []struct {
		name, auth string
		env        []string
		want       int
	}{
		{"jwks", jwksSection, nil, http.StatusOK},
		{"env", "", env, http.StatusOK},
		{"jwks without the bundle", strings.Join(jwksOnly, "\n"), nil, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := startRegistryAuth(t, f, b, tc.auth, tc.env)
			do(t, http.MethodGet, fmt.Sprintf("http://localhost:%d/v2/", port), token, nil).expect(t, tc.want)
		})
	}
}

// startRegistryAuth starts f with the given auth section (YAML) and
// environment, and waits for its token challenge.
func startRegistryAuth(t *testing.T, f flavor, b *broker, auth string, env []string) int {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	cfg := fmt.Sprintf("version: 0.1\nlog: {level: info, accesslog: {disabled: true}}\nstorage:\n  filesystem: {rootdirectory: %q}\nhttp:\n  addr: \"127.0.0.1:%d\"\n%s",
		filepath.Join(dir, "data"), port, auth)
	cfgFile := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	proc := startProcess(t, f.name, dir, append([]string{"OTEL_TRACES_EXPORTER=none"}, env...), tool(t, f.bin), "serve", cfgFile)
	awaitChallenge(t, proc, fmt.Sprintf("http://localhost:%d/v2/", port), b, f.service)
	return port
}
