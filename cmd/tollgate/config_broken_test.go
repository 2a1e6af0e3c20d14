package main

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/test/testenv"
)

// fullConfig uses every section and every connector type; it passes
// `serve --check` (TestFullConfigPassesCheck), so each broken variant below
// fails for the one reason it names.
const fullConfig = `listen: "127.0.0.1:0"
state_dir: state
services:
  - name: registry.test
    default: true
    issuer: tollgate-test
    realm: http://localhost:5001/token
    token_ttl: 5m
    max_token_ttl: 1h
    keys: keys
refresh_tokens:
  enabled: true
  ttl: 720h
identity:
  - name: local
    type: htpasswd
    file: users
  - name: corp
    type: ldap
    url: ldap://ldap.example.com
    bind_dn: cn=reader,dc=example,dc=org
    bind_password_env: TOLLGATE_TEST_BIND
    user_base: ou=people,dc=example,dc=org
    user_filter: "(uid={user})"
    pool_size: 4
    groups:
      from: memberOf
      name_attribute: cn
  - name: ci
    type: oidc
    issuers:
      - issuer: https://idp.invalid
        audience: registry.test
        required_claims: {repository_owner: my-org}
  - name: robot
    type: robot
    file: robots.json
policy:
  source: policy
  query: data.registry.authz
  polling:
    min_delay: 2s
    max_delay: 30s
  decision_cache:
    size: 1000
    ttl: 60s
    max_bytes: 64MiB
  decision_log: {enabled: true, path: decisions.log}
throttle:
  enabled: true
  window: 1m
  max_failures_per_user: 10
credential_cache:
  size: 100
  ttl: 60s
metrics:
  enabled: true
log:
  level: info
  format: json
`

