package bundles_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/policies"
)

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	p := filepath.Join(dir, name)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadDirReadsPolicyAndDataAndSkipsTests(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "authz.rego", "package registry.authz\nallowed contains 1 if input.x\n")
	write(t, dir, "authz_test.rego", "package registry.authz_test\ntest_x if true\n")
	write(t, dir, "data.json", `{"registry": {"projects": {"a": {}}}}`)
	write(t, dir, "teams/data.yaml", "members: [alice]\n")
	b, err := bundles.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Modules) != 1 {
		t.Fatalf("modules %v, want only authz.rego", b.Modules)
	}
	if _, ok := b.Data["registry"]; !ok {
		t.Fatalf("data %v lacks registry", b.Data)
	}
	if teams, _ := b.Data["teams"].(map[string]any); teams["members"] == nil {
		t.Fatalf("data.yaml in teams/ not mounted at data.teams: %v", b.Data)
	}
	if !strings.HasPrefix(b.Revision, "sha256:") {
		t.Fatalf("revision %q", b.Revision)
	}

	// Same content, same revision; any change, another revision.
	again, _ := bundles.LoadDir(dir)
	if again.Revision != b.Revision {
		t.Fatal("revision is not stable for the same content")
	}
	write(t, dir, "data.json", `{"registry": {"projects": {"b": {}}}}`)
	changed, _ := bundles.LoadDir(dir)
	if changed.Revision == b.Revision {
		t.Fatal("a data change kept the revision")
	}
}

func TestLoadDirUsesManifestRevision(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "p.rego", "package registry.authz\nallowed contains 1 if input.x\n")
	write(t, dir, ".manifest", `{"revision": "v42"}`)
	b, err := bundles.LoadDir(dir)
	if err != nil || b.Revision != "v42" {
		t.Fatalf("revision %v, %v", b, err)
	}
}

func TestLoadDirErrors(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "bad.rego", "package registry.authz\nallowed contains if {\n")
	if _, err := bundles.LoadDir(dir); err == nil || !strings.Contains(err.Error(), "bad.rego") {
		t.Fatalf("parse error not reported with the file name: %v", err)
	}
	if _, err := bundles.LoadDir(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing directory loaded")
	}
	write(t, dir, "file", "x")
	if _, err := bundles.LoadDir(filepath.Join(dir, "file")); err == nil {
		t.Fatal("a file loaded as a directory")
	}
}

func TestEmbeddedDefaultPolicyLoads(t *testing.T) {
	b, err := bundles.LoadFS(policies.DefaultFS(), "default")
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Modules) != 1 || b.Data["registry"] == nil {
		t.Fatalf("embedded default: %d modules, data %v", len(b.Modules), b.Data)
	}
}

// TestLoadDirReadsAConfigMapMount: Kubernetes mounts a ConfigMap as
// symlinks (name -> ..data/name, ..data -> ..<timestamp>) to a hidden
// directory it swaps on update. The files are read through the symlinks,
// and the hidden directories are not read a second time.
func TestLoadDirReadsAConfigMapMount(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "..2026_11_29_10_00_00.1/authz.rego", "package registry.authz\ndefault allow := false\n")
	write(t, dir, "..2026_11_29_10_00_00.1/data.json", `{"registry": {"projects": {"a": {}}}}`)
	if err := os.Symlink("..2026_11_29_10_00_00.1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"authz.rego", "data.json"} {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	b, err := bundles.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Modules) != 1 {
		t.Errorf("modules %v, want authz.rego once", b.Modules)
	}
	if _, ok := b.Data["registry"]; !ok || len(b.Data) != 1 {
		t.Errorf("data %v, want only registry at the root", b.Data)
	}
}
