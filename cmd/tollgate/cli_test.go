package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tollgate/tollgate/broker"
)

// run runs the CLI in-process with stdin and returns stdout+stderr.
func run(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	app := newApp()
	var out bytes.Buffer
	app.Reader, app.Writer, app.ErrWriter = strings.NewReader(stdin), &out, &out
	app.ExitErrHandler = func(*cli.Context, error) {}
	err := runApp(app, append([]string{"tollgate"}, args...))
	return out.String(), err
}

func TestKeygenWritesALoadableKeyPair(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	for _, typ := range []string{"ec", "rsa"} {
		out, err := run(t, "", "keygen", "--out", dir, "--type", typ, "--name", typ)
		if err != nil {
			t.Fatalf("keygen %s: %v\n%s", typ, err, out)
		}
		st, err := os.Stat(filepath.Join(dir, typ+".key"))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("key file: %v %v", st, err)
		}
	}
	ks, err := broker.LoadKeyDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ks.Published(time.Now())); n != 2 {
		t.Fatalf("%d published keys, want 2", n)
	}
	if _, err := run(t, "", "keygen", "--out", dir, "--name", "ec"); err == nil {
		t.Fatal("keygen overwrote an existing key")
	}
	if _, err := run(t, "", "keygen", "--out", dir, "--type", "ed25519"); err == nil {
		t.Fatal("keygen made an ed25519 key, which distribution 2.8 cannot use")
	}
}

// TestKeygenNeverWritesThroughALink: a NAME.key or NAME.crt someone left
// as a link (dangling or not) never receives the key or the certificate.
func TestKeygenNeverWritesThroughALink(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	if err := os.Symlink(filepath.Join(outside, "stolen.key"), filepath.Join(dir, "k.key")); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "", "keygen", "--out", dir, "--name", "k"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("keygen over a dangling link: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(outside, "stolen.key")); err == nil {
		t.Error("the key was written through the link")
	}
	os.WriteFile(filepath.Join(outside, "shared.crt"), []byte("kept\n"), 0o644)
	if err := os.Symlink(filepath.Join(outside, "shared.crt"), filepath.Join(dir, "c.crt")); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "", "keygen", "--out", dir, "--name", "c"); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	if data, _ := os.ReadFile(filepath.Join(outside, "shared.crt")); string(data) != "kept\n" {
		t.Errorf("the certificate was written through the link: %q", data)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "c.crt")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("c.crt is not a plain file: %v %v", fi, err)
	}
}

func TestHtpasswdCommands(t *testing.T) {
	file := filepath.Join(t.TempDir(), "users")
	if out, err := run(t, "s3cret\n", "htpasswd", "add", "--cost", "4", file, "alice"); err != nil {
		t.Fatalf("add: %v %s", err, out)
	}
	if out, err := run(t, "s3cret\n", "htpasswd", "verify", file, "alice"); err != nil {
		t.Fatalf("verify right password: %v %s", err, out)
	}
	if _, err := run(t, "wrong\n", "htpasswd", "verify", file, "alice"); err == nil {
		t.Fatal("verify accepted a wrong password")
	}
	if _, err := run(t, "", "htpasswd", "add", file, "bob"); err == nil {
		t.Fatal("add without a password on stdin succeeded")
	}
	if _, err := run(t, "", "htpasswd", "remove", file, "alice"); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if _, err := run(t, "s3cret\n", "htpasswd", "verify", file, "alice"); err == nil {
		t.Fatal("removed user verifies")
	}
}

func TestRegistryConfigPrintsAuthSectionAndBundle(t *testing.T) {
	dir, cfg := validConfigDir(t)
	bundle := filepath.Join(dir, "bundle.pem")
	out, err := run(t, "", "registry-config", "--config", cfg, "--bundle", bundle)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"auth:\n  token:\n", `realm: "http://localhost:5001/token"`, `service: "registry.test"`,
		`issuer: "tollgate-test"`, `rootcertbundle: "` + bundle + `"`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	pem, _ := os.ReadFile(bundle)
	if strings.Count(string(pem), "BEGIN CERTIFICATE") != 1 {
		t.Fatalf("bundle: %s", pem)
	}
}

// registry-config never drops a bundle into the current directory: with a
// configuration file it asks where the registry reads it; in development it
// refreshes the bundle the development registry.yml names.
func TestRegistryConfigWritesNoBundleIntoTheCurrentDirectory(t *testing.T) {
	_, cfg := validConfigDir(t)
	cwd := t.TempDir()
	t.Chdir(cwd)
	if out, err := run(t, "", "registry-config", "--config", cfg); err == nil || !strings.Contains(err.Error(), "--bundle") {
		t.Errorf("registry-config --config without --bundle: %v, want an error asking for --bundle\n%s", err, out)
	}
	out, err := run(t, "", "registry-config", "--state-dir", filepath.Join(cwd, "state"))
	if err != nil {
		t.Fatalf("registry-config in development: %v\n%s", err, out)
	}
	bundle := filepath.Join(cwd, "state", "registry-bundle.pem")
	if !strings.Contains(out, `rootcertbundle: "`+bundle+`"`) {
		t.Errorf("development rootcertbundle is not %s:\n%s", bundle, out)
	}
	if entries, _ := os.ReadDir(cwd); len(entries) != 1 {
		t.Errorf("registry-config wrote into the current directory: %v", entries)
	}
}

// validConfig is a small configuration whose keys, users and policy the
// tests create beside it.
const validConfig = `
services:
  - name: registry.test
    issuer: tollgate-test
    realm: http://localhost:5001/token
    keys: keys
identity:
  - {name: local, type: htpasswd, file: users}
policy:
  source: policy
`

// writeConfig writes body as a config.yaml in a new directory.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// validConfigDir writes validConfig with the keys, users and policy it
// names, and returns the directory and the configuration file.
func validConfigDir(t *testing.T) (dir, cfg string) {
	t.Helper()
	dir = t.TempDir()
	if _, err := run(t, "", "keygen", "--out", filepath.Join(dir, "keys"), "--name", "a"); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "policy"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "users"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg = filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(validConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, cfg
}
