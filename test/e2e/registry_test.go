package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// login stores a user's credentials for crane in the client's home.
func (c *client) craneLogin(r *registry, b *broker, user string) {
	c.t.Helper()
	c.must("crane", "auth", "login", r.host(), "-u", user, "-p", b.passwords[user])
}

func TestCraneOrasSkopeoPushAndPullAsDeveloper(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, e *env, r *registry) {
		c := newClient(t)
		pw := e.b.passwords["alice"]

		// crane: push a one-layer image, read its digest back, pull it.
		c.craneLogin(r, e.b, "alice")
		ref := r.host() + "/team/crane-app:v1"
		pushed := strings.TrimSpace(c.must("crane", "append", "-f", c.layer(), "-t", ref))
		digest := strings.TrimSpace(c.must("crane", "digest", ref))
		if !strings.HasSuffix(pushed, "@"+digest) {
			t.Fatalf("crane pushed %q, registry says digest %q", pushed, digest)
		}
		c.must("crane", "pull", ref, filepath.Join(c.home, "pulled.tar"))

		// oras: push a file artifact with explicit credentials, pull it back.
		artifact := filepath.Join(c.home, "artifact.txt")
		content := "artifact " + randomPassword()
		os.WriteFile(artifact, []byte(content), 0o644)
		oref := r.host() + "/team/oras-app:v1"
		c.must("oras", "push", "--plain-http", "-u", "alice", "-p", pw, oref, "artifact.txt")
		out := filepath.Join(c.home, "oras-out")
		c.must("oras", "pull", "--plain-http", "-u", "alice", "-p", pw, "-o", out, oref)
		if got, _ := os.ReadFile(filepath.Join(out, "artifact.txt")); string(got) != content {
			t.Fatalf("oras pulled %q, want %q", got, content)
		}

		// skopeo: copy the crane image to a new repository (pull + push),
		// then copy it out to a directory (pull) and check the digest.
		creds := "alice:" + pw
		sref := "docker://" + r.host() + "/team/skopeo-app:v1"
		c.must("skopeo", "copy", "--insecure-policy", "--src-tls-verify=false", "--dest-tls-verify=false",
			"--src-creds", creds, "--dest-creds", creds, "docker://"+ref, sref)
		inspect := c.must("skopeo", "inspect", "--tls-verify=false", "--creds", creds, "--format", "{{.Digest}}", sref)
		if strings.TrimSpace(inspect) != digest {
			t.Fatalf("skopeo copy changed the digest: %q, want %q", strings.TrimSpace(inspect), digest)
		}
		c.must("skopeo", "copy", "--insecure-policy", "--src-tls-verify=false", "--src-creds", creds, sref, "dir:"+filepath.Join(c.home, "skopeo-out"))
	})
}

func TestRegistryEnforcesThePolicy(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, e *env, r *registry) {
		alice, bob, carol, admin, anon := newClient(t), newClient(t), newClient(t), newClient(t), newClient(t)
		alice.craneLogin(r, e.b, "alice")
		bob.craneLogin(r, e.b, "bob")
		carol.craneLogin(r, e.b, "carol")
		admin.craneLogin(r, e.b, "admin")

		team := r.host() + "/team/app:v1"
		pub := r.host() + "/library/hello:v1"
		alice.must("crane", "append", "-f", alice.layer(), "-t", team)
		alice.must("crane", "append", "-f", alice.layer(), "-t", pub) // maintainer of library

		// bob is guest in team: pulls, cannot push.
		bob.must("crane", "manifest", team)
		out := bob.mustFail("guest cannot push", "crane", "append", "-f", bob.layer(), "-t", r.host()+"/team/app:bob")
		assertDenied(t, out)

		// carol has no role: neither pull nor push.
		assertDenied(t, carol.mustFail("no role, no pull", "crane", "manifest", team))
		assertDenied(t, carol.mustFail("no role, no push", "crane", "append", "-f", carol.layer(), "-t", r.host()+"/team/app:carol"))

		// anonymous: public project yes, private no, never push.
		anon.must("crane", "manifest", pub)
		assertDenied(t, anon.mustFail("private project", "crane", "manifest", team))
		assertDenied(t, anon.mustFail("anonymous push", "crane", "append", "-f", anon.layer(), "-t", r.host()+"/library/hello:anon"))

		// catalog: system admins only.
		catalog := admin.must("crane", "catalog", r.host())
		if !strings.Contains(catalog, "team/app") || !strings.Contains(catalog, "library/hello") {
			t.Fatalf("admin's catalog lacks repositories:\n%s", catalog)
		}
		assertDenied(t, alice.mustFail("catalog is for system admins", "crane", "catalog", r.host()))

		// delete: alice (developer) cannot, the system admin can.
		digest := strings.TrimSpace(alice.must("crane", "digest", team))
		byDigest := r.host() + "/team/app@" + digest
		assertDenied(t, alice.mustFail("developers cannot delete", "crane", "delete", byDigest))
		admin.must("crane", "delete", byDigest)
		alice.mustFail("deleted manifest is gone", "crane", "manifest", byDigest)
	})
}

