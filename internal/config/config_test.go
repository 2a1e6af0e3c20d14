package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/probe"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const validConfig = `
services:
  - name: registry.test
    issuer: tollgate-test
    realm: http://localhost:5001/token
    keys: keys
identity:
  - {name: local, type: htpasswd, file: users}
policy:
  source: policy
`

func TestConfigDefaultsAndRelativePaths(t *testing.T) {
	path := writeConfig(t, validConfig)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(path)
	if c.Services[0].Keys != filepath.Join(dir, "keys") || c.Policy.Source != filepath.Join(dir, "policy") {
		t.Fatalf("relative paths not resolved against the file: %+v", c)
	}
	s := c.Services[0]
	if s.TokenTTL != 5*time.Minute || s.MaxTokenTTL != time.Hour || *s.TokenReuse != time.Second || c.Listen != ":5001" ||
		!*c.Anonymous || !*c.RefreshTokens.Enabled || c.Policy.Query != "data.registry.authz" ||
		*c.Policy.DecisionCache.Size != 100000 || c.Policy.DecisionCache.MaxBytes != 64<<20 || *c.CredentialCache.Size != 10000 ||
		c.Policy.MaxBundleBytes != 64<<20 || c.Policy.MaxBundleFiles != 10000 ||
		c.Metrics.BackendChecks() != (probe.Schedule{Interval: 15 * time.Second, Idle: time.Minute}) {
		t.Fatalf("defaults: %+v %+v", c, s)
	}
}

func TestConfigErrorsNameTheirPath(t *testing.T) {
	tests := []struct {
		name, body string
		want       []string
	}{
		{"no services", "policy: {source: p}\n", []string{"services: at least one service is required"}},
		{"missing fields", "services: [{name: a}]\npolicy: {source: p}\n",
			[]string{"services[0].issuer: required", "services[0].realm: required", "services[0].keys: required"}},
		{"bad realm", strings.Replace(validConfig, "http://localhost:5001/token", "localhost/token", 1),
			[]string{"services[0].realm: want an absolute http(s) URL"}},
		{"short ttl", strings.Replace(validConfig, "keys: keys", "keys: keys\n    token_ttl: 30s", 1),
			[]string{"services[0].token_ttl: at least 1m"}},
		{"max below ttl", strings.Replace(validConfig, "keys: keys", "keys: keys\n    token_ttl: 10m\n    max_token_ttl: 5m", 1),
			[]string{"services[0].max_token_ttl: must not be shorter"}},
		{"duplicate service", strings.Replace(validConfig, "services:", "services:\n  - {name: registry.test, issuer: x, realm: 'http://a/token', keys: k}", 1),
			[]string{"services[1].name: duplicate service"}},
		{"two defaults", "services:\n  - {name: a, default: true, issuer: x, realm: 'http://a/t', keys: k}\n  - {name: b, default: true, issuer: x, realm: 'http://a/t', keys: k}\npolicy: {source: p}\n",
			[]string{"services: more than one service has default: true"}},
		{"unknown connector type", strings.Replace(validConfig, "type: htpasswd", "type: kerberos", 1),
			[]string{`identity[0].type: unknown connector type "kerberos"`}},
		{"reserved connector name", strings.Replace(validConfig, "name: local", "name: anonymous", 1),
			[]string{`identity[0].name: duplicate or reserved name "anonymous"`}},
		{"no policy", strings.Replace(validConfig, "  source: policy", "  query: data.x", 1),
			[]string{"policy.source: required"}},
		{"negative cache", validConfig + "credential_cache: {size: -1}\n", []string{"credential_cache.size: must not be negative"}},
		{"negative bundle limits", validConfig + "  max_bundle_bytes: -1\n",
			[]string{`policy.max_bundle_bytes: "-1" is not a size: want bytes, or a number with KiB, MiB or GiB at line 11`}},
		{"negative bundle files", validConfig + "  max_bundle_files: -1\n",
			[]string{"policy.max_bundle_files: must not be negative"}},
		{"trusting every address", validConfig + "trusted_proxies: [0.0.0.0/0]\n", []string{"trusted_proxies: \"0.0.0.0/0\" trusts every address"}},
		{"proxy header", validConfig + "trusted_proxies: [10.0.0.0/8]\nclient_ip_header: X-Client\n", []string{"client_ip_header: header \"X-Client\": want X-Forwarded-For, X-Real-IP or Forwarded"}},
		{"proxy header without proxies", validConfig + "client_ip_header: X-Real-IP\n", []string{"client_ip_header: is read only from trusted_proxies"}},
		{"small decision budget", validConfig + "  decision_cache: {max_bytes: 1KiB}\n",
			[]string{"policy.decision_cache.max_bytes: at least 64KiB"}},
		{"negative decision budget", validConfig + "  decision_cache: {max_bytes: -9007199254740992GiB}\n",
			[]string{`"-9007199254740992GiB" is not a size`}},
		{"decision budget not a size", validConfig + "  decision_cache: {max_bytes: 64MB}\n",
			[]string{`"64MB" is not a size: want bytes, or a number with KiB, MiB or GiB`}},
		{"decision budget overflows", validConfig + "  decision_cache: {max_bytes: 9007199254740992GiB}\n",
			[]string{"is not a size"}},
		{"unsupported scheme", strings.Replace(validConfig, "  source: policy", "  source: ftp://user:s3cret@host/b.tar.gz", 1),
			[]string{"policy.source: ftp://xxxxx@host/b.tar.gz: only http:// and https:// URLs are fetched"}},
		{"opa and policy.source", validConfig + "opa:\n  bundles: {authz: {resource: file:///b.tar.gz}}\n",
			[]string{"policy.source: not with opa: the policy comes from opa.bundles at line 10"}},
		{"opa and policy.signing", strings.Replace(validConfig, "  source: policy\n", "  signing: {public_key: k.pem}\n", 1) + "opa:\n  bundles: {authz: {resource: file:///b.tar.gz}}\n",
			[]string{"policy.signing: not with opa: OPA's keys and bundles.<name>.signing verify its bundles at line 10"}},
		{"opa and policy.bearer_token", strings.Replace(validConfig, "  source: policy\n", "  bearer_token_env: TOKEN\n", 1) + "opa:\n  bundles: {authz: {resource: file:///b.tar.gz}}\n",
			[]string{"policy.bearer_token: not with opa: OPA's services.<name>.credentials authenticate to its servers"}},
		{"opa not a mapping", strings.Replace(validConfig, "policy:\n  source: policy\n", "opa: [bundles]\n", 1),
			[]string{"opa: want OPA's configuration document (services, bundles, keys, ...) at line 9"}},
		{"log level", validConfig + "log: {level: loud}\n", []string{"log.level: want debug, info, warn or error"}},
		{"backend checks too often", validConfig + "metrics: {backend_check_interval: 100ms}\n", []string{"metrics.backend_check_interval: at least 1s"}},
		{"unknown key", validConfig + "listne: ':1'\n", []string{"listne: unknown key (did you mean listen?) at line 11"}},
		{"reuse too long", strings.Replace(validConfig, "keys: keys", "keys: keys\n    token_reuse: 30s", 1),
			[]string{"services[0].token_reuse: between 0s (sign every token) and 10s"}},
		{"bad duration", strings.Replace(validConfig, "keys: keys", "keys: keys\n    token_ttl: soon", 1), []string{"soon"}},
		{"negative session idle", validConfig + "sessions: {idle: -1h}\n", []string{"sessions: max_lifetime and idle must not be negative at line 11"}},
		{"two session keys", validConfig + "sessions: {key: a, key_file: b}\n", []string{"sessions.key: give only one of the value, _env and _file"}},
		{"shared sessions need a key", strings.Replace(validConfig, "  - {name: local, type: htpasswd, file: users}\n",
			"  - {name: sso, type: oidc, issuers: [{issuer: https://idp.example.com, audience: r}], device_login: {client_id: c, client_secret: s}}\n", 1) +
			"redis: {addr: 127.0.0.1:6379}\n", []string{"sessions.key: required with redis and device_login"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, tt.body))
			if err == nil {
				t.Fatal("invalid configuration accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// A connector's keys are decoded when the file is loaded, by the adapter's
// own Config, so serve --check finds a typo in them.
func TestConnectorConfigRefusesUnknownKeysAtLoad(t *testing.T) {
	_, err := Load(writeConfig(t, strings.Replace(validConfig, "file: users", "file: users, passwrd: x", 1)))
	if want := "identity[0].passwrd: unknown key (known: file, groups_file, name, type) at line 8"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

func TestTokenReuseCanBeSwitchedOff(t *testing.T) {
	c, err := Load(writeConfig(t, strings.Replace(validConfig, "keys: keys", "keys: keys\n    token_reuse: 0s", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if *c.Services[0].TokenReuse != 0 {
		t.Fatalf("token_reuse: 0s read as %s", *c.Services[0].TokenReuse)
	}
}

func TestDecisionCacheMaxBytes(t *testing.T) {
	for in, want := range map[string]ByteSize{"67108864": 64 << 20, "512KiB": 512 << 10, "64MiB": 64 << 20, "2 GiB": 2 << 30} {
		c, err := Load(writeConfig(t, validConfig+"  decision_cache: {size: 10, max_bytes: "+in+"}\n"))
		if err != nil {
			t.Fatalf("max_bytes %s: %v", in, err)
		}
		if c.Policy.DecisionCache.MaxBytes != want || *c.Policy.DecisionCache.Size != 10 || c.Policy.DecisionCache.TTL != time.Minute {
			t.Fatalf("max_bytes %s: %+v, want %d bytes", in, c.Policy.DecisionCache, want)
		}
	}
}
