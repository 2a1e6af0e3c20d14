package e2e

import (
	"cmp"
	"crypto/rand"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// flavor is one registry generation under test.
type flavor struct {
	name    string // subtest name
	bin     string // program name
	version string // what `BIN --version` prints, so one generation is never tested twice
	service string // the broker service it trusts (its tokens' audience)
}

var flavors = []flavor{
	{"distribution-2.8", "docker-registry", "github.com/docker/distribution 2.8.", "registry-28.test"},
	{"distribution-3", "registry", "github.com/distribution/distribution/v3 v3.", "registry-3.test"},
}

// issuer is the `iss` of every service of the test broker.
const issuer = "tollgate-e2e"

// The users of the test policy: alice is a developer in team (and a
// maintainer of the public library), bob a guest in team, carol has no
// role, admin is a system administrator.
var users = []string{"alice", "bob", "carol", "admin"}

// testPolicyData is the data.json written beside the shipped default policy.
// secret is a private project nobody but the system admin may read.
const testPolicyData = `{"registry": {
  "system_admins": {"users": ["admin"], "groups": []},
  "projects": {
    "team":    {"public": false, "members": {"alice": "developer", "bob": "guest"}, "groups": {}},
    "library": {"public": true,  "members": {"alice": "maintainer"}, "groups": {}},
    "secret":  {"public": false, "members": {}, "groups": {}}
  }
}}
`

// broker is a running tollgate with its files.
type broker struct {
	dir       string
	port      int
	config    string
	htpasswd  string
	keys      string
	passwords map[string]string
	proc      *process
}

// realm is the token URL as clients must see it: a host name, never a
// loopback IP literal, which crane and oras refuse (protocol.md §5).
func (b *broker) realm() string { return fmt.Sprintf("http://localhost:%d/token", b.port) }

func (b *broker) url(path string) string { return fmt.Sprintf("http://localhost:%d%s", b.port, path) }

// settledLog returns the broker's log with the lines of every request
// answered so far: it asks once more, with a request id of its own, and
// waits for that request's line (lines are written in order, shortly after
// their response; internal/logwrite). For checks that something is absent.
func (b *broker) settledLog(t testing.TB) string {
	t.Helper()
	id := "settle-" + rand.Text()
	req, err := http.NewRequest(http.MethodGet, b.url("/token"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Request-ID", id)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return b.proc.logWith(t, `"request_id":"`+id+`"`)
}

// tollgate runs a tollgate subcommand that must succeed.
func tollgate(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(tollgateBin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tollgate %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// tollgateErr runs a tollgate subcommand that may fail.
func tollgateErr(t testing.TB, args ...string) (string, error) {
	t.Helper()
	needTollgate(t)
	out, err := exec.Command(tollgateBin, args...).CombinedOutput()
	return string(out), err
}

// keygenArgs is one `tollgate keygen` call: a key name and when it starts signing.
type keygenArgs struct {
	name      string
	notBefore time.Time
}

// startBroker writes keys, users, the policy and a config serving one
// service per registry flavor, starts `tollgate serve` and waits for /readyz.
// Without keys it makes one key that has been signing for an hour.
func startBroker(t testing.TB, keys ...keygenArgs) *broker {
	t.Helper()
	return startBrokerWith(t, brokerOptions{keys: keys})
}

// brokerOptions vary a test broker: more identity connectors after the
// htpasswd one, extra top-level configuration, other policy data.
type brokerOptions struct {
	keys       []keygenArgs
	identity   string // YAML list items, indented by two spaces
	extra      string // top-level YAML
	policyData string // data.json; testPolicyData when empty
	// decisionTTL sets policy.decision_cache.ttl (default: the broker's).
	decisionTTL string
	// env is added to the broker process's environment (secrets by _env).
	env []string
	// policySource replaces the policy directory (a bundle file or URL);
	// policy adds YAML lines under policy:, indented by two spaces.
	policySource, policy string
	// opa is an opa: section (OPA's configuration document, top-level
	// YAML); it replaces policy.source.
	opa string
	// startsUnready: wait for /healthz only (no policy loaded yet).
	startsUnready bool
	// moreUsers are added to the htpasswd file after users.
	moreUsers []string
	// policyFiles are written into the policy directory beside the default
	// policy, by file name.
	policyFiles map[string]string
	// logLevel is log.level (default debug).
	logLevel string
}

func startBrokerWith(t testing.TB, o brokerOptions) *broker {
	t.Helper()
	needTollgate(t)
	keys := o.keys
	dir := filepath.Join(t.TempDir(), "broker")
	b := &broker{
		dir: dir, port: freePort(t),
		config:    filepath.Join(dir, "config.yaml"),
		htpasswd:  filepath.Join(dir, "htpasswd"),
		keys:      filepath.Join(dir, "keys"),
		passwords: map[string]string{},
	}
	if len(keys) == 0 {
		keys = []keygenArgs{{"a", time.Now().Add(-time.Hour)}}
	}
	for _, k := range keys {
		tollgate(t, "", "keygen", "--out", b.keys, "--name", k.name, "--not-before", k.notBefore.UTC().Format(time.RFC3339))
	}
	for _, u := range append(users[:len(users):len(users)], o.moreUsers...) {
		b.passwords[u] = rand.Text()
		tollgate(t, b.passwords[u]+"\n", "htpasswd", "add", "--cost", "4", b.htpasswd, u)
	}
	if o.policyData == "" {
		o.policyData = testPolicyData
	}
	writePolicy(t, filepath.Join(dir, "policy"), o.policyData)
	for name, text := range o.policyFiles {
		if err := os.WriteFile(filepath.Join(dir, "policy", name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	source := fmt.Sprintf("  source: %q\n", filepath.Join(dir, "policy"))
	switch {
	case o.opa != "":
		source = ""
		o.extra += o.opa
	case o.policySource != "":
		source = fmt.Sprintf("  source: %q\n", o.policySource)
	}
	decisionCache := o.policy
	if o.decisionTTL != "" {
		decisionCache += "  decision_cache: {size: 1000, ttl: " + o.decisionTTL + "}\n"
	}
	var services strings.Builder
	for i, f := range flavors {
		fmt.Fprintf(&services, "  - {name: %s, default: %v, issuer: %s, realm: %q, token_ttl: 5m, max_token_ttl: 1h, keys: %q}\n",
			f.service, i == 0, issuer, b.realm(), b.keys)
	}
	cfg := fmt.Sprintf(`listen: "127.0.0.1:%d"
state_dir: %q
services:
%srefresh_tokens: {enabled: true, ttl: 1h}
anonymous: true
identity:
  - {name: local, type: htpasswd, file: %q}
%spolicy:
%s  query: data.registry.authz
%slog: {level: %s, format: json}
%s`, b.port, filepath.Join(dir, "state"), services.String(), b.htpasswd, o.identity, source, decisionCache, cmp.Or(o.logLevel, "debug"), o.extra)
	if err := os.WriteFile(b.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	b.proc = startProcess(t, "tollgate", dir, o.env, tollgateBin, "serve", "--config", b.config)
	probe := "/readyz"
	if o.startsUnready {
		probe = "/healthz"
	}
	waitFor200(t, b.proc, b.url(probe))
	return b
}

// writePolicy copies the shipped default policy (its .rego files, not its
// tests) and writes the test users' data.
func writePolicy(t testing.TB, dir, data string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(file), "..", "..", "policies", "default")
	files, err := filepath.Glob(filepath.Join(src, "*.rego"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no .rego files in %s (%v)", src, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.rego") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "data.json"), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// registry is a running distribution process trusting one broker service.
type registry struct {
	flavor flavor
	port   int
	config string // its config.yml
	proc   *process
}

// host is how clients address the registry: localhost, like the realm.
func (r *registry) host() string { return fmt.Sprintf("localhost:%d", r.port) }

func (r *registry) url(path string) string { return fmt.Sprintf("http://localhost:%d%s", r.port, path) }

// startRegistry starts one registry generation with filesystem storage,
// deletes enabled and token auth against b, and waits for its challenge.
func startRegistry(t testing.TB, f flavor, b *broker) *registry {
	t.Helper()
	bin := tool(t, f.bin)
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), f.version) {
		t.Fatalf("%s --version = %q (%v), want %s...", bin, out, err, f.version)
	}
	dir := filepath.Join(t.TempDir(), f.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "token-bundle.pem")
	tollgate(t, "", "registry-config", "--config", b.config, "--service", f.service, "--bundle", bundle)

	r := &registry{flavor: f, port: freePort(t)}
	cfg := fmt.Sprintf(`version: 0.1
log: {level: info, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: %q}
  delete: {enabled: true}
http:
  addr: "127.0.0.1:%d"
auth:
  token:
    realm: %q
    service: %q
    issuer: %q
    rootcertbundle: %q
`, filepath.Join(dir, "data"), r.port, b.realm(), f.service, issuer, bundle)
	cfgFile := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r.config = cfgFile
	// distribution 3 would otherwise try to export traces to a collector.
	r.proc = startProcess(t, f.name, dir, []string{"OTEL_TRACES_EXPORTER=none"}, bin, "serve", cfgFile)

	awaitChallenge(t, r.proc, r.url("/v2/"), b, f.service)
	return r
}

// awaitChallenge waits until the registry proc answers GET v2 with 401 and
// b's Bearer challenge for service: then it trusts b and is ready.
func awaitChallenge(t testing.TB, proc *process, v2 string, b *broker, service string) {
	t.Helper()
	want := fmt.Sprintf(`Bearer realm=%q,service=%q`, b.realm(), service)
	waitUntil(t, proc, "401 Bearer challenge on /v2/", func() error {
		resp, err := http.Get(v2)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if got := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || got != want {
			return fmt.Errorf("GET /v2/: %s, WWW-Authenticate %q, want 401 with %q", resp.Status, got, want)
		}
		return nil
	})
}

// env is one test's broker and a registry of each generation trusting it.
type env struct {
	b    *broker
	regs []*registry // in the order of flavors
}

// newEnv starts a broker (with the given signing keys) and both registries;
// all are stopped when the test ends.
func newEnv(t *testing.T, keys ...keygenArgs) *env {
	t.Helper()
	return newEnvWith(t, brokerOptions{keys: keys})
}

// newEnvWith is newEnv with a broker started with o.
func newEnvWith(t *testing.T, o brokerOptions) *env {
	t.Helper()
	for _, f := range flavors {
		tool(t, f.bin) // skip or fail before starting anything
	}
	e := &env{b: startBrokerWith(t, o)}
	for _, f := range flavors {
		e.regs = append(e.regs, startRegistry(t, f, e.b))
	}
	return e
}

// each runs fn as a subtest against each registry generation, one after
// the other: on two cores parallel registries only add flakiness.
func (e *env) each(t *testing.T, fn func(t *testing.T, r *registry)) {
	t.Helper()
	for _, r := range e.regs {
		t.Run(r.flavor.name, func(t *testing.T) { fn(t, r) })
	}
}
