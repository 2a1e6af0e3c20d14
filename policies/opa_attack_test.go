package policies_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policies"
	"github.com/tollgate/tollgate/test/testenv"
)

// manyFileBundle is a gzipped bundle of files data files of size bytes
// each (a JSON string of one repeated letter: it compresses to almost
// nothing), and a policy.
func manyFileBundle(t *testing.T, files, size int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	add := func(name string, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	add("/authz.rego", []byte("package registry.authz\n\nallowed := set()\n"))
	blob := []byte(`"` + strings.Repeat("a", size-2) + `"`)
	for i := range files {
		add(fmt.Sprintf("/d%d/data.json", i), blob)
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

// Every way OPA's configuration names a bundle gets the file size limit,
// or is refused: OPA reads the legacy singular bundle key with a fixed
// 1 GiB limit.
func TestOPALegacyBundleKeyGetsTheSizeLimit(t *testing.T) {
	body := manyFileBundle(t, 1, 4<<20)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	defer srv.Close()
	for name, doc := range map[string]string{
		"bundles": fmt.Sprintf("services:\n  s: {url: %s}\nbundles:\n  authz: {service: s, resource: /b.tar.gz}\n", srv.URL),
		"bundle":  fmt.Sprintf("services:\n  s: {url: %s}\nbundle: {name: b.tar.gz, service: s}\n", srv.URL),
	} {
		t.Run(name, func(t *testing.T) {
			e, err := policies.OpenOPA([]byte(doc), policies.OPAOptions{ID: "t", MaxFileBytes: 1 << 20})
			if err != nil {
				t.Logf("refused: %v", err)
				return
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if err := e.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer e.Stop(context.Background())
			deadline := time.Now().Add(20 * time.Second)
			for time.Now().Before(deadline) {
				if e.Ready() {
					t.Fatal("a bundle with a 4 MiB file was activated under a 1 MiB limit")
				}
				if bs := e.Bundles(ctx); len(bs) == 1 && bs[0].LastError != "" {
					t.Logf("refused: %s", bs[0].LastError)
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Fatal("neither activated nor refused")
		})
	}
}

// A persisted bundle is activated at start before any download; when the
// persistence directory is writable by other users, any of them can plant
// the policy the broker serves (an unsigned bundle is not checked). Such a
// directory must be refused, as tollgate's own state directory is.
func TestOPAPersistenceDirectoryWritableByOthersIsRefused(t *testing.T) {
	persist := t.TempDir()
	if err := os.Chmod(persist, 0o777); err != nil {
		t.Fatal(err)
	}
	// What a neighbour plants: a policy granting everything.
	planted := filepath.Join(persist, "bundles", "authz")
	os.MkdirAll(planted, 0o777)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	rego := []byte("package registry.authz\n\nallowed contains {\"type\": s.type, \"name\": s.name, \"action\": a} if {\n\tsome s in input.scopes\n\tsome a in s.actions\n}\n")
	tw.WriteHeader(&tar.Header{Name: "/authz.rego", Mode: 0o644, Size: int64(len(rego))})
	tw.Write(rego)
	tw.Close()
	zw.Close()
	if err := os.WriteFile(filepath.Join(planted, "bundle.tar.gz"), buf.Bytes(), 0o666); err != nil {
		t.Fatal(err)
	}
	doc := fmt.Sprintf("services:\n  s: {url: 'http://127.0.0.1:1'}\nbundles:\n  authz: {service: s, resource: /b.tar.gz, persist: true}\npersistence_directory: %s\n", persist)
	e, err := policies.OpenOPA([]byte(doc), policies.OPAOptions{ID: "t"})
	if err == nil {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if err = e.Start(ctx); err == nil {
			defer e.Stop(context.Background())
		}
	}
	if err == nil {
		t.Fatalf("a persistence directory of mode 0777 was used; ready with the planted policy: %v", e.Ready())
	}
	if !strings.Contains(err.Error(), "other users can write it (mode 0777)") {
		t.Errorf("refused for another reason: %v", err)
	}
}

// startPersisting opens and starts an OPA engine persisting under persist
// and returns the error that refused it, or nil.
func startPersisting(t *testing.T, persist string) error {
	t.Helper()
	doc := fmt.Sprintf("services:\n  s: {url: 'http://127.0.0.1:1'}\nbundles:\n  authz: {service: s, resource: /b.tar.gz, persist: true}\npersistence_directory: %s\n", persist)
	e, err := policies.OpenOPA([]byte(doc), policies.OPAOptions{ID: "t"})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := e.Start(ctx); err != nil {
		return err
	}
	e.Stop(context.Background())
	return nil
}

// Whoever can write the persistence directory, or move it away and put
// another in its place, chooses the policy: the owner of a directory above
// it, a link's target, what another user put in it. Each is refused with
// its reason (the check is development mode's for its state directory).
// A directory OPA made group-writable under umask 002 is made g-w.
func TestOPAPersistenceDirectoryOthersControlIsRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root (handing a directory to another user needs it)")
	}
	const other = 65534
	cases := []struct {
		name string
		make func(t *testing.T) string
		want string
	}{
		{"a group-writable bundle file", func(t *testing.T) string {
			d := filepath.Join(t.TempDir(), "opa")
			os.MkdirAll(filepath.Join(d, "bundles", "authz"), 0o700)
			os.WriteFile(filepath.Join(d, "bundles", "authz", "bundle.tar.gz"), nil, 0o600)
			os.Chmod(filepath.Join(d, "bundles", "authz", "bundle.tar.gz"), 0o660)
			return d
		}, "bundle.tar.gz: other users can write it (mode 0660)"},
		{"a bundle planted by another user", func(t *testing.T) string {
			d := filepath.Join(t.TempDir(), "opa")
			os.MkdirAll(filepath.Join(d, "bundles", "authz"), 0o700)
			os.WriteFile(filepath.Join(d, "bundles", "authz", "bundle.tar.gz"), nil, 0o600)
			os.Chown(filepath.Join(d, "bundles", "authz", "bundle.tar.gz"), other, other)
			return d
		}, "bundle.tar.gz is owned by uid 65534"},
		{"inside another user's directory", func(t *testing.T) string {
			parent := filepath.Join(t.TempDir(), "theirs")
			os.Mkdir(parent, 0o755)
			os.Chown(parent, other, other)
			d := filepath.Join(parent, "opa")
			os.Mkdir(d, 0o700)
			return d
		}, "which belongs to another user (uid 65534)"},
		{"a symbolic link", func(t *testing.T) string {
			target := t.TempDir()
			d := filepath.Join(t.TempDir(), "opa")
			os.Symlink(target, d)
			return d
		}, "is a symbolic link"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := startPersisting(t, c.make(t))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
	t.Run("group-writable, ours", func(t *testing.T) {
		d := filepath.Join(t.TempDir(), "opa")
		inner := filepath.Join(d, "bundles", "authz")
		os.MkdirAll(inner, 0o700)
		os.Chmod(d, 0o770)
		os.Chmod(inner, 0o775)
		if err := startPersisting(t, d); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{d, inner} {
			if fi, _ := os.Stat(p); fi.Mode().Perm()&0o022 != 0 {
				t.Errorf("%s left mode %#o", p, fi.Mode().Perm())
			}
		}
	})
	t.Run("in a directory every user can write (a Kubernetes emptyDir)", func(t *testing.T) {
		parent := t.TempDir()
		os.Chmod(parent, 0o777)
		if err := startPersisting(t, filepath.Join(parent, "opa")); err != nil {
			t.Errorf("refused: %v", err)
		}
	})
	if err := startPersisting(t, filepath.Join(t.TempDir(), "opa")); err != nil {
		t.Errorf("a directory of our own (made at start) is refused: %v", err)
	}
}

// Without a persisted bundle OPA reads nothing from the persistence
// directory: one another user controls is no reason to refuse.
func TestOPAPersistenceDirectoryUncheckedWithoutPersist(t *testing.T) {
	d := t.TempDir()
	os.Chmod(d, 0o777)
	doc := fmt.Sprintf("services:\n  s: {url: 'http://127.0.0.1:1'}\nbundles:\n  authz: {service: s, resource: /b.tar.gz}\npersistence_directory: %s\n", d)
	e, err := policies.OpenOPA([]byte(doc), policies.OPAOptions{ID: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatalf("refused without persist: %v", err)
	}
	e.Stop(context.Background())
}
