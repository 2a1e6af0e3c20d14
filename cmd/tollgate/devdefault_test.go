package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/config"
	"github.com/tollgate/tollgate/test/testenv"
)

// The banner's anonymous pull is from the public project "library", the one
// the default policy opens to everyone, and it says team is private.
func TestDevBannerPullsAnonymouslyFromThePublicProject(t *testing.T) {
	var out bytes.Buffer
	(&devSetup{stateDir: "/s", registry: "/s/registry.yml"}).printBanner(&out, "127.0.0.1:5001")
	banner := out.String()
	_, afterLogout, ok := strings.Cut(banner, "crane auth logout")
	if !ok {
		t.Fatalf("the banner never logs out to show an anonymous pull:\n%s", banner)
	}
	anon := regexp.MustCompile(`crane ls [^/\s]+/(\S+)\s+# anonymous: (\w+)`).FindAllStringSubmatch(afterLogout, -1)
	want := map[string]string{"library/hello": "allowed", "team/app": "denied"}
	if len(anon) != len(want) {
		t.Fatalf("anonymous pulls %q, want library/hello allowed and team/app denied:\n%s", anon, banner)
	}
	for _, m := range anon {
		if want[m[1]] != m[2] {
			t.Errorf("anonymous pull of %s says %s, want %s", m[1], m[2], want[m[1]])
		}
	}
	if strings.Contains(banner, "library/hello") && !strings.Contains(banner, "-t localhost:5000/library/hello") {
		t.Errorf("the banner pulls library/hello without pushing it first:\n%s", banner)
	}
}

// startDevBroker runs `tollgate serve --state-dir state --listen addr` until
// the returned stop is called; stop returns what the broker printed, and
// may be called again.
func startDevBroker(t *testing.T, state, addr string) (stop func() string) {
	t.Helper()
	var out bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter = &out, io.Discard
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- app.RunContext(ctx, []string{"tollgate", "serve", "--state-dir", state, "--listen", addr})
	}()
	stop = sync.OnceValue(func() string {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve --listen %s: %v", addr, err)
		}
		return out.String()
	})
	if err := testenv.WaitReady("http://"+addr, 20*time.Second); err != nil {
		t.Fatalf("serve --listen %s: %v\n%s", addr, err, stop())
	}
	return stop
}

func freeAddr(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
}

// A later start with another --listen moves the development realm with it:
// config.yaml and registry.yml name the new port, so a registry sends its
// clients to the broker that runs, and the banner says what changed.
func TestDevListenChangeMovesTheRealm(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	first, second := freeAddr(t), freeAddr(t)
	startDevBroker(t, state, first)()
	before, err := os.ReadFile(filepath.Join(state, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	stop := startDevBroker(t, state, second)
	defer stop()

	_, port, _ := net.SplitHostPort(second)
	realm := "http://localhost:" + port + "/token"
	cfg, err := config.Load(filepath.Join(state, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != second || cfg.Services[0].Realm != realm {
		t.Errorf("config.yaml after a start with --listen %s: listen %q, realm %q; want %q", second, cfg.Listen, cfg.Services[0].Realm, realm)
	}
	rc, err := readRegistryConfig(filepath.Join(state, "registry.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if rc.Realm != realm {
		t.Errorf("registry.yml's realm is %q, want %q", rc.Realm, realm)
	}
	after, _ := os.ReadFile(filepath.Join(state, "config.yaml"))
	if !bytes.Contains(after, []byte("# Edit it freely")) {
		t.Errorf("the update dropped config.yaml's comments:\n%s\nwas:\n%s", after, before)
	}
	fi, err := os.Lstat(filepath.Join(state, "config.yaml"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("config.yaml after the update: %v, mode %v, want 0600", err, fi.Mode())
	}

	// What a client does: follow the realm the registry was given.
	pw := map[string]string{}
	data, _ := os.ReadFile(filepath.Join(state, "passwords.txt"))
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		u, p, _ := strings.Cut(line, " ")
		pw[u] = p
	}
	req, _ := http.NewRequest("GET", rc.Realm+"?service="+rc.Service+"&scope=repository:team/app:push", nil)
	req.SetBasicAuth("alice", pw["alice"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("token from the realm in registry.yml: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token from the realm in registry.yml (%s): %s", rc.Realm, resp.Status)
	}

	if banner := stop(); !strings.Contains(banner, realm) || !strings.Contains(banner, first) {
		t.Errorf("the banner does not say the realm moved from %s to %s:\n%s", first, realm, banner)
	}
}

// A realm edited by hand (a proxy in front of the broker, say) is not the
// development realm: a new --listen leaves it, and says so.
func TestDevListenChangeKeepsARealmEditedByHand(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	if _, _, err := devConfig(state, "127.0.0.1:5101"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(state, "config.yaml")
	data, _ := os.ReadFile(path)
	edited := strings.Replace(string(data), "http://localhost:5101/token", "https://auth.example.test/token", 1)
	if err := os.WriteFile(path, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, d, err := devConfig(state, "127.0.0.1:5102")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:5102" || cfg.Services[0].Realm != "https://auth.example.test/token" {
		t.Errorf("listen %q, realm %q: want the new listen and the realm as edited", cfg.Listen, cfg.Services[0].Realm)
	}
	if len(d.changes) != 1 || !strings.Contains(d.changes[0], "services[0].realm https://auth.example.test/token is left as it is") {
		t.Errorf("changes reported: %q", d.changes)
	}
}
