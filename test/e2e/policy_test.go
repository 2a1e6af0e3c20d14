package e2e

import (
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// craneDenied is what crane prints when the registry answers 401: the
// registry's error code from the body, or the bare status of a HEAD.
var craneDenied = regexp.MustCompile(`UNAUTHORIZED: authentication required|unexpected status code 401 Unauthorized \(HEAD responses have no body`)

func TestCraneIsRefusedWhatThePolicyDenies(t *testing.T) {
	needTools(t, "crane")
	e := newEnv(t)
	e.each(t, func(t *testing.T, r *registry) {
		clients := map[string]*client{"anonymous": newClient(t)}
		for _, u := range users {
			clients[u] = newClient(t)
			clients[u].login("crane", r, e.b, u)
		}
		// step runs a subtest; as(user) is that user's crane, failing the subtest.
		step := func(name string, fn func(t *testing.T, as func(user string) *client)) {
			t.Run(name, func(t *testing.T) {
				fn(t, func(user string) *client { return clients[user].in(t) })
			})
		}

		team := r.host() + "/team/app:v1"
		pub := r.host() + "/library/hello:v1"
		alice := clients["alice"]
		alice.must("crane", "append", "-f", alice.layerTar(), "-t", team)
		alice.must("crane", "append", "-f", alice.layerTar(), "-t", pub) // alice maintains library

		step("guest pulls but cannot push", func(t *testing.T, as func(string) *client) {
			as("bob").must("crane", "manifest", team)
			as("bob").mustFail(1, craneDenied, "crane", "append", "-f", alice.layerTar(), "-t", r.host()+"/team/app:bob")
		})
		step("no role neither pulls nor pushes", func(t *testing.T, as func(string) *client) {
			as("carol").mustFail(1, craneDenied, "crane", "manifest", team)
			as("carol").mustFail(1, craneDenied, "crane", "append", "-f", alice.layerTar(), "-t", r.host()+"/team/app:carol")
		})
		step("anonymous pulls public only and never pushes", func(t *testing.T, as func(string) *client) {
			as("anonymous").must("crane", "manifest", pub)
			as("anonymous").mustFail(1, craneDenied, "crane", "manifest", team)
			as("anonymous").mustFail(1, craneDenied, "crane", "append", "-f", alice.layerTar(), "-t", r.host()+"/library/hello:anon")
		})
		step("catalog for system admins only", func(t *testing.T, as func(string) *client) {
			catalog := strings.Fields(as("admin").must("crane", "catalog", r.host()))
			sort.Strings(catalog)
			if want := []string{"library/hello", "team/app"}; strings.Join(catalog, " ") != strings.Join(want, " ") {
				t.Fatalf("admin's crane catalog = %q, want %q", catalog, want)
			}
			as("alice").mustFail(1, craneDenied, "crane", "catalog", r.host())
		})
		step("delete for system admins only", func(t *testing.T, as func(string) *client) {
			digest := strings.TrimSpace(as("alice").must("crane", "digest", team))
			byDigest := r.host() + "/team/app@" + digest
			as("alice").mustFail(1, craneDenied, "crane", "delete", byDigest)
			as("alice").must("crane", "manifest", byDigest) // still there
			as("admin").must("crane", "delete", byDigest)
			as("alice").mustFail(1, regexp.MustCompile("MANIFEST_UNKNOWN"), "crane", "manifest", byDigest)
		})
	})
}

// TestRegistryEnforcesExactlyTheGrantedActions asks /token for exactly the
// scopes of one request, checks the `access` claim the broker signed, and
// checks the registry's answer to that request.
func TestRegistryEnforcesExactlyTheGrantedActions(t *testing.T) {
	e := newEnv(t)
	e.each(t, func(t *testing.T, r *registry) {
		svc := r.flavor.service
		pushImage(t, r, e.b.getToken(t, svc, "alice", "repository:team/app:pull,push"), "team/app", "v1")
		pushImage(t, r, e.b.getToken(t, svc, "alice", "repository:library/hello:pull,push"), "library/hello", "v1")
		victim := pushImage(t, r, e.b.getToken(t, svc, "alice", "repository:team/victim:pull,push"), "team/victim", "v1")

		repo := func(name string, actions ...string) access { return access{"repository", name, actions} }
		cases := []struct {
			name         string
			user         string // "" is anonymous
			scope        string
			want         []access // the access claim, exactly
			method, path string
			status       int // 401 means with an insufficient_scope challenge
		}{
			{"developer pushes", "alice", "repository:team/app:pull,push", []access{repo("team/app", "pull", "push")}, "POST", "/v2/team/app/blobs/uploads/", 202},
			{"guest pulls", "bob", "repository:team/app:pull,push", []access{repo("team/app", "pull")}, "GET", "/v2/team/app/manifests/v1", 200},
			{"guest cannot push", "bob", "repository:team/app:pull,push", []access{repo("team/app", "pull")}, "POST", "/v2/team/app/blobs/uploads/", 401},
			{"no role cannot pull", "carol", "repository:team/app:pull,push", nil, "GET", "/v2/team/app/manifests/v1", 401},
			{"no role cannot push", "carol", "repository:team/app:pull,push", nil, "POST", "/v2/team/app/blobs/uploads/", 401},
			{"anonymous pulls public", "", "repository:library/hello:pull", []access{repo("library/hello", "pull")}, "GET", "/v2/library/hello/manifests/v1", 200},
			{"anonymous cannot push public", "", "repository:library/hello:pull,push", []access{repo("library/hello", "pull")}, "POST", "/v2/library/hello/blobs/uploads/", 401},
			{"anonymous cannot pull private", "", "repository:team/app:pull", nil, "GET", "/v2/team/app/manifests/v1", 401},
			{"admin lists the catalog", "admin", "registry:catalog:*", []access{{"registry", "catalog", []string{"*"}}}, "GET", "/v2/_catalog", 200},
			{"developer cannot list the catalog", "alice", "registry:catalog:*", nil, "GET", "/v2/_catalog", 401},
			{"developer cannot delete", "alice", "repository:team/victim:delete", nil, "DELETE", "/v2/team/victim/manifests/" + victim, 401},
			{"admin deletes", "admin", "repository:team/victim:delete", []access{repo("team/victim", "delete")}, "DELETE", "/v2/team/victim/manifests/" + victim, 202},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				tok := e.b.getToken(t, svc, tc.user, tc.scope)
				expectAccess(t, tok, tc.want)
				resp := do(t, tc.method, r.url(tc.path), tok, nil, "Accept", ociManifest)
				if tc.status == http.StatusUnauthorized {
					resp.expectDenied(t)
				} else {
					resp.expect(t, tc.status)
				}
			})
		}
	})
}