// checkDir writes body as config.yaml beside the files fullConfig names
// (users, a signing key, a policy) and returns its path.
func checkDir(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "users"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	keyPEM, certPEM, err := broker.GenerateKey(broker.KeyEC, "test", time.Now().Add(-time.Minute), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := broker.WriteKeyPair(filepath.Join(dir, "keys"), "a", keyPEM, certPEM); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "policy"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "policy", "authz.rego"), []byte(testPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TOLLGATE_TEST_BIND", "reader-secret")
	return path
}

// TestFullConfigPassesCheck: and the check leaves no decision log behind.
func TestFullConfigPassesCheck(t *testing.T) {
	path := checkDir(t, fullConfig)
	if out, err := run(t, "", "serve", "--config", path, "--check"); err != nil || !strings.Contains(out, "configuration valid: 1 service(s), 4 connector(s)") {
		t.Fatalf("serve --check: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(path), "decisions.log")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("serve --check left a decision log behind: %v", err)
	}
}

// testPolicy grants nothing; it compiles.
const testPolicy = "package registry.authz\n\nallowed contains x if { x := input.scopes[_]; false }\n"

// TestBrokenConfigsNamePathAndLine breaks fullConfig one way at a time.
// The line marked "# <" is the one the error must name: the key itself, or
// for a missing key the mapping that should hold it.
func TestBrokenConfigsNamePathAndLine(t *testing.T) {
	tests := []struct {
		name, old, new, want string
	}{
		// typos, in every section and in each connector type
		{"top-level typo", `listen: "127.0.0.1:0"`, `listne: "127.0.0.1:0" # <`, "listne: unknown key (did you mean listen?)"},
		{"service typo", "    token_ttl: 5m", "    tokne_ttl: 5m # <", "services[0].tokne_ttl: unknown key (did you mean token_ttl?)"},
		{"refresh_tokens typo", "  enabled: true\n  ttl: 720h", "  enabeld: true # <\n  ttl: 720h", "refresh_tokens.enabeld: unknown key (did you mean enabled?)"},
		{"htpasswd typo", "    file: users", "    flie: users # <", "identity[0].flie: unknown key (did you mean file?)"},
		{"ldap typo", "    user_base: ou=people", "    usr_base: ou=people # <\n    user_base: ou=people", "identity[1].usr_base: unknown key (did you mean user_base?)"},
		{"ldap groups typo", "      from: memberOf", "      form: memberOf # <", "identity[1].groups.form: unknown key (did you mean from?)"},
		{"oidc typo", "        audience: registry.test", "        audiance: registry.test # <", "identity[2].issuers[0].audiance: unknown key (did you mean audience?)"},
		{"robot typo", "    file: robots.json", "    fiel: robots.json # <", "identity[3].fiel: unknown key (did you mean file?)"},
		{"camel-case key", "    bind_dn: cn=reader,dc=example,dc=org", "    bindDN: cn=reader,dc=example,dc=org # <", "identity[1].bindDN: unknown key (did you mean bind_dn?)"},
		{"policy typo", "  source: policy", "  sorce: policy # <", "policy.sorce: unknown key (did you mean source?)"},
		{"polling typo", "    min_delay: 2s", "    min_dealy: 2s # <", "policy.polling.min_dealy: unknown key (did you mean min_delay?)"},
		{"decision cache typo", "    size: 1000", "    sise: 1000 # <", "policy.decision_cache.sise: unknown key (did you mean size?)"},
		{"throttle typo", "  window: 1m", "  windwo: 1m # <", "throttle.windwo: unknown key (did you mean window?)"},
		{"credential cache typo", "  ttl: 60s\nmetrics", "  tll: 60s # <\nmetrics", "credential_cache.tll: unknown key (did you mean ttl?)"},
		{"metrics typo", "  enabled: true\nlog:", "  enable: true # <\nlog:", "metrics.enable: unknown key (did you mean enabled?)"},
		{"log typo", "  level: info", "  levle: info # <", "log.levle: unknown key (did you mean level?)"},
		{"unknown section", "log:\n", "logging: {} # <\nlog:\n", "logging: unknown key (known: anonymous, client_ip_header,"},

		// bad durations and values of the wrong kind
		{"service duration", "    token_ttl: 5m", "    token_ttl: soon # <", `services[0].token_ttl: want a duration such as 90s, 5m or 1h, got "soon"`},
		{"ldap duration", "    pool_size: 4", "    dial_timeout: fast # <", `identity[1].dial_timeout: want a duration such as 90s, 5m or 1h, got "fast"`},
		{"cache duration", "    ttl: 60s\n    max_bytes", "    ttl: 1 minute # <\n    max_bytes", `policy.decision_cache.ttl: want a duration such as 90s, 5m or 1h, got "1 minute"`},
		{"list for a string", "    issuer: tollgate-test", "    issuer: [a, b] # <", "services[0].issuer: want a string, got a list"},
		{"mapping for a list", "log:\n", "trusted_proxies: {a: b} # <\nlog:\n", "trusted_proxies: want a list, got a mapping"},
		{"not a boolean", "  enabled: true\n  window", "  enabled: sometimes # <\n  window", `throttle.enabled: want true or false, got "sometimes"`},

		// negative sizes
		{"negative cache size", "credential_cache:\n  size: 100", "credential_cache:\n  size: -1 # <", "credential_cache.size: must not be negative"},
		{"negative byte size", "    max_bytes: 64MiB", "    max_bytes: -1 # <", `policy.decision_cache.max_bytes: "-1" is not a size`},
		{"negative pool", "    pool_size: 4", "    pool_size: -2 # <", "identity[1].pool_size: must not be negative"},
		{"negative throttle", "throttle:\n", "throttle: # <\n  max_failures_per_address: -1\n", "throttle: window, limits and known_address_ttl must not be negative"},
		{"negative bundle files", "  query: data.registry.authz", "  query: data.registry.authz\n  max_bundle_files: -1 # <", "policy.max_bundle_files: must not be negative"},
		{"small decision budget", "    max_bytes: 64MiB", "    max_bytes: 1KiB # <", "policy.decision_cache.max_bytes: at least 64KiB"},

		// conflicting options
		{"two secret forms", "    bind_password_env: TOLLGATE_TEST_BIND", "    bind_password_env: TOLLGATE_TEST_BIND\n    bind_password: inline # <", "identity[1].bind_password: give only one of the value, _env and _file"},
		{"start_tls on ldaps", "    url: ldap://ldap.example.com", "    url: ldaps://ldap.example.com\n    start_tls: true # <", "identity[1].start_tls: not with ldaps://"},
		{"client cert without key", "    pool_size: 4", "    client_cert_file: client.crt # <", "identity[1].client_cert_file: needs client_key_file"},
		{"max below ttl", "    max_token_ttl: 1h", "    max_token_ttl: 1m # <", "services[0].max_token_ttl: must not be shorter than token_ttl"},
		{"two defaults", "services:\n", "services: # <\n  - {name: b, default: true, issuer: x, realm: 'http://a/t', keys: k}\n", "services: more than one service has default: true"},
		{"bearer token to a directory", "  query: data.registry.authz", "  query: data.registry.authz\n  bearer_token: x # <", "policy.bearer_token: only sent to an https:// source"},
		{"header without proxies", "log:\n", "client_ip_header: X-Real-IP # <\nlog:\n", "client_ip_header: is read only from trusted_proxies"},
		{"robot named otherwise", "  - name: robot", "  - name: bots # <", `identity[3].name: the robot connector, and only it, is named "robot"`},
		{"search groups without base", "    groups:\n      from: memberOf", "    groups: # <\n      from: search\n      filter: (member={dn})", "identity[1].groups.base: required with from: search"},
		{"alg none", "        audience: registry.test", "        audience: registry.test\n        algorithms: [none] # <", `identity[2].issuers[0].algorithms: "none" is not accepted`},

		// missing required keys, and unknown values
		{"missing issuer", "  - name: registry.test\n    default: true\n    issuer: tollgate-test\n", "  - name: registry.test # <\n    default: true\n", "services[0].issuer: required"},
		{"missing user_base", "  - name: corp\n    type: ldap\n    url: ldap://ldap.example.com\n    bind_dn: cn=reader,dc=example,dc=org\n    bind_password_env: TOLLGATE_TEST_BIND\n    user_base: ou=people,dc=example,dc=org\n",
			"  - name: corp # <\n    type: ldap\n    url: ldap://ldap.example.com\n    bind_dn: cn=reader,dc=example,dc=org\n    bind_password_env: TOLLGATE_TEST_BIND\n", "identity[1].user_base: required"},
		{"missing audience", "      - issuer: https://idp.invalid\n        audience: registry.test\n", "      - issuer: https://idp.invalid # <\n", "identity[2].issuers[0].audience: required"},
		{"missing type", "  - name: local\n    type: htpasswd\n", "  - name: local # <\n", "identity[0].type: required: one of htpasswd, ldap, oidc, robot"},
		{"unknown type", "    type: htpasswd", "    type: kerberos # <", `identity[0].type: unknown connector type "kerberos" (known: htpasswd, ldap, oidc, robot)`},
		{"bad realm", "    realm: http://localhost:5001/token", "    realm: localhost/token # <", "services[0].realm: want an absolute http(s) URL"},
		{"log format", "  format: json", "  format: xml # <", "log.format: want json or text"},
		{"signing without key", "  query: data.registry.authz", "  query: data.registry.authz\n  signing: {algorithm: RS256} # <", "policy.signing.public_key: required"},

		// found only by opening the connectors, as serve does
		{"missing htpasswd file", "    file: users", "    file: missing-users # <", "identity[0].file: htpasswd: open "},
		{"unset password variable", "    bind_password_env: TOLLGATE_TEST_BIND", "    bind_password_env: TOLLGATE_TEST_UNSET_VARIABLE # <", "identity[1].bind_password_env: environment variable TOLLGATE_TEST_UNSET_VARIABLE is not set"},
		{"missing password file", "    bind_password_env: TOLLGATE_TEST_BIND", "    bind_password_file: no-such-file # <", "identity[1].bind_password_file: open "},
		{"missing CA file", "        audience: registry.test", "        audience: registry.test\n        ca_file: /nonexistent/ca.pem # <", "identity[2].issuers[0].ca_file: open /nonexistent/ca.pem"},

		// found only by building the rest of the broker, as serve does
		{"missing key directory", "    keys: keys", "    keys: no-such-keys # <", "services[0].keys: key directory "},
		{"unreadable key", "    keys: keys", "    keys: badkeys # <", "services[0].keys: read "},
		{"no valid key", "    keys: keys", "    keys: laterkeys # <", "services[0].keys: no key valid for signing now"},
		{"bundle file that is not a bundle", "  source: policy", "  source: policy.tar.gz # <", "policy.source: policy source "},
		{"unsigned bundle where signing is required", "  source: policy", "  source: policy # <\n  signing: {public_key: pub.pem, algorithm: ES256}", "bundle missing .signatures.json"},
		{"tampered signed bundle", "  source: policy", "  source: signed # <\n  signing: {public_key: pub.pem, algorithm: ES256}", "authz.rego: digest mismatch"},
		{"policy that does not compile", "  source: policy", "  source: badpolicy # <", "rego_type_error: undefined function undefined_function"},
		{"unwritable decision log", "path: decisions.log}", "path: users/decisions.log} # <", "policy.decision_log.path: open "},
		{"unwritable state_dir", "state_dir: state", "state_dir: users/state # <", "users/state is not writable: not a directory"},
		{"missing TLS key", "log:\n", "tls: {cert_file: users, key_file: missing.key} # <\nlog:\n", "tls: open "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := strings.Replace(fullConfig, tt.old, tt.new, 1)
			if body == fullConfig {
				t.Fatalf("%q is not in fullConfig", tt.old)
			}
			line := markedLine(body)
			if line == 0 {
				t.Fatal("no line is marked # <")
			}
			path := checkDir(t, body)
			if setup := brokenFiles[tt.name]; setup != nil {
				setup(t, filepath.Dir(path))
			}
			out, err := run(t, "", "serve", "--config", path, "--check")
			if err == nil {
				t.Fatalf("serve --check accepted it:\n%s", out)
			}
			if serr := serveBriefly(t, path); serr == nil || serr.Error() != err.Error() {
				t.Fatalf("serve and serve --check disagree:\nserve:   %v\n--check: %v", serr, err)
			}
			msg := err.Error()
			i := slices.IndexFunc(strings.Split(msg, "\n"), func(l string) bool { return strings.Contains(l, tt.want) })
			if i < 0 {
				t.Fatalf("error does not say %q:\n%s", tt.want, msg)
			}
			if at := " at line " + strconv.Itoa(line); !strings.HasSuffix(strings.Split(msg, "\n")[i], at) {
				t.Fatalf("error does not end with %q:\n%s", at, msg)
			}
			if strings.Contains(msg, "main.") || strings.Contains(msg, "time.Duration") || strings.Contains(msg, "!!") {
				t.Fatalf("error names a Go type:\n%s", msg)
			}
		})
	}
	if len(tests) < 30 {
		t.Fatalf("only %d broken configurations", len(tests))
	}
}

// A policy URL is fetched by --check (serve would start without it, deny
// every request and keep trying), unless --offline.
func TestCheckFetchesAPolicyURLUnlessOffline(t *testing.T) {
	path := checkDir(t, strings.Replace(fullConfig, "  source: policy", "  source: http://127.0.0.1:1/bundle.tar.gz", 1))
	if out, err := run(t, "", "serve", "--config", path, "--check"); err == nil || !strings.Contains(err.Error(), "policy.source: ") {
		t.Fatalf("serve --check with an unreachable policy URL: %v\n%s", err, out)
	}
	if out, err := run(t, "", "serve", "--config", path, "--check", "--offline"); err != nil {
		t.Fatalf("serve --check --offline: %v\n%s", err, out)
	}
}

// markedLine is the 1-based number of the line holding "# <", or 0.
func markedLine(body string) int {
	for i, l := range strings.Split(body, "\n") {
		if strings.HasSuffix(l, "# <") {
			return i + 1
		}
	}
	return 0
}

// brokenFiles makes the files a case needs beside config.yaml.
var brokenFiles = map[string]func(t *testing.T, dir string){
	"unreadable key":                            unreadableKey,
	"no valid key":                              futureKey,
	"bundle file that is not a bundle":          notABundle,
	"unsigned bundle where signing is required": bundleKey,
	"tampered signed bundle":                    tamperedBundle,
	"policy that does not compile":              badPolicy,
}

// serveBriefly runs `serve --config path` in-process for at most a few
// seconds: nil when it started and served until then.
func serveBriefly(t *testing.T, path string) error {
	t.Helper()
	app := newApp()
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	app.ExitErrHandler = func(*cli.Context, error) {}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return app.RunContext(ctx, flagsFirst(app, []string{"tollgate", "serve", "--config", path}))
}

// unreadableKey makes badkeys/a.key something no one can read as a file.
func unreadableKey(t *testing.T, dir string) {
	writeKey(t, filepath.Join(dir, "badkeys"), time.Now())
	os.Remove(filepath.Join(dir, "badkeys", "a.key"))
	if err := os.Mkdir(filepath.Join(dir, "badkeys", "a.key"), 0o700); err != nil {
		t.Fatal(err)
	}
}

// futureKey writes laterkeys with a key valid only from tomorrow.
func futureKey(t *testing.T, dir string) {
	writeKey(t, filepath.Join(dir, "laterkeys"), time.Now().Add(24*time.Hour))
}

func writeKey(t *testing.T, dir string, notBefore time.Time) {
	t.Helper()
	keyPEM, certPEM, err := broker.GenerateKey(broker.KeyEC, "test", notBefore, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := broker.WriteKeyPair(dir, "a", keyPEM, certPEM); err != nil {
		t.Fatal(err)
	}
}

func notABundle(t *testing.T, dir string) {
	if err := os.WriteFile(filepath.Join(dir, "policy.tar.gz"), []byte("not a gzip stream"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// bundleKey writes the key pair bundles are signed with (key.pem) and
// verified against (pub.pem).
func bundleKey(t *testing.T, dir string) {
	key, pub := testenv.WriteES256KeyPair(t, t.TempDir())
	for from, to := range map[string]string{key: "key.pem", pub: "pub.pem"} {
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, to), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// tamperedBundle signs the policy, unpacks it into signed/ and changes a
// file its signature covers.
func tamperedBundle(t *testing.T, dir string) {
	bundleKey(t, dir)
	tarball := filepath.Join(dir, "signed.tar.gz")
	if out, err := run(t, "", "bundle", "build", "-o", tarball, "--signing-key", filepath.Join(dir, "key.pem"), "--signing-alg", "ES256", filepath.Join(dir, "policy")); err != nil {
		t.Fatalf("bundle build: %v\n%s", err, out)
	}
	os.Mkdir(filepath.Join(dir, "signed"), 0o755)
	if out, err := exec.Command("tar", "-xzf", tarball, "-C", filepath.Join(dir, "signed")).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	f, err := os.OpenFile(filepath.Join(dir, "signed", "authz.rego"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("\nallowed contains x if { x := input.scopes[_] }\n"); err != nil {
		t.Fatal(err)
	}
}

func badPolicy(t *testing.T, dir string) {
	os.Mkdir(filepath.Join(dir, "badpolicy"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "badpolicy", "authz.rego"), []byte("package registry.authz\n\nallowed contains x if { x := undefined_function(1) }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}
