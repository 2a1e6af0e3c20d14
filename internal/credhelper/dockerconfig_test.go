package credhelper

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func readConfig(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, data)
	}
	return cfg
}

// TestRegisterKeepsEverythingElse: the edit adds credHelpers[host], drops
// only the host's own auths entry (a password docker kept), keeps every
// other key, unknown ones included, and the file's mode.
func TestRegisterKeepsEverythingElse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	orig := `{
	"auths": {"r.example": {"auth": "YWxpY2U6cGFzc3dvcmQ="}, "other.example": {"auth": "Ym9iOng="}},
	"credHelpers": {"gcr.io": "gcloud"},
	"credsStore": "desktop",
	"proxies": {"default": {"httpProxy": "http://proxy:3128"}},
	"someFutureKey": [1, 2, {"x": null}]
}`
	if err := os.WriteFile(path, []byte(orig), 0o640); err != nil {
		t.Fatal(err)
	}
	removed, err := Register(path, "r.example")
	if err != nil || !removed {
		t.Fatalf("Register = %v, %v; want the r.example auth removed", removed, err)
	}
	cfg := readConfig(t, path)
	helpers := cfg["credHelpers"].(map[string]any)
	if helpers["r.example"] != "tollgate" || helpers["gcr.io"] != "gcloud" {
		t.Errorf("credHelpers = %v", helpers)
	}
	auths := cfg["auths"].(map[string]any)
	if _, ok := auths["r.example"]; ok || auths["other.example"] == nil {
		t.Errorf("auths = %v, want only other.example", auths)
	}
	if cfg["credsStore"] != "desktop" || cfg["proxies"] == nil || fmt.Sprint(cfg["someFutureKey"]) != "[1 2 map[x:<nil>]]" {
		t.Errorf("other keys changed: %v", cfg)
	}
	if data, _ := os.ReadFile(path); strings.Contains(string(data), "YWxpY2U6cGFzc3dvcmQ=") {
		t.Error("the registry's password is still in the config")
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want the file's 0640 kept", st.Mode().Perm())
	}

	if err := Unregister(path, "r.example"); err != nil {
		t.Fatal(err)
	}
	if err := Unregister(path, "gcr.io"); err != nil {
		t.Fatal(err)
	}
	cfg = readConfig(t, path)
	if helpers := cfg["credHelpers"].(map[string]any); len(helpers) != 1 || helpers["gcr.io"] != "gcloud" {
		t.Errorf("after Unregister credHelpers = %v, want gcr.io's own helper kept", helpers)
	}
}

func TestRegisterCreatesAPrivateConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "docker", "config.json")
	if _, err := Register(path, "r.example"); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("new config: %v %v, want mode 0600", st, err)
	}
	if cfg := readConfig(t, path); fmt.Sprint(cfg) != "map[credHelpers:map[r.example:tollgate]]" {
		t.Errorf("config = %v", cfg)
	}
}

// TestRegisterIsSafeConcurrently: logins to many registries at once (two
// terminals, a script) each keep their entry.
func TestRegisterIsSafeConcurrently(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(`{"keep":"me"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := Register(path, fmt.Sprintf("r%d.example", i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	cfg := readConfig(t, path)
	if n := len(cfg["credHelpers"].(map[string]any)); n != 20 || cfg["keep"] != "me" {
		t.Fatalf("after 20 concurrent logins: %d credHelpers, keep=%v", n, cfg["keep"])
	}
}

func TestRegisterRefusesALinkedConfig(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	target := filepath.Join(outside, "config.json")
	if err := os.WriteFile(target, []byte(`{}`), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.json")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if _, err := Register(path, "r.example"); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("Register on a link: %v, want a refusal", err)
	}
	if data, _ := os.ReadFile(target); string(data) != "{}" {
		t.Errorf("the link's target changed: %s", data)
	}
	if st, _ := os.Lstat(path); st.Mode()&os.ModeSymlink == 0 {
		t.Error("the link was replaced by a file")
	}
}

func TestRegisterRefusesAConfigThatIsNotJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(`{"auths": `), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Register(path, "r"); err == nil {
		t.Fatal("Register rewrote a config it could not read")
	}
	if data, _ := os.ReadFile(path); string(data) != `{"auths": ` {
		t.Errorf("the config changed: %s", data)
	}
}

func TestDockerConfigPathHonoursDOCKER_CONFIG(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", "/somewhere/docker")
	if p, err := DockerConfigPath(); err != nil || p != "/somewhere/docker/config.json" {
		t.Errorf("with DOCKER_CONFIG: %s, %v", p, err)
	}
	t.Setenv("DOCKER_CONFIG", "")
	t.Setenv("HOME", "/home/alice")
	if p, err := DockerConfigPath(); err != nil || p != "/home/alice/.docker/config.json" {
		t.Errorf("without DOCKER_CONFIG: %s, %v", p, err)
	}
}