func TestBlobMountNeedsPullOnTheSource(t *testing.T) {
	e := newEnv(t)
	e.each(t, func(t *testing.T, r *registry) {
		svc := r.flavor.service
		// A blob in library/base (alice may read it) and one in secret/x
		// (only the system admin may read it).
		digest := uploadBlob(t, r, e.b.getToken(t, svc, "alice", "repository:library/base:pull,push"), "library/base", randomTar(t))
		secret := uploadBlob(t, r, e.b.getToken(t, svc, "admin", "repository:secret/x:pull,push"), "secret/x", randomTar(t))
		mount := func(target, from, digest string) string {
			return r.url("/v2/" + target + "/blobs/uploads/?mount=" + url.QueryEscape(digest) + "&from=" + url.QueryEscape(from))
		}

		t.Run("pull on the source mounts", func(t *testing.T) {
			tok := e.b.getToken(t, svc, "alice", "repository:team/mounted:pull,push", "repository:library/base:pull")
			expectAccess(t, tok, []access{{"repository", "team/mounted", []string{"pull", "push"}}, {"repository", "library/base", []string{"pull"}}})
			resp := do(t, "POST", mount("team/mounted", "library/base", digest), tok, nil).expect(t, http.StatusCreated)
			if got := resp.header.Get("Docker-Content-Digest"); got != digest {
				t.Fatalf("mounted digest %q, want %s", got, digest)
			}
			do(t, "HEAD", r.url("/v2/team/mounted/blobs/"+digest), tok, nil).expect(t, http.StatusOK)
		})
		t.Run("without asking pull on the source the registry refuses", func(t *testing.T) {
			tok := e.b.getToken(t, svc, "alice", "repository:team/mounted2:pull,push")
			do(t, "POST", mount("team/mounted2", "library/base", digest), tok, nil).expectDenied(t)
		})
		t.Run("pull on the source denied by the policy is refused", func(t *testing.T) {
			tok := e.b.getToken(t, svc, "alice", "repository:team/mounted3:pull,push", "repository:secret/x:pull")
			expectAccess(t, tok, []access{{"repository", "team/mounted3", []string{"pull", "push"}}})
			do(t, "POST", mount("team/mounted3", "secret/x", secret), tok, nil).expectDenied(t)
			do(t, "HEAD", r.url("/v2/team/mounted3/blobs/"+secret), tok, nil).expect(t, http.StatusNotFound)
		})
		t.Run("a blob missing from the source falls back to an upload", func(t *testing.T) {
			tok := e.b.getToken(t, svc, "alice", "repository:team/mounted4:pull,push", "repository:library/base:pull")
			missing := sha256Digest(randomTar(t))
			resp := do(t, "POST", mount("team/mounted4", "library/base", missing), tok, nil).expect(t, http.StatusAccepted)
			if !strings.Contains(resp.header.Get("Location"), "/v2/team/mounted4/blobs/uploads/") {
				t.Fatalf("fallback upload Location %q, want one under team/mounted4", resp.header.Get("Location"))
			}
		})
	})
}

