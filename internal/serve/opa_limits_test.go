package serve

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/policies"
	"github.com/tollgate/tollgate/test/testenv"
)

// refusesBombs gives, for each of testenv.HostileBundles, the document
// doc(bomb) to tollgate and requires the bomb refused as the download path
// refuses it: no bundle active, /readyz naming the limit, the heap small.
func refusesBombs(t *testing.T, doc func(t *testing.T, bomb []byte) string) {
	const most = 16 << 20 // a quarter of the size limit
	for _, bc := range testenv.HostileBundles(t) {
		t.Run(bc.Name, func(t *testing.T) {
			d := doc(t, bc.Data)
			var lines string
			ready := false
			grew := testenv.HeapGrowth(func() {
				e := openLimitedOPA(t, d, nil)
				waitFor(t, "the bundle to be activated or refused", func() bool {
					lines = strings.Join(opaStatus(context.Background(), e), "\n")
					ready = e.Ready()
					return ready || strings.Contains(lines, "last error")
				})
			})
			t.Logf("the heap grew by %d KiB: %s", grew>>10, lines)
			if ready || !strings.Contains(lines, "bundle exceeds its limit") || !strings.Contains(lines, bc.Want) {
				t.Errorf("ready %v, /readyz %q: want not ready and the limit on %s named", ready, lines, bc.Want)
			}
			if grew > most {
				t.Errorf("the heap grew by %d MiB, want at most %d MiB", grew>>20, most>>20)
			}
		})
	}
}

// TestOPAFileBundleBombsAreRefused: a bundle OPA would read from a
// file:// resource is checked against the limits first, and refused at
// start with the limit named: OPA reads it once, whole, at start.
func TestOPAFileBundleBombsAreRefused(t *testing.T) {
	const most = 16 << 20 // a quarter of the size limit
	for _, bc := range testenv.HostileBundles(t) {
		t.Run(bc.Name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "authz.tar.gz")
			if err := os.WriteFile(f, bc.Data, 0o600); err != nil {
				t.Fatal(err)
			}
			doc := fmt.Sprintf("bundles:\n  authz: {resource: 'file://%s'}\npersistence_directory: %s\n", f, t.TempDir())
			var err error
			grew := testenv.HeapGrowth(func() {
				var e *policies.OPA
				if e, err = policies.OpenOPA([]byte(doc), policies.OPAOptions{ID: "test", MaxFileBytes: bundles.DefaultMaxBytes}); err == nil {
					e.Start(context.Background())
					waitFor(t, "the file bundle", e.Ready)
					e.Stop(context.Background())
				}
			})
			t.Logf("the heap grew by %d KiB: %v", grew>>10, err)
			if err == nil || !strings.Contains(err.Error(), "bundle exceeds its limit") || !strings.Contains(err.Error(), bc.Want) {
				t.Errorf("opening: %v, want the limit on %s named", err, bc.Want)
			}
			if grew > most {
				t.Errorf("the heap grew by %d MiB, want at most %d MiB", grew>>20, most>>20)
			}
		})
	}
}

// TestOPADiscoveredServiceBombsAreRefused: a service that a discovery
// bundle adds is bounded as one of the boot configuration is.
func TestOPADiscoveredServiceBombsAreRefused(t *testing.T) {
	refusesBombs(t, func(t *testing.T, bomb []byte) string {
		bombs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(bomb) }))
		t.Cleanup(bombs.Close)
		dir := t.TempDir()
		conf := fmt.Sprintf(`{"services": {"more": {"url": %q}}, "bundles": {"authz": {"service": "more", "resource": "/b.tar.gz"}}}`, bombs.URL)
		if err := os.WriteFile(filepath.Join(dir, "data.json"), []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		var discovery bytes.Buffer
		if err := bundles.Build(context.Background(), dir, "d-1", nil, &discovery); err != nil {
			t.Fatal(err)
		}
		boot := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(discovery.Bytes()) }))
		t.Cleanup(boot.Close)
		return fmt.Sprintf("services:\n  boot: {url: %s}\ndiscovery: {service: boot, resource: /discovery.tar.gz}\npersistence_directory: %s\n",
			boot.URL, t.TempDir())
	})
}

// TestOPADiscoveryMayRepeatItsService: a discovered configuration that
// repeats the discovery service, credentials and all (OPA refuses any
// change to it), is applied, and its bundle is activated through tollgate's
// limits with the service's credentials.
func TestOPADiscoveryMayRepeatItsService(t *testing.T) {
	const token = "discovery-token"
	build := func(files map[string]string) []byte {
		dir := t.TempDir()
		for name, content := range files {
			os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600)
		}
		var buf bytes.Buffer
		if err := bundles.Build(context.Background(), dir, "rev-1", nil, &buf); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	var url string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("Authorization") != "Bearer "+token:
			http.Error(w, "unauthorized", http.StatusUnauthorized)
		case r.URL.Path == "/discovery.tar.gz":
			w.Write(build(map[string]string{"data.json": fmt.Sprintf(`{"services": {"boot": {"url": %q, "credentials": {"bearer": {"token": %q}}}},
				"bundles": {"authz": {"service": "boot", "resource": "/authz.tar.gz"}}}`, url, token)}))
		default:
			w.Write(build(map[string]string{"authz.rego": opaTestPolicy, "data.json": `{"grants": {"dev": ["pull"]}}`}))
		}
	}))
	t.Cleanup(srv.Close)
	url = srv.URL
	e := openLimitedOPA(t, fmt.Sprintf(`services:
  boot: {url: %s, credentials: {bearer: {token: %s}}}
discovery: {service: boot, resource: /discovery.tar.gz}
persistence_directory: %s
`, srv.URL, token, t.TempDir()), nil)
	waitFor(t, "the discovered bundle", e.Ready)
	if d, err := e.Authorize(context.Background(), opaTestInput); err != nil || !d.Allowed[0]["pull"] {
		t.Fatalf("decided %+v, %v", d, err)
	}
}
