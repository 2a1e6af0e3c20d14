package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDockerAndCtr runs the docker CLI against a dockerd of its own, and
// ctr against that dockerd's containerd (the kubelet's pull path), on both
// registry generations. One daemon serves every subtest: it takes seconds
// to start.
func TestDockerAndCtr(t *testing.T) {
	d := startDockerd(t)
	// The first docker on PATH: Debian's, or a newer client, which
	// negotiates the daemon's API version down by itself.
	t.Logf("docker client/daemon %s", d.client(t).must("docker", "version", "--format", "{{.Client.Version}}/{{.Server.Version}}"))
	e := newEnv(t)
	e.each(t, func(t *testing.T, r *registry) {
		team := r.host() + "/team/docker-app:v1"
		public := r.host() + "/library/docker-app:v1"
		alice, bob := d.client(t), d.client(t)
		var digest string // what alice pushed to team and library

		steps := []struct {
			name string
			fn   func(t *testing.T)
		}{
			{"wrong password stores nothing", func(t *testing.T) {
				c := d.client(t)
				res := c.runStdin("wrong-"+e.b.passwords["alice"]+"\n", "docker", "login", "-u", "alice", "--password-stdin", r.host())
				if res.code != 1 || !strings.Contains(res.out, "unauthorized: invalid user name or password") {
					t.Fatalf("want exit 1 and the broker's unauthorized: invalid user name or password:\n%s", res)
				}
				if auths := dockerAuths(t, c); len(auths) != 0 {
					t.Fatalf("failed docker login stored %v", auths)
				}
			}},
			{"login stores an identity token", func(t *testing.T) {
				c := alice.in(t)
				c.login("docker", r, e.b, "alice")
				expectIdentityToken(t, c, e.b, r, "alice")
			}},
			{"build and push", func(t *testing.T) {
				c := alice.in(t)
				ctx := filepath.Join(c.home, "build")
				writeFiles(t, ctx, map[string]string{
					"Dockerfile":  "FROM scratch\nCOPY payload.txt /payload.txt\n",
					"payload.txt": "docker " + rand.Text() + "\n",
				})
				c.must("docker", "build", "--network=none", "-t", team, ctx)
				out := c.must("docker", "push", team)
				m := regexp.MustCompile(`digest: (sha256:[0-9a-f]{64})`).FindStringSubmatch(out)
				if m == nil {
					t.Fatalf("docker push printed no digest:\n%s", out)
				}
				digest = m[1]
				// alice maintains the public library, where ctr pulls anonymously.
				c.must("docker", "tag", team, public)
				if out := c.must("docker", "push", public); !strings.Contains(out, "digest: "+digest) {
					t.Fatalf("docker push %s: want digest %s:\n%s", public, digest, out)
				}
			}},
			{"pull as a guest", func(t *testing.T) {
				c := bob.in(t)
				// Untagged twice, the image is gone from the daemon: the
				// pull downloads every blob.
				c.must("docker", "rmi", team, public)
				c.login("docker", r, e.b, "bob")
				if out := c.must("docker", "pull", team); !strings.Contains(out, "Digest: "+digest) {
					t.Fatalf("docker pull %s: want Digest: %s:\n%s", team, digest, out)
				}
			}},
			{"push refused to a guest", func(t *testing.T) {
				c := bob.in(t)
				ref := r.host() + "/team/docker-bob:v1"
				c.must("docker", "tag", team, ref)
				c.mustFail(1, regexp.MustCompile(`denied: requested access to the resource is denied`), "docker", "push", ref)
			}},
			{"ctr pulls with a password", func(t *testing.T) {
				c := d.client(t)
				c.must("ctr", "images", "pull", "--plain-http", "--user", "alice:"+e.b.passwords["alice"], team)
				expectCtrImage(t, c, team, digest)
			}},
			{"ctr pulls anonymously from the public project", func(t *testing.T) {
				c := d.client(t)
				c.must("ctr", "images", "pull", "--plain-http", public)
				expectCtrImage(t, c, public, digest)
			}},
			{"ctr refused without a grant", func(t *testing.T) {
				c := d.client(t)
				// A new name: team's image is in containerd since the
				// pull with a password.
				c.must("ctr", "images", "rm", team)
				refused := regexp.MustCompile(`pull access denied.*insufficient_scope`)
				c.mustFail(1, refused, "ctr", "images", "pull", "--plain-http", team)
				c.mustFail(1, refused, "ctr", "images", "pull", "--plain-http", "--user", "carol:"+e.b.passwords["carol"], team)
			}},
		}
		for _, s := range steps {
			if !t.Run(s.name, s.fn) {
				return
			}
		}
	})
}

// dockerAuths is the auths section of the client's Docker config.json.
func dockerAuths(t *testing.T, c *client) map[string]map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(c.home, ".docker", "config.json"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Auths map[string]map[string]string `json:"auths"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatalf("docker config.json: %v\n%s", err, data)
	}
	return cfg.Auths
}

// expectIdentityToken checks what docker login stored for user: the
// broker's refresh token as identitytoken, the user name without its
// password, and the password nowhere in the file.
func expectIdentityToken(t *testing.T, c *client, b *broker, r *registry, user string) {
	t.Helper()
	data, _ := os.ReadFile(filepath.Join(c.home, ".docker", "config.json"))
	entry := dockerAuths(t, c)[r.host()]
	if entry == nil {
		t.Fatalf("docker login stored nothing for %s:\n%s", r.host(), data)
	}
	if strings.Contains(string(data), b.passwords[user]) {
		t.Fatalf("docker config.json holds %s's password:\n%s", user, data)
	}
	auth, err := base64.StdEncoding.DecodeString(entry["auth"])
	if err != nil || string(auth) != user+":" {
		t.Fatalf("docker config.json auth = %q (%v), want %q: the user name, no password", auth, err, user+":")
	}
	status, _, raw := b.postToken(t, url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {entry["identitytoken"]},
		"service": {r.flavor.service}, "client_id": {"e2e"}, "scope": {"repository:team/app:pull"},
	})
	if status != http.StatusOK {
		t.Fatalf("the identitytoken docker login stored is no refresh token of the broker: %d\n%s", status, raw)
	}
}

// expectCtrImage checks that containerd holds ref with the manifest digest.
func expectCtrImage(t *testing.T, c *client, ref, digest string) {
	t.Helper()
	out := c.must("ctr", "images", "ls", "name=="+ref)
	for _, line := range strings.Split(out, "\n") {
		// REF TYPE DIGEST SIZE PLATFORMS LABELS
		if f := strings.Fields(line); len(f) > 2 && f[0] == ref {
			if f[2] != digest {
				t.Fatalf("ctr pulled %s as %s, docker pushed %s", ref, f[2], digest)
			}
			return
		}
	}
	t.Fatalf("ctr images ls: no %s:\n%s", ref, out)
}

// writeFiles writes files (name → content) into dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
