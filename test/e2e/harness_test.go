// Package e2e tests tollgate end to end: a real tollgate binary, real
// registries (Debian's distribution 2.8 and distribution 3.x) started as
// processes on loopback ports, and real clients (crane, oras, skopeo, podman).
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// installHint is what a missing component's message tells the reader to run.
const installHint = "run `make test` (it calls scripts/install-test-deps.sh)"

var (
	tollgateBin string // built once in TestMain
	buildErr    error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tollgate-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tollgateBin = filepath.Join(dir, "tollgate")
	cmd := exec.Command("go", "build", "-o", tollgateBin, "github.com/tollgate/tollgate/cmd/tollgate")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	buildErr = cmd.Run()
	code := m.Run()
	shared.stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// tool finds a test component on PATH or in GOPATH/bin. A missing one fails
// the test under CI=true and skips it otherwise, naming the install command.
func tool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	gopath, _ := exec.Command("go", "env", "GOPATH").Output()
	p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	msg := fmt.Sprintf("%s is not installed: %s", name, installHint)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomPassword() string { return rand.Text()[:20] }

// process is a server started for the tests, with its output in a file.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
}

func start(name, logDir string, env []string, bin string, args ...string) (*process, error) {
	logFile := filepath.Join(logDir, name+".log")
	f, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = cmd.Wait(); f.Close() }()
	return &process{name: name, cmd: cmd, log: logFile}, nil
}

func (p *process) stop() {
	if p != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
	}
}

// tail returns the end of the process's log, for failure messages.
func (p *process) tail() string {
	data, _ := os.ReadFile(p.log)
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return fmt.Sprintf("--- %s log (%s) ---\n%s", p.name, p.log, data)
}

// waitFor polls url until it answers with status want.
func waitFor(u string, want int, p *process) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return nil
			}
		}
		if p.cmd.ProcessState != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer %d in time\n%s", u, want, p.tail())
}

// The users of the test policy (see writePolicy).
var users = []string{"alice", "bob", "carol", "admin", "dave"}

// flavor is one registry generation under test.
type flavor struct {
	name    string // subtest name
	bin     string // binary name
	version string // what `BIN --version` must print, so one generation is never tested twice
	service string // the broker service it trusts
}

var flavors = []flavor{
	{"distribution-2.8", "docker-registry", "github.com/docker/distribution 2.8.", "registry-28.test"},
	{"distribution-3", "registry", "github.com/distribution/distribution/v3 v3.", "registry-3.test"},
}

// broker is a running tollgate with its files.
type broker struct {
	dir       string
	port      int
	htpasswd  string
	passwords map[string]string
	keys      string
	proc      *process
}

// realm is the token URL as clients must see it: a host name, never a
// loopback IP literal (crane and oras refuse those, protocol.md §5).
func (b *broker) realm() string { return fmt.Sprintf("http://localhost:%d/token", b.port) }

func (b *broker) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", b.port, path) }

