package e2e

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCranePushesAndPullsAsDeveloper(t *testing.T) {
	needTools(t, "crane")
	e := newEnv(t)
	e.each(t, func(t *testing.T, r *registry) {
		c := newClient(t)
		c.login("crane", r, e.b, "alice")
		ref := r.host() + "/team/crane-app:v1"

		pushed := strings.TrimSpace(c.must("crane", "append", "-f", c.layerTar(), "-t", ref))
		_, digest, ok := strings.Cut(pushed, "@")
		if !ok || !strings.HasPrefix(digest, "sha256:") {
			t.Fatalf("crane append printed %q, want REF@sha256:...", pushed)
		}
		if got := strings.TrimSpace(c.must("crane", "digest", ref)); got != digest {
			t.Fatalf("crane digest %s = %s, crane append pushed %s", ref, got, digest)
		}
		out := filepath.Join(c.home, "pulled")
		c.must("crane", "pull", "--format", "oci", ref, out)
		if got := layoutDigest(t, out); got != digest {
			t.Fatalf("crane pull got manifest %s, pushed %s", got, digest)
		}
	})
}

func TestOrasPushesAndPullsAsDeveloper(t *testing.T) {
	needTools(t, "oras")
	e := newEnv(t)
	e.each(t, func(t *testing.T, r *registry) {
		c := newClient(t)
		c.login("oras", r, e.b, "alice")
		ref := r.host() + "/team/oras-app:v1"
		content := "artifact " + rand.Text() + "\n"
		if err := os.WriteFile(filepath.Join(c.home, "artifact.txt"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}

		var pushed struct {
			Digest string `json:"digest"`
		}
		out := c.must("oras", "push", "--format", "json", ref, "artifact.txt")
		if err := json.Unmarshal([]byte(out), &pushed); err != nil || !strings.HasPrefix(pushed.Digest, "sha256:") {
			t.Fatalf("oras push --format json: no digest (%v):\n%s", err, out)
		}
		if got := strings.TrimSpace(c.must("oras", "resolve", ref)); got != pushed.Digest {
			t.Fatalf("oras resolve %s = %s, oras push pushed %s", ref, got, pushed.Digest)
		}
		dir := filepath.Join(c.home, "pulled")
		c.must("oras", "pull", "-o", dir, ref+"@"+pushed.Digest)
		if got, err := os.ReadFile(filepath.Join(dir, "artifact.txt")); err != nil || string(got) != content {
			t.Fatalf("oras pulled %q (%v), want %q", got, err, content)
		}
	})
}

func TestSkopeoPushesAndPullsAsDeveloper(t *testing.T) {
	needTools(t, "skopeo")
	e := newEnv(t)
	e.each(t, func(t *testing.T, r *registry) {
		c := newClient(t)
		c.login("skopeo", r, e.b, "alice")
		ref := "docker://" + r.host() + "/team/skopeo-app:v1"
		layout := filepath.Join(c.home, "layout")
		digest := ociLayout(t, layout)

		digestFile := filepath.Join(c.home, "pushed-digest")
		c.must("skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false",
			"--digestfile", digestFile, "oci:"+layout, ref)
		if got, _ := os.ReadFile(digestFile); string(got) != digest {
			t.Fatalf("skopeo pushed manifest %q, the layout holds %s (skopeo rewrote it)", got, digest)
		}
		if got := strings.TrimSpace(c.must("skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", ref)); got != digest {
			t.Fatalf("skopeo inspect %s = %s, pushed %s", ref, got, digest)
		}
		out := filepath.Join(c.home, "pulled")
		c.must("skopeo", "--insecure-policy", "copy", "--src-tls-verify=false", ref, "dir:"+out)
		manifest, err := os.ReadFile(filepath.Join(out, "manifest.json"))
		if err != nil {
			t.Fatal(err)
		}
		if got := sha256Digest(manifest); got != digest {
			t.Fatalf("skopeo pulled manifest %s, pushed %s", got, digest)
		}
	})
}
