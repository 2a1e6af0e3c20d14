package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/credhelper"
	"github.com/tollgate/tollgate/internal/devicelogin"
	"github.com/tollgate/tollgate/test/oidctest"
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

		clientsThroughHelper(t, c, r, store.Path, e.b.passwords["alice"], body.RefreshToken)
	})
}

// clientsThroughHelper runs crane (push, pull), oras (push), skopeo (copy)
// and podman (pull) on team/app of r with client c, whose only credential is
// the helper's, then checks that none of secrets is in any file of c's home
// but the helper's store.
func clientsThroughHelper(t *testing.T, c *client, r *registry, store string, secrets ...string) {
	t.Helper()
	for i, secret := range secrets {
		if len(secret) < 8 {
			t.Fatalf("secret %d is %q: too short to look for", i, secret)
		}
	}
	ref := r.host() + "/team/app"
	c.must("crane", "append", "-f", c.layerTar(), "-t", ref+":helper")
	c.must("crane", "pull", "--format", "oci", ref+":helper", filepath.Join(c.home, "pulled"))
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
	// The user may not push anywhere else: no other repository.
	c.mustFail(1, craneDenied, "crane", "append", "-f", c.layerTar(), "-t", r.host()+"/other/app:helper")

	// No client wrote a password or token anywhere but the helper's store.
	_ = filepath.Walk(c.home, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || p == store || info.Size() > 1<<20 {
			return nil
		}
		data, _ := os.ReadFile(p)
		for _, secret := range secrets {
			if strings.Contains(string(data), secret) {
				t.Errorf("%s holds a credential", p)
			}
		}
		return nil
	})
}

// TestLoginServesRealClients is single sign-on from a developer's machine:
// the real `tollgate login` finds the broker from the registry's challenge
// and prints a code, which the person approves in a browser at the
// provider; with only the credential helper configured, crane, oras,
// skopeo and podman push and pull; no client file holds an IdP token, the
// session's refresh token or the broker's client secret; `tollgate logout`
// ends the session at the broker.
func TestLoginServesRealClients(t *testing.T) {
	needTollgate(t)
	needTools(t, "crane", "oras", "skopeo", "podman")
	p := oidctest.Start(t, oidctest.Options{Clients: []oidctest.Client{ssoClient},
		Accounts: map[string]map[string]any{"sam": {"groups": []string{"registry-dev"}, "name": "Sam"}}})
	e := newEnvWith(t, brokerOptions{
		identity:   ssoIdentity(p.Issuer, "1s", ""),
		policyData: oidcPolicyData,
		env:        []string{"SSO_CLIENT_SECRET=" + ssoClient.Secret},
	})
	e.each(t, func(t *testing.T, r *registry) {
		c := newClient(t)
		c.extra = []string{"REGISTRY_AUTH_FILE="} // skopeo and podman read the docker config
		tollgate(t, "", "install-credential-helper", filepath.Join(c.home, "bin"))

		out := c.tollgateLogin(r.host(), func(uri, code string) error {
			return oidctest.NewBrowser().ApproveDevice(uri, code, "sam")
		})
		if !strings.Contains(out, "Login Succeeded") {
			t.Fatalf("tollgate login printed no Login Succeeded:\n%s", out)
		}
		store := &credhelper.Store{Path: filepath.Join(c.home, ".config", "tollgate", "credentials.json")}
		cred, err := store.Get(r.host())
		if err != nil || cred.Username != credhelper.IdentityTokenUser || cred.Subject != "sam" {
			t.Fatalf("the helper's credential for %s: %+v, %v", r.host(), cred, err)
		}
		config, _ := os.ReadFile(filepath.Join(c.home, ".docker", "config.json"))
		if !strings.Contains(string(config), `"`+r.host()+`": "tollgate"`) || strings.Contains(string(config), `"auths"`) {
			t.Fatalf("the docker config does not name only the helper for %s:\n%s", r.host(), config)
		}

		time.Sleep(1100 * time.Millisecond) // the clients' first refresh re-validates at the provider
		clientsThroughHelper(t, c, r, store.Path, append(p.RefreshTokens(), cred.Secret, ssoClient.Secret)...)
		if ok, _ := p.Refreshes("sam"); ok == 0 {
			t.Errorf("no refresh at the provider: the session was never re-validated")
		}

		if out := c.tollgate("logout", r.host()); !strings.Contains(out, "Removing login credentials for "+r.host()) {
			t.Fatalf("tollgate logout printed:\n%s", out)
		}
		status, _, raw := e.b.postToken(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {cred.Secret},
			"service": {r.flavor.service}, "client_id": {"e2e"}, "scope": {"repository:team/app:pull"}})
		if status != http.StatusUnauthorized {
			t.Fatalf("refresh grant after logout: %d %s", status, raw)
		}
		if _, err := store.Get(r.host()); !errors.Is(err, credhelper.ErrNotFound) {
			t.Errorf("the credential is still stored after logout (%v)", err)
		}
	})
}

var (
	loginURIRe  = regexp.MustCompile(`(?m)open (\S+)$`)
	loginCodeRe = regexp.MustCompile(`(?m)enter the code: (\S+)$`)
)

// tollgateLogin runs `tollgate login host` as the client, hands the
// verification URI and user code it prints to approve (the person at a
// browser) and returns all it printed.
func (c *client) tollgateLogin(host string, approve func(uri, code string) error) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tollgateBin, "login", host)
	cmd.Env = append(os.Environ(), c.env()...)
	cmd.Dir = c.home
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		c.t.Fatal(err)
	}
	var printed strings.Builder
	sc := bufio.NewScanner(stderr)
	for !loginCodeRe.MatchString(printed.String()) && sc.Scan() {
		printed.WriteString(sc.Text() + "\n")
	}
	uri, code := loginURIRe.FindStringSubmatch(printed.String()), loginCodeRe.FindStringSubmatch(printed.String())
	if uri == nil || code == nil {
		_ = cmd.Wait()
		c.t.Fatalf("tollgate login printed no URI and code:\n%s", printed.String())
	}
	approveErr := approve(uri[1], code[1])
	if approveErr != nil {
		cancel() // nobody will approve: stop polling
	}
	_, _ = io.Copy(&printed, stderr)
	err = cmd.Wait()
	out := printed.String() + stdout.String()
	if approveErr != nil || err != nil {
		c.t.Fatalf("tollgate login %s: approval: %v; exit: %v\n%s", host, approveErr, err, out)
	}
	return out
}

// tollgate runs a tollgate command as the client, which must succeed.
func (c *client) tollgate(args ...string) string {
	c.t.Helper()
	cmd := exec.Command(tollgateBin, args...)
	cmd.Env = append(os.Environ(), c.env()...)
	cmd.Dir = c.home
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("tollgate %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
