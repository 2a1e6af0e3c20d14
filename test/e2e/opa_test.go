package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// opaBundleToken is the bearer token the OPA bundle server asks for; it
// must never show in the broker's log or /readyz.
const opaBundleToken = "s3cret-bundle-token-e2e"

// opaBundleServer serves bundles by path to whoever sends opaBundleToken,
// as an OPA bundle service with bearer credentials does; it counts the
// requests it refused.
func opaBundleServer(t *testing.T, bundles map[string][]byte) (url string, refused *atomic.Int64) {
	t.Helper()
	refused = &atomic.Int64{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, ok := bundles[r.URL.Path]
		switch {
		case r.Header.Get("Authorization") != "Bearer "+opaBundleToken:
			refused.Add(1)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
		case !ok:
			http.NotFound(w, r)
		default:
			w.Write(data)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, refused
}

// buildBundle builds a bundle with `tollgate bundle build` from files,
// .manifest (revision, roots) included.
func buildBundle(t *testing.T, files map[string]string) []byte {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "bundle.tar.gz")
	tollgate(t, "", "bundle", "build", "-o", out, dir)
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestOPASectionGrantsTokensEndToEnd: a broker configured with an opa:
// section as an OPA sidecar's (a service with bearer credentials, two
// bundles with their roots, the shipped policy in one and the projects in
// the other) is ready once both are active, says so per bundle on /readyz,
// and its tokens work on distribution 3. The bearer token shows nowhere.
func TestOPASectionGrantsTokensEndToEnd(t *testing.T) {
	f := flavors[1] // distribution 3
	tool(t, f.bin)
	policyDir := t.TempDir()
	writePolicy(t, policyDir, "{}")
	policyFiles := map[string]string{".manifest": `{"revision": "p1", "roots": ["registry/authz"]}`}
	rego, _ := filepath.Glob(filepath.Join(policyDir, "*.rego"))
	for _, f := range rego {
		data, _ := os.ReadFile(f)
		policyFiles[filepath.Base(f)] = string(data)
	}
	url, refused := opaBundleServer(t, map[string][]byte{
		"/bundles/policy.tar.gz": buildBundle(t, policyFiles),
		"/bundles/data.tar.gz": buildBundle(t, map[string]string{
			".manifest": `{"revision": "d1", "roots": ["registry/projects", "registry/system_admins"]}`,
			"data.json": testPolicyData,
		}),
	})
	b := startBrokerWith(t, brokerOptions{opa: fmt.Sprintf(`opa:
  services:
    acme:
      url: %s
      credentials:
        bearer: {token: %s}
  bundles:
    policy: {service: acme, resource: /bundles/policy.tar.gz, polling: {min_delay_seconds: 1, max_delay_seconds: 2}}
    data: {service: acme, resource: /bundles/data.tar.gz, polling: {min_delay_seconds: 1, max_delay_seconds: 2}}
`, url, opaBundleToken)})

	code, body := readyz(t, b)
	for _, want := range []string{"bundle data: revision d1 (downloaded", "bundle policy: revision p1 (downloaded"} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("/readyz: %d, want 200 with %q:\n%s", code, want, body)
		}
	}
	r := startRegistry(t, f, b)
	pushImage(t, r, b.getToken(t, f.service, "alice", "repository:team/app:pull,push"), "team/app", "v1")
	bob := b.getToken(t, f.service, "bob", "repository:team/app:pull,push")
	expectAccess(t, bob, []access{{"repository", "team/app", []string{"pull"}}})
	do(t, http.MethodGet, r.url("/v2/team/app/manifests/v1"), bob, nil, "Accept", ociManifest).expect(t, http.StatusOK)
	expectAccess(t, b.getToken(t, f.service, "carol", "repository:team/app:pull"), nil)

	if refused.Load() != 0 {
		t.Errorf("the bundle server refused %d requests: the bearer credentials were not sent", refused.Load())
	}
	logged, _ := os.ReadFile(b.proc.log)
	if strings.Contains(string(logged), opaBundleToken) || strings.Contains(body, opaBundleToken) {
		t.Errorf("the bundle service's bearer token shows in the log or /readyz")
	}
}