func runTollgate(stdin string, args ...string) (string, error) {
	cmd := exec.Command(tollgateBin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("tollgate %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// newBroker prepares keys, users, policy and config, and starts tollgate
// serving one service per flavor. keygen lists extra keygen argument sets.
func newBroker(dir string, port int, keygen ...[]string) (*broker, error) {
	if buildErr != nil {
		return nil, fmt.Errorf("building tollgate failed: %w", buildErr)
	}
	b := &broker{dir: dir, port: port, htpasswd: filepath.Join(dir, "htpasswd"), keys: filepath.Join(dir, "keys"), passwords: map[string]string{}}
	if len(keygen) == 0 {
		keygen = [][]string{{"--name", "a", "--not-before", "-1h"}}
	}
	for _, args := range keygen {
		if _, err := runTollgate("", append([]string{"keygen", "--out", b.keys}, args...)...); err != nil {
			return nil, err
		}
	}
	for _, u := range users {
		b.passwords[u] = randomPassword()
		if _, err := runTollgate(b.passwords[u]+"\n", "htpasswd", "add", "--cost", "5", b.htpasswd, u); err != nil {
			return nil, err
		}
	}
	if err := writePolicy(filepath.Join(dir, "policy")); err != nil {
		return nil, err
	}
	var services strings.Builder
	for i, f := range flavors {
		fmt.Fprintf(&services, "  - {name: %s, default: %v, issuer: tollgate-e2e, realm: %q, keys: keys}\n", f.service, i == 0, b.realm())
	}
	cfg := fmt.Sprintf(`listen: "127.0.0.1:%d"
services:
%sidentity:
  - {name: local, type: htpasswd, file: htpasswd}
policy:
  source: policy
log: {level: info, format: json}
`, port, services.String())
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	p, err := start("tollgate", dir, nil, tollgateBin, "serve", "--config", filepath.Join(dir, "config.yaml"))
	if err != nil {
		return nil, err
	}
	b.proc = p
	if err := waitFor(b.url("/readyz"), 200, p); err != nil {
		p.stop()
		return nil, err
	}
	return b, nil
}

// writePolicy copies the shipped default policy (without its tests) and
// writes the data of the test users.
func writePolicy(dir string) error {
	_, file, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(file), "..", "..", "policies", "default", "authz.rego")
	rego, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "authz.rego"), rego, 0o644); err != nil {
		return err
	}
	data := `{"registry": {
  "system_admins": {"users": ["admin"], "groups": []},
  "projects": {
    "team":    {"public": false, "members": {"alice": "developer", "bob": "guest", "dave": "developer"}},
    "library": {"public": true,  "members": {"alice": "maintainer"}},
    "secret":  {"public": false, "members": {}}
  }
}}`
	return os.WriteFile(filepath.Join(dir, "data.json"), []byte(data), 0o644)
}

// registry is a running distribution process trusting a broker service.
type registry struct {
	flavor flavor
	port   int
	proc   *process
}

// host is how clients address the registry: localhost, like the realm.
func (r *registry) host() string { return fmt.Sprintf("localhost:%d", r.port) }

func (r *registry) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", r.port, path) }

func startRegistry(f flavor, bin, dir string, port int, b *broker, bundle string) (*registry, error) {
	cfg := fmt.Sprintf(`version: 0.1
log: {level: info}
storage:
  filesystem: {rootdirectory: %q}
  delete: {enabled: true}
http:
  addr: "127.0.0.1:%d"
auth:
  token:
    realm: %q
    service: %q
    issuer: tollgate-e2e
    rootcertbundle: %q
`, filepath.Join(dir, "data"), port, b.realm(), f.service, bundle)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cfgFile := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	// OTEL_TRACES_EXPORTER=none: distribution 3 would otherwise try to export traces.
	p, err := start(f.name, dir, []string{"OTEL_TRACES_EXPORTER=none"}, bin, "serve", cfgFile)
	if err != nil {
		return nil, err
	}
	r := &registry{flavor: f, port: port, proc: p}
	if err := waitFor(r.url("/v2/"), 401, p); err != nil {
		p.stop()
		return nil, err
	}
	return r, nil
}

// env is the shared set-up: one broker, one registry per flavor.
type env struct {
	b    *broker
	regs map[string]*registry
}

// sharedEnv is started by the first test that needs it and stopped by TestMain.
type sharedEnv struct {
	once sync.Once
	env  *env
	err  error
	dir  string
}

var shared sharedEnv