func TestPodmanLoginChecksThePassword(t *testing.T) {
	needTools(t, "podman")
	e := newEnv(t)
	e.each(t, func(t *testing.T, r *registry) {
		c := newClient(t)
		authfile := filepath.Join(c.home, "podman-auth.json")
		res := c.runStdin(e.b.passwords["alice"]+"\n", "podman", "login", "--tls-verify=false", "--authfile", authfile, "-u", "alice", "--password-stdin", r.host())
		if res.code != 0 || !strings.Contains(res.out, "Login Succeeded") {
			t.Fatalf("want exit 0 and Login Succeeded:\n%s", res)
		}
		res = c.runStdin("wrong-"+e.b.passwords["alice"]+"\n", "podman", "login", "--tls-verify=false", "--authfile", filepath.Join(c.home, "other-auth.json"), "-u", "alice", "--password-stdin", r.host())
		if res.code != 125 || !strings.Contains(res.out, "invalid username/password") {
			t.Fatalf("want exit 125 and invalid username/password:\n%s", res)
		}
	})
}

// TestSubjectWithSlashOwnsNoNamespace pushes with crane to distribution 2.8
// as htpasswd users whose names contain "/": the default policy must not
// take "team/ci" for the owner of team/ci/... inside the private project
// team, nor "library/mirror" for the owner of library/mirror/... inside the
// public library (issue 14, finding 2). carol still owns carol/....
func TestSubjectWithSlashOwnsNoNamespace(t *testing.T) {
	needTools(t, "crane")
	f := flavors[0]
	tool(t, f.bin)
	b := startBrokerWith(t, brokerOptions{moreUsers: []string{"team/ci", "library/mirror"}})
	r := startRegistry(t, f, b)
	as := func(user string) *client {
		c := newClient(t)
		c.login("crane", r, b, user)
		return c
	}
	carol, ci, mirror := as("carol"), as("team/ci"), as("library/mirror")
	carol.must("crane", "append", "-f", carol.layerTar(), "-t", r.host()+"/carol/app:v1")
	ci.mustFail(1, craneDenied, "crane", "append", "-f", ci.layerTar(), "-t", r.host()+"/team/ci/app:v1")
	mirror.mustFail(1, craneDenied, "crane", "append", "-f", mirror.layerTar(), "-t", r.host()+"/library/mirror/x:v1")
}
