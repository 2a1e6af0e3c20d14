package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

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

// deviceBroker is a stand-in for the broker's device login (the wire
// contract of issue 17) until the broker side lands: it approves at the
// first poll when approve is set, and otherwise keeps answering pending.
// It also plays the registry's /v2/ challenge pointing at itself.
func deviceBroker(t *testing.T, approve bool, started chan<- struct{}) string {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v2/":
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+srv.URL+`/token",service="registry.test"`)
			w.WriteHeader(http.StatusUnauthorized)
		case "/login/device":
			fmt.Fprint(w, `{"device_code":"h","user_code":"ABCD-EFGH","verification_uri":"https://idp.test/device","expires_in":60,"interval":1}`)
			if started != nil {
				close(started)
			}
		case "/login/device/token":
			if !approve {
				w.WriteHeader(http.StatusBadRequest)
				fmt.Fprint(w, `{"error":"authorization_pending"}`)
				return
			}
			fmt.Fprint(w, `{"refresh_token":"rt-1","session_id":"s1","subject":"alice","expires_in":3600}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestLoginPrintsTheCodeAndSucceeds(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	docker := t.TempDir()
	t.Setenv("DOCKER_CONFIG", docker)
	host := deviceBroker(t, true, nil)
	out, err := run(t, "", "login", host)
	if err != nil {
		t.Fatalf("login: %v\n%s", err, out)
	}
	for _, want := range []string{"ABCD-EFGH", "https://idp.test/device", "Login Succeeded"} {
		if !strings.Contains(out, want) {
			t.Errorf("login's output lacks %q:\n%s", want, out)
		}
	}
	if cfg, err := os.ReadFile(filepath.Join(docker, "config.json")); err != nil || !strings.Contains(string(cfg), `"`+host+`": "tollgate"`) {
		t.Errorf("$DOCKER_CONFIG/config.json: %s %v", cfg, err)
	}
}

// TestLoginCancelsOnInterrupt: Ctrl-C while waiting for the approval ends
// the command with "login cancelled" and stores nothing.
func TestLoginCancelsOnInterrupt(t *testing.T) {
	cfgHome := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfgHome)
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	started := make(chan struct{})
	host := deviceBroker(t, false, started)
	go func() {
		<-started // the command's signal handler is in place by then
		time.Sleep(200 * time.Millisecond)
		_ = syscall.Kill(os.Getpid(), syscall.SIGINT)
	}()
	out, err := run(t, "", "login", host)
	var ec cli.ExitCoder
	if !errors.As(err, &ec) || ec.ExitCode() != 130 || !strings.Contains(err.Error(), "login cancelled") {
		t.Fatalf("login interrupted: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(cfgHome, "tollgate", "credentials.json")); err == nil {
		t.Error("a cancelled login stored a credential")
	}
}
