package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// client runs registry clients with an isolated home, so no credentials or
// caches leak between users, between tests, or from the machine.
type client struct {
	t    *testing.T
	home string
	// extra is added to the environment after (so over) the isolated
	// home's variables: the daemon a docker or ctr client talks to, or a
	// variable a test empties.
	extra []string
}

func newClient(t *testing.T) *client {
	t.Helper()
	c := &client{t: t, home: t.TempDir()}
	// An empty registries.conf: no search registries, mirrors or blocks
	// from the machine's /etc/containers.
	if err := os.WriteFile(filepath.Join(c.home, "registries.conf"), []byte("unqualified-search-registries = []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *client) env() []string {
	return append([]string{
		"HOME=" + c.home,
		"DOCKER_CONFIG=" + filepath.Join(c.home, ".docker"),
		"REGISTRY_AUTH_FILE=" + filepath.Join(c.home, "auth.json"),
		"CONTAINERS_REGISTRIES_CONF=" + filepath.Join(c.home, "registries.conf"),
		"XDG_RUNTIME_DIR=" + filepath.Join(c.home, "run"),
		"XDG_CONFIG_HOME=" + filepath.Join(c.home, ".config"),
		"XDG_DATA_HOME=" + filepath.Join(c.home, ".local", "share"),
		"XDG_CACHE_HOME=" + filepath.Join(c.home, ".cache"),
		"NO_COLOR=1",
		// Programs a test installs for the client (a credential helper).
		"PATH=" + filepath.Join(c.home, "bin") + ":" + os.Getenv("PATH"),
	}, c.extra...)
}

// result is one client run: what it printed and how it exited.
type result struct {
	cmd  string
	out  string
	code int // exit status; -1 when it did not start or was killed
	err  error
}

func (r result) String() string {
	return fmt.Sprintf("$ %s\nexit %d (%v)\n%s", r.cmd, r.code, r.err, r.out)
}

// run runs a client with its insecure-transport flag for plain HTTP on
// localhost added, and returns its combined output and exit status.
func (c *client) run(name string, args ...string) result {
	c.t.Helper()
	return c.runStdin("", name, args...)
}

// runStdin is run with stdin, for passwords that stay off the command line.
func (c *client) runStdin(stdin, name string, args ...string) result {
	c.t.Helper()
	switch name {
	case "crane":
		args = append(args, "--insecure")
	case "oras":
		args = append(args, "--plain-http")
	}
	bin := tool(c.t, name)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), c.env()...)
	cmd.Dir = c.home
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	res := result{cmd: name + " " + strings.Join(args, " "), out: string(out), code: -1, err: err}
	var exit *exec.ExitError
	switch {
	case err == nil:
		res.code = 0
	case errors.As(err, &exit) && ctx.Err() == nil:
		res.code = exit.ExitCode()
	}
	return res
}

// must runs a client that must exit 0 and returns its output.
func (c *client) must(name string, args ...string) string {
	c.t.Helper()
	res := c.run(name, args...)
	if res.code != 0 {
		c.t.Fatalf("want exit 0:\n%s", res)
	}
	return res.out
}

// mustFail runs a client that must exit with status code, its output
// matching reason (the registry's or broker's answer, such as
// UNAUTHORIZED), so that a crash or a network error does not pass for a
// refusal.
func (c *client) mustFail(code int, reason *regexp.Regexp, name string, args ...string) string {
	c.t.Helper()
	res := c.run(name, args...)
	if res.code != code || !reason.MatchString(res.out) {
		c.t.Fatalf("want exit %d and output matching %q:\n%s", code, reason, res)
	}
	return res.out
}

// in returns the client bound to a subtest, so its failures end that
// subtest and not its parent.
func (c *client) in(t *testing.T) *client { return &client{t: t, home: c.home, extra: c.extra} }

// login stores a user's password in the client's home with name's own
// login command (crane auth login, oras login, skopeo/podman login).
func (c *client) login(name string, r *registry, b *broker, user string) {
	c.t.Helper()
	args := []string{"login", r.host(), "-u", user, "--password-stdin"}
	switch name {
	case "crane":
		args = append([]string{"auth"}, args...)
	case "skopeo", "podman":
		args = append(args, "--tls-verify=false")
	}
	if res := c.runStdin(b.passwords[user]+"\n", name, args...); res.code != 0 {
		c.t.Fatalf("want exit 0:\n%s", res)
	}
}

// layerTar writes a one-file tarball with random content and returns its path.
func (c *client) layerTar() string {
	c.t.Helper()
	f, err := os.CreateTemp(c.home, "layer-*.tar")
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(randomTar(c.t)); err != nil {
		c.t.Fatal(err)
	}
	return f.Name()
}

func randomTar(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	content := []byte("e2e " + rand.Text() + "\n")
	if err := tw.WriteHeader(&tar.Header{Name: "payload.txt", Mode: 0o644, Size: int64(len(content)), ModTime: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	tw.Write(content)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sha256Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ociLayout writes an OCI image layout holding one random single-layer
// image (gzip layer, so no client recompresses it) and returns the
// manifest's digest.
func ociLayout(t testing.TB, dir string) string {
	t.Helper()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(randomTar(t))
	zw.Close()
	layer := gz.Bytes()
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256Digest(config), "size": len(config)},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256Digest(layer), "size": len(layer)}},
	})
	index, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"manifests":     []any{map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256Digest(manifest), "size": len(manifest)}},
	})
	files := map[string][]byte{
		"oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`),
		"index.json": index,
	}
	for _, blob := range [][]byte{layer, config, manifest} {
		files[filepath.Join("blobs", "sha256", strings.TrimPrefix(sha256Digest(blob), "sha256:"))] = blob
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return sha256Digest(manifest)
}

// layoutDigest reads the digest of the only manifest in an OCI layout.
func layoutDigest(t testing.TB, dir string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var index struct {
		Manifests []struct {
			Digest string `json:"digest"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(data, &index); err != nil || len(index.Manifests) != 1 {
		t.Fatalf("%s/index.json: want one manifest (%v):\n%s", dir, err, data)
	}
	return index.Manifests[0].Digest
}
