package bundles_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/test/testenv"
)

// opa runs the real opa CLI in dir and returns its combined output.
func opa(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(testenv.Tool(t, "opa"), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestOPABuiltSignedBundleLoads: a bundle built and signed by `opa build`
// loads into tollgate; the same bundle tampered with is refused.
func TestOPABuiltSignedBundleLoads(t *testing.T) {
	private, public := keyPair(t)
	dir := policyDir(t, "pull")
	out := filepath.Join(t.TempDir(), "opa.tar.gz")
	if msg, err := opa(t, dir, "build", "--bundle", ".", "--revision", "opa-1",
		"--signing-key", private, "--signing-alg", "ES256", "-o", out); err != nil {
		t.Fatalf("opa build: %v\n%s", err, msg)
	}
	b, _, err := (&bundles.Source{Location: out, Verify: verifier(t, public)}).Fetch(context.Background(), "")
	if err != nil {
		t.Fatalf("tollgate refused a bundle signed by opa: %v", err)
	}
	if b.Revision != "opa-1" || b.Data["act"] != "pull" || len(b.Modules) != 1 {
		t.Fatalf("loaded %q %v %v", b.Revision, keys(b.Modules), b.Data)
	}

	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	bad := tamper(t, data, "data.json", func([]byte) []byte { return []byte(`{"act": "push"}`) })
	if _, _, err := (&bundles.Source{Location: writeFile(t, bad), Verify: verifier(t, public)}).Fetch(context.Background(), ""); err == nil {
		t.Fatal("a tampered opa bundle loaded")
	}
}

// TestOPAAcceptsTollgateBundles: bundles built by tollgate, signed at build
// time or afterwards, pass `opa build --verification-key`; opa refuses them
// with another key, so the check can fail.
func TestOPAAcceptsTollgateBundles(t *testing.T) {
	private, public := keyPair(t)
	_, otherPublic := keyPair(t)
	signing := &bundles.Signing{Key: private, Algorithm: "ES256"}
	dir := policyDir(t, "pull")

	signed := writeFile(t, build(t, dir, "tg-1", signing))
	var resigned bytes.Buffer
	if err := bundles.Sign(bytes.NewReader(build(t, dir, "tg-2", nil)), signing, &resigned); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{"built signed": signed, "signed later": writeFile(t, resigned.Bytes())} {
		t.Run(name, func(t *testing.T) {
			tmp := t.TempDir()
			verify := func(pub string) (string, error) {
				return opa(t, tmp, "build", "--bundle", path, "--verification-key", pub,
					"--signing-alg", "ES256", "-o", filepath.Join(tmp, "out.tar.gz"))
			}
			if msg, err := verify(public); err != nil {
				t.Fatalf("opa refused a tollgate bundle: %v\n%s", err, msg)
			}
			msg, err := verify(otherPublic)
			if err == nil || !strings.Contains(msg, "signature") {
				t.Fatalf("opa accepted a tollgate bundle under another key: %v\n%s", err, msg)
			}
			// opa evaluates the policy in it.
			res, err := opa(t, tmp, "eval", "--bundle", path, "--format", "raw",
				"--input", writeInput(t, `{"x": true}`), "count(data.registry.authz.allowed)")
			if err != nil || strings.TrimSpace(res) != "1" {
				t.Fatalf("opa eval on a tollgate bundle: %v %q", err, res)
			}
		})
	}
}

func writeInput(t *testing.T, doc string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "input.json")
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
