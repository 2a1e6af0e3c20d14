package policies_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/policies"
	"github.com/tollgate/tollgate/scope"
)

const localPolicy = `package registry.authz

allowed contains {"type": s.type, "name": s.name, "action": "pull"} if {
	some s in input.scopes
	data.open[s.name]
}
`

// A test reading the whole input would turn the decision cache off were it
// served; OPA's file loader compiles it in.
const localPolicyTest = `package registry.authz_test

test_reads_the_whole_input if {
	x := input
	data.registry.authz.allowed with input as x
}
`

// writeConfigMapVersion writes one version of a ConfigMap mount as the
// kubelet does: the files in a hidden directory, then ..data swapped to it.
func writeConfigMapVersion(t *testing.T, dir, version, open, revision string) {
	t.Helper()
	hidden := filepath.Join(dir, "..2026_"+version)
	files := map[string]string{
		"authz.rego": localPolicy, "authz_test.rego": localPolicyTest,
		"data.json": fmt.Sprintf(`{"open": {%q: true}}`, open), ".manifest": fmt.Sprintf(`{"revision": %q}`, revision),
	}
	if err := os.Mkdir(hidden, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(hidden, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Base(hidden), filepath.Join(dir, "..tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

// TestOPAReloadsAConfigMapMount: a local bundle given to OPA's bundle plugin
// as file://<dir>/..data/ with trigger: manual is read through the symlink
// (once, not a second time as the hidden directory), loaded again by
// Reload after the kubelet swapped ..data, and a broken version keeps the
// last good one serving. Test files do not turn the decision cache off.
func TestOPAReloadsAConfigMapMount(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeConfigMapVersion(t, dir, "1", "a", "one")
	doc := fmt.Sprintf("bundles:\n  tollgate: {resource: 'file://%s/', trigger: manual}\n", filepath.Join(dir, "..data"))
	e, err := policies.OpenOPA([]byte(doc), policies.OPAOptions{ID: "test", CacheSize: 10, CacheTTL: time.Minute,
		PersistenceDirectory: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Stop(ctx)
	waitFor(t, "the first activation", e.Ready)
	pull := func(name string) bool {
		t.Helper()
		d, err := e.Authorize(ctx, authz.Input{Scopes: []scope.Scope{{Type: "repository", Name: name, Actions: []string{"pull"}}}})
		if err != nil {
			t.Fatal(err)
		}
		return d.Allowed[0]["pull"]
	}
	if !pull("a") || pull("b") || e.Revision() != "one" {
		t.Fatalf("revision %q: want one, a open and b not", e.Revision())
	}
	if why := e.UncacheableReason(); why != "" {
		t.Errorf("decision cache off: %s; the test file must not count", why)
	}

	writeConfigMapVersion(t, dir, "2", "b", "two")
	if err := e.Reload(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if !pull("b") || pull("a") || e.Revision() != "two" {
		t.Fatalf("after the swap: revision %q, want two, b open and a not", e.Revision())
	}

	writeConfigMapVersion(t, dir, "3", "c", "three")
	if err := os.WriteFile(filepath.Join(dir, "..2026_3", "authz.rego"), []byte("package registry.authz\nallowed contains"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.Reload(ctx, nil); err == nil {
		t.Error("a broken version reloaded without error")
	}
	if !pull("b") || e.Revision() != "two" {
		t.Errorf("after a broken version: revision %q, want two still serving", e.Revision())
	}
	if b := e.Bundles(ctx); len(b) != 1 || b[0].LastError == "" || b[0].Revision != "two" {
		t.Errorf("bundle state %+v, want revision two and the error", b)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
