package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/credhelper"
)

// TestMain lets this test binary answer as docker-credential-tollgate when
// run under that name, as the real binary does: the tests below run it
// through the link `install-credential-helper` makes, the way docker,
// crane and oras do.
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == credhelper.HelperName {
		main()
	}
	os.Exit(m.Run())
}

// helperBin links docker-credential-tollgate to this binary in a fresh
// directory with `tollgate install-credential-helper` and returns the
// link and an environment whose credential store is in a temporary home.
func helperBin(t *testing.T) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	if out, err := run(t, "", "install-credential-helper", filepath.Join(dir, "bin")); err != nil {
		t.Fatalf("install-credential-helper: %v\n%s", err, out)
	}
	link := filepath.Join(dir, "bin", credhelper.HelperName)
	if target, err := os.Readlink(link); err != nil || !strings.HasSuffix(target, filepath.Base(os.Args[0])) {
		t.Fatalf("the link points to %q (%v), want this binary", target, err)
	}
	return link, append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
}

// helper runs the helper with action and stdin, as a registry client does.
func helper(t *testing.T, bin string, env []string, action, stdin string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, action)
	cmd.Env, cmd.Stdin = env, strings.NewReader(stdin)
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %s: %v", bin, action, err)
	}
	return string(out), 0
}

func TestCredentialHelperProtocol(t *testing.T) {
	bin, env := helperBin(t)
	// Nothing stored: docker matches this exact message on stdout.
	if out, code := helper(t, bin, env, "get", "registry.example.com\n"); code != 1 || strings.TrimSpace(out) != "credentials not found in native keychain" {
		t.Fatalf("get of an absent credential: exit %d, %q", code, out)
	}
	// docker login against a tollgate realm stores its identity token.
	if out, code := helper(t, bin, env, "store", `{"ServerURL":"https://registry.example.com","Username":"<token>","Secret":"rt-abc"}`); code != 0 {
		t.Fatalf("store: exit %d, %s", code, out)
	}
	out, code := helper(t, bin, env, "get", "registry.example.com")
	var got struct{ ServerURL, Username, Secret string }
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || got.Username != "<token>" || got.Secret != "rt-abc" || got.ServerURL != "registry.example.com" {
		t.Fatalf("get: exit %d, %q (%v)", code, out, err)
	}
	if out, _ := helper(t, bin, env, "list", ""); strings.TrimSpace(out) != `{"registry.example.com":"<token>"}` {
		t.Errorf("list: %s", out)
	}
	// A password is refused and not written anywhere.
	out, code = helper(t, bin, env, "store", `{"ServerURL":"other.example.com","Username":"alice","Secret":"hunter2-password"}`)
	if code != 1 || !strings.Contains(out, "identity tokens only") || strings.Contains(out, "hunter2") {
		t.Errorf("store of a password: exit %d, %q", code, out)
	}
	store, _ := os.ReadFile(filepath.Join(envValue(env, "XDG_CONFIG_HOME"), "tollgate", "credentials.json"))
	if strings.Contains(string(store), "hunter2") || !strings.Contains(string(store), "rt-abc") {
		t.Errorf("the store holds: %s", store)
	}
	if out, code := helper(t, bin, env, "erase", "registry.example.com\n"); code != 0 {
		t.Fatalf("erase: exit %d, %s", code, out)
	}
	if _, code := helper(t, bin, env, "get", "registry.example.com"); code != 1 {
		t.Error("get after erase found a credential")
	}
	if out, code := helper(t, bin, env, "frobnicate", ""); code != 1 || !strings.Contains(out, "unknown credential helper action") {
		t.Errorf("unknown action: exit %d, %q", code, out)
	}
}

func envValue(env []string, name string) string {
	v := ""
	for _, kv := range env {
		if k, val, _ := strings.Cut(kv, "="); k == name {
			v = val
		}
	}
	return v
}

// TestLogoutWhenNotLoggedIn touches no network: nothing stored, nothing to end.
func TestLogoutWhenNotLoggedIn(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	out, err := run(t, "", "logout", "registry.example.com")
	if err != nil || !strings.Contains(out, "Not logged in to registry.example.com") {
		t.Fatalf("logout: %v\n%s", err, out)
	}
}
