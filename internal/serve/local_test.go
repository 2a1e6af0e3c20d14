package serve

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/test/testenv"
)

// TestLocalTarballReloadsWithinItsLimits: a bundle tarball as
// policy.source is loaded again when it is replaced; a replacement past
// max_bundle_bytes in all (each file within it, which is all OPA checks)
// is refused before OPA reads it into memory, counted as a failure, and
// the last good revision keeps serving.
func TestLocalTarballReloadsWithinItsLimits(t *testing.T) {
	path := testConfig(t)
	dir := filepath.Dir(path)
	tarball := filepath.Join(dir, "policy.tar.gz")
	build := func(revision string) []byte {
		t.Helper()
		var buf bytes.Buffer
		if err := bundles.Build(context.Background(), filepath.Join(dir, "policy"), revision, nil, &buf); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	// Replaced as a deployment would: a new file renamed over the old.
	replace := func(data []byte) {
		t.Helper()
		if err := os.WriteFile(tarball+".new", data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tarball+".new", tarball); err != nil {
			t.Fatal(err)
		}
	}
	replace(build("r1"))
	body, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(body), "  source: policy\n",
		"  source: policy.tar.gz\n  max_bundle_bytes: 2MiB\n  polling: {min_delay: 20ms, max_delay: 20ms}\n", 1)), 0o600)
	rt := newTestRuntime(t, path)
	if r := rt.PolicyRevision(); r != "r1" {
		t.Fatalf("revision %q, want r1", r)
	}
	replace(build("r2"))
	waitFor(t, "revision r2", func() bool { return rt.PolicyRevision() == "r2" })

	replace(testenv.Bomb(t, 3, 1))
	failing := func() bool { return slices.Contains(scrape(t, rt), "tollgate_policy_reload_failures 1") }
	waitFor(t, "the bomb to be refused", failing)
	time.Sleep(100 * time.Millisecond) // polls that must not try it again
	if r := rt.PolicyRevision(); r != "r2" || !failing() {
		t.Fatalf("after a bomb: revision %q, want r2; metrics %v", r, scrape(t, rt))
	}
	if detail := strings.Join(rt.readyDetail(), "\n"); !strings.Contains(detail, "limit") {
		t.Fatalf("readyz detail does not say why:\n%s", detail)
	}
}
