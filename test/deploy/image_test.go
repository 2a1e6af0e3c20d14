package deploy

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/test/testenv"
)

// nonroot is the uid and gid the image runs as (distroless's nonroot).
const nonroot = "65532"

// podmanIn runs rootful podman on a storage of its own under dir, so the
// test leaves no image, container or event behind, whatever else uses
// podman on the machine. runc, not crun: crun refuses this machine's hybrid
// cgroups (v1 controllers with a v2 mount).
type podmanIn struct {
	t    *testing.T
	bin  string
	dir  string
	args []string
}

func newPodman(t *testing.T) *podmanIn {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root: the image test runs rootful podman")
	}
	p := &podmanIn{t: t, bin: testenv.Tool(t, "podman"), dir: t.TempDir()}
	testenv.Tool(t, "runc")
	p.args = []string{
		"--root", filepath.Join(p.dir, "root"), "--runroot", filepath.Join(p.dir, "run"),
		"--tmpdir", filepath.Join(p.dir, "tmp"), "--events-backend", "none",
		"--storage-driver", "overlay", "--runtime", "runc",
	}
	return p
}

// command is the podman command line with the private storage, as one
// string for make's PODMAN variable.
func (p *podmanIn) command() string { return p.bin + " " + strings.Join(p.args, " ") }

func (p *podmanIn) run(args ...string) string {
	p.t.Helper()
	out, err := exec.Command(p.bin, append(p.args, args...)...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// rlimits: the container may not raise its limits above the test's, so it
// gets ones below (podman's default, 1048576 open files, is refused).
var rlimits = []string{"--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"}

// TestContainerImage builds the image as `make image` does (FROM scratch,
// nothing pulled), runs it with a configuration made by the documented
// commands and owned as docs/operations.md says, gets a token through a
// published loopback port, and checks that the broker runs as uid 65532 and
// that the image and the binary carry the version git describes.
func TestContainerImage(t *testing.T) {
	p := newPodman(t)
	start := time.Now()
	want := gitVersion(t)
	image := "localhost/tollgate-test:" + fmt.Sprint(time.Now().UnixNano())
	mk := exec.Command("make", "image", "IMAGE="+image, "IMAGEDIR="+filepath.Join(p.dir, "context"), "PODMAN="+p.command())
	mk.Dir = root(t)
	t.Cleanup(func() { exec.Command(p.bin, append(p.args, "rmi", "-f", image)...).Run() })
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	t.Logf("make image: %v", time.Since(start).Round(100*time.Millisecond))

	if got := p.run("image", "inspect", "--format", `{{index .Config.Labels "org.opencontainers.image.version"}}`, image); got != want {
		t.Errorf("label org.opencontainers.image.version = %q, want %q", got, want)
	}
	if got := p.run(append(append([]string{"run", "--rm"}, rlimits...), image, "version")...); !strings.HasPrefix(got, "tollgate "+want+"\n") {
		t.Errorf("tollgate version in the image:\n%s\nwant first line %q", got, "tollgate "+want)
	}

	etc, kid := containerConfig(t, filepath.Join(p.dir, "context", "rootfs", "usr", "local", "bin", "tollgate"))
	port := testenv.FreePort(t)
	name := filepath.Base(p.dir)
	t.Cleanup(func() { exec.Command(p.bin, append(p.args, "rm", "-f", "-t", "0", name)...).Run() })
	// As docs/operations.md runs it: the configuration read-only, state_dir
	// on a named volume (which starts with the image's owner of the
	// directory: serve refuses a state_dir it cannot write).
	p.run(append(append([]string{"run", "-d", "--name", name}, rlimits...),
		"-p", fmt.Sprintf("127.0.0.1:%d:5001", port),
		"-v", etc+":/etc/tollgate:ro", "-v", name+"-state:/var/lib/tollgate", image)...)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := testenv.WaitReady(base, 15*time.Second); err != nil {
		t.Fatalf("the container's broker is not ready: %v\n%s", err, p.run("logs", name))
	}

	if got := tokenKid(t, base+"/token?service=registry.example.com&scope=repository:team/app:pull"); got != kid {
		t.Errorf("the token is signed by kid %q, want the mounted key's %q", got, kid)
	}
	// A scratch image has no id(1): read the broker's credentials from the
	// kernel, by its host pid.
	pid := p.run("inspect", "--format", "{{.State.Pid}}", name)
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"Uid", "Gid"} {
		m := regexp.MustCompile(`(?m)^` + field + `:\s+(.*)$`).FindStringSubmatch(string(status))
		if m == nil || strings.Join(strings.Fields(m[1]), " ") != strings.Repeat(nonroot+" ", 3)+nonroot {
			t.Errorf("the broker's %s (real, effective, saved, filesystem) = %v, want %s everywhere", field, m, nonroot)
		}
	}
	t.Logf("total: %v", time.Since(start).Round(100*time.Millisecond))
}

// gitVersion is the version `make image` stamps, as the Makefile computes it.
func gitVersion(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("git", "describe", "--tags", "--always", "--dirty")
	cmd.Dir = root(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git describe: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// containerConfig makes /etc/tollgate with the commands the README and
// docs/operations.md give, gives it to the image's user, and returns its
// path and the signing key's kid.
func containerConfig(t *testing.T, tollgate string) (dir, kid string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "etc-tollgate")
	run := func(stdin string, args ...string) string {
		cmd := exec.Command(tollgate, args...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("tollgate %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	m := regexp.MustCompile(`kid (\S+),`).FindStringSubmatch(run("", "keygen", "--out", filepath.Join(dir, "keys", "registry")))
	if m == nil {
		t.Fatal("keygen printed no kid")
	}
	run("s3cret-passw0rd\n", "htpasswd", "add", filepath.Join(dir, "htpasswd"), "alice")
	if err := os.CopyFS(filepath.Join(dir, "policy"), os.DirFS(filepath.Join(root(t), "policies", "default"))); err != nil {
		t.Fatal(err)
	}
	config := `listen: ":5001"
state_dir: /var/lib/tollgate
services:
  - name: registry.example.com
    issuer: tollgate.example.com
    realm: https://registry.example.com/token
    keys: /etc/tollgate/keys/registry
identity:
  - {name: local, type: htpasswd, file: /etc/tollgate/htpasswd}
policy:
  source: /etc/tollgate/policy
`
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	// As docs/operations.md says: root keeps the files, the image's group
	// reads them.
	for _, args := range [][]string{{"chgrp", "-R", nonroot, dir}, {"chmod", "-R", "g+rX,g-w,o-rwx", dir}} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", args[0], err, out)
		}
	}
	return dir, m[1]
}

// tokenKid asks for a token as alice and returns the kid its JWT names.
func tokenKid(t *testing.T, url string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.SetBasicAuth("alice", "s3cret-passw0rd")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var tok struct {
		Token string `json:"token"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &tok) != nil {
		t.Fatalf("token: %s\n%s", resp.Status, body)
	}
	header, err := base64.RawURLEncoding.DecodeString(strings.Split(tok.Token, ".")[0])
	if err != nil {
		t.Fatalf("token header: %v", err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(header, &h); err != nil {
		t.Fatalf("token header: %v", err)
	}
	return h.Kid
}
