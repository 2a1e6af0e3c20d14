package docs

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/test/testenv"
)

// The password the examples' $PASSWORD holds, set for alice and bob in the
// workspace's htpasswd files.
const password = "docs-example-pw"

// A workspace is the directory each example runs in a copy of: what the
// examples name exists there (policies/, .tollgate/, robots.json, key.pem,
// /etc/tollgate/... mapped to etc/tollgate/...), and two brokers serve: the
// development default of .tollgate and the "production" etc/tollgate/config.yaml.
type workspace struct {
	dir     string
	devAddr string // host:port of the development broker
	vars    []string
}

func newWorkspace(t *testing.T) *workspace {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ws")
	ws := &workspace{dir: dir, devAddr: fmt.Sprintf("localhost:%d", freePort(t))}
	mkdir(t, dir, "bin", "etc/tollgate/keys", "etc/registry", "etc/docker/registry")
	if err := os.Symlink(tollgateBin, filepath.Join(dir, "bin", "tollgate")); err != nil {
		t.Fatal(err)
	}
	ws.sh(t, `git init -q && git -c user.name=docs -c user.email=docs@test commit -q --allow-empty -m docs`)
	ws.sh(t, `cp -R "$ROOT/policies" policies && cp -R policies/default policies/mine && cp -R policies/default policy`)
	testenv.WriteES256KeyPair(t, dir) // key.pem, pub.pem
	ws.sh(t, `tollgate bundle build -o bundle.tar.gz policies/default`)
	ws.sh(t, `echo '{"service": "localhost:5000", "identity": {"subject": "bob", "connector": "local"}, "scopes": [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]}' > request.json`)
	for _, f := range []string{"users.htpasswd", "etc/tollgate/htpasswd"} {
		ws.sh(t, `for u in alice bob; do echo "$PASSWORD" | tollgate htpasswd add --cost 4 `+f+` $u; done`)
	}
	ws.sh(t, `tollgate robot create team-ci --scope 'repository:team/*:pull' --expires 1d --file etc/tollgate/robots.json >/dev/null`)

	ws.startDevBroker(t)
	ws.sh(t, `cp .tollgate/registry.yml registry.yml && tollgate robot create team-ci --scope 'repository:team/*:pull' --expires 1d >/dev/null`)
	pw := ws.sh(t, `awk '$1=="alice"{print $2}' .tollgate/passwords.txt`)
	tok := token(t, "http://"+ws.devAddr, "alice", pw, nil, "service=localhost:5000&scope=repository:team/app:pull,push")
	ws.vars = append(ws.vars, "TOKEN="+tok["token"].(string), "PW_ALICE="+pw,
		"PW_BOB="+ws.sh(t, `awk '$1=="bob"{print $2}' .tollgate/passwords.txt`))

	ws.writeConfigs(t)
	prod := ws.startProdBroker(t)
	refresh := token(t, prod, "", "", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {password},
		"service": {"registry.example.com"}, "client_id": {"docs"}, "access_type": {"offline"}}, "")
	ws.vars = append(ws.vars, "REFRESH_TOKEN="+refresh["refresh_token"].(string))
	ws.recordDecisions(t, prod)
	// A policy directory in OPA v0 syntax, for policy test --v0-compatible.
	ws.sh(t, `cp -R "$ROOT/cmd/tollgate/testdata/opa-parity/v0" legacy`)
	return ws
}

// recordDecisions has the "production" broker decide a few requests and
// puts its decision log where the examples read one: decisions.log and
// /var/log/tollgate/decisions.log.
func (ws *workspace) recordDecisions(t *testing.T, prod string) {
	t.Helper()
	for _, q := range []string{"scope=repository:team/app:pull,push", "scope=repository:alice/app:push", "scope=repository:library/hello:pull"} {
		token(t, prod, "alice", password, nil, "service=registry.example.com&"+q)
	}
	log := filepath.Join(ws.dir, "etc/tollgate/decisions.log")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if data, _ := os.ReadFile(log); strings.Count(string(data), "\n") >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the broker wrote no decision log at %s", log)
		}
	}
	ws.sh(t, `mkdir -p var/log/tollgate && cp etc/tollgate/decisions.log decisions.log && cp etc/tollgate/decisions.log var/log/tollgate/decisions.log`)
}