// assertDenied checks that a client failed on authorization, not on
// something else (a crash, a network error).
func assertDenied(t *testing.T, out string) {
	t.Helper()
	for _, s := range []string{"UNAUTHORIZED", "DENIED", "unauthorized", "denied", "authentication required", "401", "403"} {
		if strings.Contains(out, s) {
			return
		}
	}
	t.Fatalf("client failed, but not with an authorization error:\n%s", out)
}

func TestBlobMountNeedsPullOnTheSource(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, e *env, r *registry) {
		// A blob in library/base (readable by alice) and one in secret/x
		// (readable only by the system admin).
		blob := []byte("mount me " + randomPassword())
		digest := uploadBlob(t, r, e.b.token(t, r.flavor.service, "alice", "repository:library/base:pull,push"), "library/base", blob)
		secretBlob := []byte("secret " + randomPassword())
		secretDigest := uploadBlob(t, r, e.b.token(t, r.flavor.service, "admin", "repository:secret/x:pull,push"), "secret/x", secretBlob)

		// With pull on the source and push on the target: mounted (201).
		tok := e.b.token(t, r.flavor.service, "alice", "repository:team/mounted:pull,push", "repository:library/base:pull")
		resp := registryCall(t, "POST", r.url("/v2/team/mounted/blobs/uploads/?mount="+url.QueryEscape(digest)+"&from=library/base"), tok, nil)
		if resp.StatusCode != 201 {
			t.Fatalf("mount with pull on the source: status %d, want 201", resp.StatusCode)
		}

		// alice asks for pull on secret/x too, but the policy does not
		// grant it, so the token lacks it and the registry refuses the mount.
		tok = e.b.token(t, r.flavor.service, "alice", "repository:team/mounted2:pull,push", "repository:secret/x:pull")
		resp = registryCall(t, "POST", r.url("/v2/team/mounted2/blobs/uploads/?mount="+url.QueryEscape(secretDigest)+"&from=secret/x"), tok, nil)
		if resp.StatusCode != 401 {
			t.Fatalf("mount without pull on the source: status %d, want 401", resp.StatusCode)
		}
		if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, "insufficient_scope") {
			t.Fatalf("challenge %q, want insufficient_scope", got)
		}
	})
}

// uploadBlob pushes a blob with a monolithic POST + PUT upload and returns its digest.
func uploadBlob(t *testing.T, r *registry, token, repo string, blob []byte) string {
	t.Helper()
	sum := sha256.Sum256(blob)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	resp := registryCall(t, "POST", r.url("/v2/"+repo+"/blobs/uploads/"), token, nil)
	if resp.StatusCode != 202 {
		t.Fatalf("start upload to %s: status %d", repo, resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	q := loc.Query()
	q.Set("digest", digest)
	loc.RawQuery = q.Encode()
	target := r.url(loc.Path) + "?" + loc.RawQuery
	resp = registryCall(t, "PUT", target, token, blob, "Content-Type", "application/octet-stream")
	if resp.StatusCode != 201 {
		t.Fatalf("finish upload to %s: status %d", repo, resp.StatusCode)
	}
	return digest
}

func TestPodmanLoginChecksThePassword(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, e *env, r *registry) {
		c := newClient(t)
		authfile := filepath.Join(c.home, "auth.json")
		out := c.must("podman", "login", "--tls-verify=false", "--authfile", authfile, "-u", "alice", "-p", e.b.passwords["alice"], r.host())
		if !strings.Contains(out, "Login Succeeded") {
			t.Fatalf("podman login: %s", out)
		}
		out = c.mustFail("wrong password", "podman", "login", "--tls-verify=false", "--authfile", authfile, "-u", "alice", "-p", "wrong-"+randomPassword(), r.host())
		if !strings.Contains(out, "invalid username/password") && !strings.Contains(strings.ToLower(out), "unauthorized") {
			t.Fatalf("podman login with a wrong password failed for another reason:\n%s", out)
		}
	})
}

func TestTokenForOneServiceIsRefusedByAnother(t *testing.T) {
	e := setup(t)
	r28 := e.regs[flavors[0].name]
	tok := e.b.token(t, flavors[1].service, "alice", "repository:team/app:pull")
	if resp := registryCall(t, "GET", r28.url("/v2/"), tok, nil); resp.StatusCode != 401 {
		t.Fatalf("a token for %s was accepted by the %s registry: %d", flavors[1].service, r28.flavor.name, resp.StatusCode)
	}
	if resp := registryCall(t, "GET", r28.url("/v2/"), e.b.token(t, r28.flavor.service, "alice"), nil); resp.StatusCode != 200 {
		t.Fatalf("a login token for the registry's own service was refused: %d", resp.StatusCode)
	}
}