func (s *sharedEnv) stop() {
	if s.env != nil {
		for _, r := range s.env.regs {
			r.proc.stop()
		}
		s.env.b.proc.stop()
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

// setup returns the shared environment, starting it on first use.
func setup(t *testing.T) *env {
	t.Helper()
	bins := map[string]string{}
	for _, f := range flavors {
		bins[f.name] = tool(t, f.bin)
		out, err := exec.Command(bins[f.name], "--version").CombinedOutput()
		if err != nil || !strings.Contains(string(out), f.version) {
			t.Fatalf("%s --version = %q (%v), want %s", bins[f.name], out, err, f.version)
		}
	}
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "tollgate-e2e-")
		if err != nil {
			shared.err = err
			return
		}
		shared.dir = dir
		b, err := newBroker(filepath.Join(dir, "broker"), freePort(t))
		if err != nil {
			shared.err = err
			return
		}
		e := &env{b: b, regs: map[string]*registry{}}
		shared.env = e
		bundle := filepath.Join(dir, "bundle.pem")
		if _, err := runTollgate("", "registry-config", "--config", filepath.Join(b.dir, "config.yaml"), "--bundle", bundle); err != nil {
			shared.err = err
			return
		}
		for _, f := range flavors {
			r, err := startRegistry(f, bins[f.name], filepath.Join(dir, f.name), freePort(t), b, bundle)
			if err != nil {
				shared.err = err
				return
			}
			e.regs[f.name] = r
		}
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.env
}

// forEachRegistry runs fn as a subtest against each registry flavor.
func forEachRegistry(t *testing.T, fn func(t *testing.T, e *env, r *registry)) {
	e := setup(t)
	for _, f := range flavors {
		t.Run(f.name, func(t *testing.T) {
			r := e.regs[f.name]
			fn(t, e, r)
			if t.Failed() {
				t.Log(r.proc.tail())
				t.Log(e.b.proc.tail())
			}
		})
	}
}

// client runs registry clients with an isolated home, so no credentials
// leak between users or from the machine.
type client struct {
	t    *testing.T
	home string
}

func newClient(t *testing.T) *client {
	home := t.TempDir()
	return &client{t: t, home: home}
}

func (c *client) env() []string {
	return []string{
		"HOME=" + c.home,
		"DOCKER_CONFIG=" + filepath.Join(c.home, ".docker"),
		"REGISTRY_AUTH_FILE=" + filepath.Join(c.home, "auth.json"),
		"XDG_RUNTIME_DIR=" + c.home,
		"XDG_CONFIG_HOME=" + filepath.Join(c.home, ".config"),
		"XDG_DATA_HOME=" + filepath.Join(c.home, ".local"),
	}
}

// run runs a client; it returns the combined output and the error.
func (c *client) run(name string, args ...string) (string, error) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool(c.t, name), args...)
	cmd.Env = append(os.Environ(), c.env()...)
	cmd.Dir = c.home
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// must runs a client that must succeed.
func (c *client) must(name string, args ...string) string {
	c.t.Helper()
	out, err := c.run(name, args...)
	if err != nil {
		c.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// mustFail runs a client that must fail, and says why in its output.
func (c *client) mustFail(why string, name string, args ...string) string {
	c.t.Helper()
	out, err := c.run(name, args...)
	if err == nil {
		c.t.Fatalf("%s %s succeeded, want it refused (%s)\n%s", name, strings.Join(args, " "), why, out)
	}
	return out
}

// layer writes a small random tarball to push as an image layer.
func (c *client) layer() string {
	c.t.Helper()
	dir := filepath.Join(c.home, "layer")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "payload"), []byte(rand.Text()), 0o644)
	tarball := filepath.Join(c.home, "layer.tar")
	if out, err := exec.Command("tar", "-cf", tarball, "-C", dir, "payload").CombinedOutput(); err != nil {
		c.t.Fatalf("tar: %v %s", err, out)
	}
	return tarball
}

// token asks the broker for a token over HTTP, as a client would.
func (b *broker) token(t *testing.T, service, user string, scopes ...string) string {
	t.Helper()
	q := url.Values{"service": {service}}
	for _, s := range scopes {
		q.Add("scope", s)
	}
	req, _ := http.NewRequest(http.MethodGet, b.url("/token?"+q.Encode()), nil)
	if user != "" {
		req.SetBasicAuth(user, b.passwords[user])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Token string `json:"token"`
	}
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || json.Unmarshal(raw, &body) != nil || body.Token == "" {
		t.Fatalf("token for %s %v: %d %s", user, scopes, resp.StatusCode, raw)
	}
	return body.Token
}

// registryCall makes one raw registry request with a bearer token.
func registryCall(t *testing.T, method, u, token string, body []byte, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}