// env is the environment of a command run in dir, a copy of the workspace.
func (ws *workspace) env(dir string) []string {
	return append([]string{
		"PATH=" + filepath.Join(dir, "bin") + ":" + os.Getenv("PATH"),
		"HOME=" + dir, "ROOT=" + repoRoot(), "PASSWORD=" + password,
		"GIT_CONFIG_NOSYSTEM=1",
	}, ws.vars...)
}

// sh runs a set-up command in the workspace and returns its trimmed output.
func (ws *workspace) sh(t *testing.T, script string) string {
	t.Helper()
	cmd := exec.Command("sh", "-ec", script)
	cmd.Dir, cmd.Env = ws.dir, ws.env(ws.dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("workspace: %s: %v\n%s", script, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (ws *workspace) startDevBroker(t *testing.T) {
	t.Helper()
	start(t, ws.dir, "dev-broker.log", "serve", "--state-dir", ".tollgate", "--listen", strings.Replace(ws.devAddr, "localhost", "127.0.0.1", 1))
	if err := testenv.WaitReady("http://"+ws.devAddr, 30*time.Second); err != nil {
		t.Fatalf("development broker: %v\n%s", err, readFile(filepath.Join(filepath.Dir(ws.dir), "dev-broker.log")))
	}
}

// writeConfigs writes the "production" configuration the examples name as
// /etc/tollgate/config.yaml, its registry's config, and config.yaml (two
// services) for the registry-config examples.
func (ws *workspace) writeConfigs(t *testing.T) {
	t.Helper()
	port := freePort(t)
	ws.sh(t, `tollgate keygen --out etc/tollgate/keys/registry --name a >/dev/null && cp -R policies/default etc/tollgate/policy`)
	write(t, filepath.Join(ws.dir, "etc/tollgate/config.yaml"), fmt.Sprintf(`listen: "127.0.0.1:%d"
state_dir: state
services:
  - {name: registry.example.com, issuer: tollgate.example.com, realm: "http://localhost:%[1]d/token", keys: keys/registry}
refresh_tokens: {enabled: true, ttl: 1h}
identity:
  - {name: local, type: htpasswd, file: htpasswd}
  - {name: robot, type: robot, file: robots.json}
policy: {source: policy, decision_log: {enabled: true, path: decisions.log}}
`, port))
	ws.sh(t, `mkdir -m 0700 etc/tollgate/state && tollgate registry-config --config etc/tollgate/config.yaml --bundle etc/registry/token-ca.pem > auth.yml 2>/dev/null`)
	// rootcertbundle relative to the registry's config, so that it holds in every copy.
	ws.sh(t, `{ printf 'version: 0.1\nhttp: {addr: "localhost:5000"}\n'; sed 's|rootcertbundle: .*|rootcertbundle: "../../registry/token-ca.pem"|' auth.yml; } > etc/docker/registry/config.yml && rm auth.yml`)
	write(t, filepath.Join(ws.dir, "config.yaml"), `services:
  - {name: registry.example.com, default: true, issuer: tollgate.example.com, realm: "https://registry.example.com/token", keys: etc/tollgate/keys/registry}
  - {name: notary.example.com, issuer: tollgate.example.com, realm: "https://notary.example.com/token", keys: etc/tollgate/keys/registry}
identity:
  - {name: local, type: htpasswd, file: users.htpasswd}
policy: {source: policy}
`)
}

// startProdBroker serves etc/tollgate/config.yaml and returns its base URL.
func (ws *workspace) startProdBroker(t *testing.T) string {
	t.Helper()
	start(t, ws.dir, "prod-broker.log", "serve", "--config", "etc/tollgate/config.yaml")
	base := "http://" + ws.sh(t, `sed -n 's/^listen: "\(.*\)"$/\1/p' etc/tollgate/config.yaml`)
	if err := testenv.WaitReady(base, 30*time.Second); err != nil {
		t.Fatalf("broker of etc/tollgate/config.yaml: %v\n%s", err, readFile(filepath.Join(filepath.Dir(ws.dir), "prod-broker.log")))
	}
	return base
}

// start runs the broker in dir until the test ends, its output in a log
// file beside dir (outside the copied workspace).
func start(t *testing.T, dir, log string, args ...string) {
	t.Helper()
	f, err := os.Create(filepath.Join(filepath.Dir(dir), log))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tollgateBin, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		f.Close()
	})
}

func freePort(t *testing.T) int { return testenv.FreePort(t) }

func mkdir(t *testing.T, dir string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if err := os.MkdirAll(filepath.Join(dir, s), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(path string) string {
	data, _ := os.ReadFile(path)
	return string(data)
}
