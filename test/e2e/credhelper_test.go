package e2e

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/credhelper"
	"github.com/tollgate/tollgate/internal/devicelogin"
)

// TestCredentialHelperServesRealClients: with only docker-credential-tollgate
// configured (credHelpers in the docker config, the identity token in the
// helper's store), crane, oras, skopeo and podman push and pull through the refresh
// grant, and no password is in any client file.
//
// The identity token here is a refresh token of today's password grant,
// obtained by the test: the device login that `tollgate login` runs needs
// the broker's /login/device (issue 17, item 1), and its end-to-end test
// with the OIDC provider lands with the broker side. What the clients do
// with the stored credential is the same.
func TestCredentialHelperServesRealClients(t *testing.T) {
	needTollgate(t)
	needTools(t, "crane", "oras", "skopeo", "podman")
	e := newEnv(t)
	e.each(t, func(t *testing.T, r *registry) {
		// `tollgate login` finds the broker from the real registry's challenge.
		b, err := devicelogin.Discover(context.Background(), http.DefaultClient, r.host(), false)
		if err != nil || b.Realm.String() != e.b.realm() || b.Service != r.flavor.service {
			t.Fatalf("Discover(%s) = %v %q, %v; want realm %s, service %s", r.host(), b.Realm, b.Service, err, e.b.realm(), r.flavor.service)
		}
		status, body, raw := e.b.postToken(t, url.Values{
			"grant_type": {"password"}, "username": {"alice"}, "password": {e.b.passwords["alice"]},
			"service": {r.flavor.service}, "client_id": {"e2e"}, "access_type": {"offline"}, "scope": {"repository:team/app:pull,push"},
		})
		if status != http.StatusOK || body.RefreshToken == "" {
			t.Fatalf("refresh token for the test: %d\n%s", status, raw)
		}

		c := newClient(t)
		// skopeo reads the docker config when no auth file is named.
		c.extra = []string{"REGISTRY_AUTH_FILE="}
		tollgate(t, "", "install-credential-helper", filepath.Join(c.home, "bin"))
		store := &credhelper.Store{Path: filepath.Join(c.home, ".config", "tollgate", "credentials.json")}
		if err := store.Put(r.host(), credhelper.Credential{Username: credhelper.IdentityTokenUser, Secret: body.RefreshToken, Realm: e.b.realm(), Service: r.flavor.service}); err != nil {
			t.Fatal(err)
		}
		if _, err := credhelper.Register(filepath.Join(c.home, ".docker", "config.json"), r.host()); err != nil {
			t.Fatal(err)
		}

		ref := r.host() + "/team/app"
		c.must("crane", "append", "-f", c.layerTar(), "-t", ref+":helper")
		c.must("crane", "manifest", ref+":helper")
		if err := os.WriteFile(filepath.Join(c.home, "artifact.txt"), []byte("from oras"), 0o644); err != nil {
			t.Fatal(err)
		}
		c.must("oras", "push", ref+":oras", "artifact.txt")
		c.must("skopeo", "--insecure-policy", "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
			"docker://"+ref+":helper", "docker://"+ref+":skopeo")
		c.must("crane", "manifest", ref+":skopeo")
		// podman's own storage for this test; its runroot must be short.
		runroot, err := os.MkdirTemp("", "pr")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(runroot)
		c.must("podman", "--root", filepath.Join(c.home, "containers"), "--runroot", runroot, "--storage-driver", "vfs",
			"pull", "--tls-verify=false", ref+":skopeo")
		// Nothing else may pull or push as alice: no other repository.
		c.mustFail(1, craneDenied, "crane", "append", "-f", c.layerTar(), "-t", r.host()+"/other/app:helper")

		// No client wrote a password or token anywhere but the helper's store.
		_ = filepath.Walk(c.home, func(p string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() || p == store.Path || info.Size() > 1<<20 {
				return nil
			}
			data, _ := os.ReadFile(p)
			for _, secret := range []string{e.b.passwords["alice"], body.RefreshToken} {
				if strings.Contains(string(data), secret) {
					t.Errorf("%s holds a credential", p)
				}
			}
			return nil
		})
	})
}
