// Package testenv finds the external programs tests run (registries,
// clients, slapd, opa) and applies the project's rule for missing ones:
// under CI=true a missing component fails the test, because a skipped test
// in CI hides a broken set-up; elsewhere the test skips, naming the command
// that installs it.
package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// InstallHint is the command that installs every test component.
const InstallHint = "run `make test` or, as root, scripts/install-test-deps.sh"

// Missing fails the test under CI=true and skips it otherwise.
func Missing(t testing.TB, what string) {
	t.Helper()
	msg := fmt.Sprintf("%s: %s", what, InstallHint)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// Tool returns the absolute path of an installed program, or calls Missing.
func Tool(t testing.TB, name string) string {
	t.Helper()
	if p := Lookup(name); p != "" {
		return p
	}
	Missing(t, name+" is not installed")
	return ""
}

var gobins = sync.OnceValue(func() []string {
	var dirs []string
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, p := range filepath.SplitList(strings.TrimSpace(string(out))) {
			dirs = append(dirs, filepath.Join(p, "bin"))
		}
	}
	return dirs
})

// Lookup finds a program on PATH, then in every GOPATH's bin (where `go
// install` puts crane, oras, opa and distribution 3), then in /usr/sbin
// (slapd). It returns "" when the program is not installed.
func Lookup(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
		return p
	}
	for _, dir := range append(gobins(), "/usr/sbin") {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// WriteES256KeyPair writes a fresh P-256 key pair into dir as key.pem
// (SEC 1) and pub.pem (PKIX), the PEM forms opa and tollgate read for
// bundle signing, and returns their paths.
func WriteES256KeyPair(t testing.TB, dir string) (private, public string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	private, public = filepath.Join(dir, "key.pem"), filepath.Join(dir, "pub.pem")
	if err := os.WriteFile(private, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(public, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		t.Fatal(err)
	}
	return private, public
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitReady polls base + "/readyz" until it answers 200, or returns the
// last error once limit has passed.
func WaitReady(base string, limit time.Duration) error {
	return WaitOK(base+"/readyz", limit)
}

// WaitOK polls url until it answers 200, for at most limit.
func WaitOK(url string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
