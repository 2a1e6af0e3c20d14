package e2e

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tollgate/tollgate/test/opatest"
	"github.com/tollgate/tollgate/test/testenv"
)

// opaBundleToken is the bearer token the OPA bundle server asks for; it
// must never show in the broker's log or /readyz.
const opaBundleToken = "s3cret-bundle-token-e2e"

// opaBundleServer serves bundles by path to whoever sends opaBundleToken,
// as an OPA bundle service with bearer credentials does; it counts the
// requests it refused. It takes decision-log uploads on /logs, to logs.
func opaBundleServer(t *testing.T, bundles map[string][]byte, logs *opatest.Collector) (url string, refused *atomic.Int64) {
	t.Helper()
	refused = &atomic.Int64{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, ok := bundles[r.URL.Path]
		switch {
		case r.Header.Get("Authorization") != "Bearer "+opaBundleToken:
			refused.Add(1)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
		case r.Method == http.MethodPost && r.URL.Path == "/logs":
			logs.ServeHTTP(w, r)
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
	logs := opatest.New(t, opatest.Keep)
	url, refused := opaBundleServer(t, map[string][]byte{
		"/bundles/policy.tar.gz": buildBundle(t, policyFiles),
		"/bundles/data.tar.gz": buildBundle(t, map[string]string{
			".manifest": `{"revision": "d1", "roots": ["registry/projects", "registry/system_admins"]}`,
			"data.json": testPolicyData,
		}),
	}, logs)
	b := startBrokerWith(t, brokerOptions{opa: fmt.Sprintf(`opa:
  services:
    acme:
      url: %s
      credentials:
        bearer: {token: %s}
  bundles:
    policy: {service: acme, resource: /bundles/policy.tar.gz, persist: true, polling: {min_delay_seconds: 1, max_delay_seconds: 2}}
    data: {service: acme, resource: /bundles/data.tar.gz, polling: {min_delay_seconds: 1, max_delay_seconds: 2}}
  decision_logs: {service: acme, resource: /logs, reporting: {min_delay_seconds: 1, max_delay_seconds: 1}}
`, url, opaBundleToken)})

	code, body := readyz(t, b)
	for _, want := range []string{"bundle data: revision d1 (downloaded", "bundle policy: revision p1 (downloaded"} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("/readyz: %d, want 200 with %q:\n%s", code, want, body)
		}
	}
	// With no persistence_directory, a persisted bundle goes under
	// state_dir (OPA's own default, .opa in the working directory, is / for
	// a systemd service).
	persisted := 0
	filepath.WalkDir(filepath.Join(b.dir, "state", "opa"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			persisted++
		}
		return nil
	})
	if persisted == 0 {
		t.Errorf("the persisted policy bundle is not under state_dir/opa")
	}
	r := startRegistry(t, f, b)
	pushImage(t, r, b.getToken(t, f.service, "alice", "repository:team/app:pull,push"), "team/app", "v1")
	bob := b.getToken(t, f.service, "bob", "repository:team/app:pull,push")
	expectAccess(t, bob, []access{{"repository", "team/app", []string{"pull"}}})
	do(t, http.MethodGet, r.url("/v2/team/app/manifests/v1"), bob, nil, "Accept", ociManifest).expect(t, http.StatusOK)
	expectAccess(t, b.getToken(t, f.service, "carol", "repository:team/app:pull"), nil)

	// carol's decision, uploaded by OPA's decision_logs plugin: the peer
	// with its port, both bundles, tollgate's facts under custom.tollgate.
	status, _, _ := b.askToken(t, f.service, "carol", "repository:team/app:pull")
	if status != http.StatusOK {
		t.Fatalf("carol's token request: %d", status)
	}
	e := logs.Await(t, "carol's request", func(e map[string]any) bool {
		id, _ := opatest.Input(e)["identity"].(map[string]any)
		return id["subject"] == "carol"
	})
	tg := opatest.Tollgate(e)
	rid, _ := tg["request_id"].(string)
	host, port, _ := net.SplitHostPort(fmt.Sprint(e["requested_by"]))
	if e["path"] != "registry/authz/allowed" || host != "127.0.0.1" || port == "" || tg["service"] != f.service ||
		rid == "" || fmt.Sprint(e["bundles"]) != "map[data:map[revision:d1] policy:map[revision:p1]]" {
		t.Errorf("carol's decision-log event: %v", e)
	}

	if refused.Load() != 0 {
		t.Errorf("the bundle server refused %d requests: the bearer credentials were not sent", refused.Load())
	}
	logged := b.settledLog(t)
	if strings.Contains(logged, opaBundleToken) || strings.Contains(body, opaBundleToken) {
		t.Errorf("the bundle service's bearer token shows in the log or /readyz")
	}
}

// startPlainRegistry starts distribution 3 without auth, as a registry
// holding policy bundles for OPA's OCI downloader, and returns its host.
func startPlainRegistry(t *testing.T) string {
	t.Helper()
	f := flavors[1]
	dir := t.TempDir()
	port := freePort(t)
	cfg := fmt.Sprintf("version: 0.1\nlog: {level: info, accesslog: {disabled: true}}\nstorage:\n  filesystem: {rootdirectory: %q}\nhttp:\n  addr: \"127.0.0.1:%d\"\n",
		filepath.Join(dir, "data"), port)
	cfgFile := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	proc := startProcess(t, f.name, dir, []string{"OTEL_TRACES_EXPORTER=none"}, tool(t, f.bin), "serve", cfgFile)
	host := fmt.Sprintf("localhost:%d", port)
	waitFor200(t, proc, "http://"+host+"/v2/")
	return host
}

// orasPush pushes bundle as OPA's OCI bundle artifact: an image config and
// one tar+gzip layer.
func orasPush(t *testing.T, ref string, bundle []byte) {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}"), 0o644)
	os.WriteFile(filepath.Join(dir, "bundle.tar.gz"), bundle, 0o644)
	cmd := exec.Command(tool(t, "oras"), "push", "--plain-http", ref,
		"--config", "config.json:application/vnd.oci.image.config.v1+json",
		"bundle.tar.gz:application/vnd.oci.image.layer.v1.tar+gzip")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("oras push %s: %v\n%s", ref, err, out)
	}
}

// TestOPABundleFromAnOCIRegistry: a bundle built and signed by `opa build`
// and pushed by oras to distribution 3 as an OCI artifact is, with the
// same OPA configuration, the bundle of `opa run` and of the broker, which
// grants by it; a bomb pushed the same way is refused by tollgate's limits
// before OPA reads it, and /readyz says which.
func TestOPABundleFromAnOCIRegistry(t *testing.T) {
	needTools(t, "oras", "opa")
	f := flavors[1]
	host := startPlainRegistry(t)
	private, public := testenv.WriteES256KeyPair(t, t.TempDir())
	src := t.TempDir()
	writePolicy(t, src, testPolicyData)
	signed := filepath.Join(t.TempDir(), "bundle.tar.gz")
	build := exec.Command(tool(t, "opa"), "build", "--bundle", ".", "--revision", "oci-1",
		"--signing-key", private, "--signing-alg", "ES256", "-o", signed)
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("opa build: %v\n%s", err, out)
	}
	data, _ := os.ReadFile(signed)
	orasPush(t, host+"/policies/authz:v1", data)
	orasPush(t, host+"/policies/bomb:v1", testenv.Bomb(t, 2, 48))
	pub, _ := os.ReadFile(public)
	// doc is OPA's configuration document, as an OPA sidecar reads it.
	doc := func(repo, signing string) string {
		return fmt.Sprintf(`services:
  registry: {url: "http://%s", type: oci}
bundles:
  authz: {service: registry, resource: "%s/policies/%s:v1", polling: {min_delay_seconds: 1, max_delay_seconds: 2}%s}
keys:
  es: {algorithm: ES256, key: %q}
`, host, host, repo, signing, pub)
	}
	section := func(doc string) string {
		return "opa:\n  " + strings.ReplaceAll(strings.TrimSpace(doc), "\n", "\n  ") + "\n"
	}

	cfgFile := filepath.Join(t.TempDir(), "opa.yaml")
	os.WriteFile(cfgFile, []byte(doc("authz", ", signing: {keyid: es}")), 0o644)
	opaPort := freePort(t)
	opa := startProcess(t, "opa", t.TempDir(), nil, tool(t, "opa"), "run", "--server", "--addr", fmt.Sprintf("127.0.0.1:%d", opaPort), "-c", cfgFile)
	waitFor200(t, opa, fmt.Sprintf("http://127.0.0.1:%d/health?bundles", opaPort))
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/data/system/bundles/authz/manifest/revision", opaPort))
	if err != nil {
		t.Fatal(err)
	}
	var rev struct{ Result string }
	json.NewDecoder(resp.Body).Decode(&rev)
	resp.Body.Close()
	if rev.Result != "oci-1" {
		t.Errorf("opa run activated revision %q, want oci-1", rev.Result)
	}

	b := startBrokerWith(t, brokerOptions{opa: section(doc("authz", ", signing: {keyid: es}"))})
	if code, body := readyz(t, b); code != http.StatusOK || !strings.Contains(body, "bundle authz: revision oci-1 (downloaded") {
		t.Errorf("/readyz: %d\n%s", code, body)
	}
	expectAccess(t, b.getToken(t, f.service, "alice", "repository:team/app:pull,push"),
		[]access{{"repository", "team/app", []string{"pull", "push"}}})

	bombed := startBrokerWith(t, brokerOptions{opa: section(doc("bomb", "")), startsUnready: true})
	waitUntil(t, bombed.proc, "the bomb refused on /readyz", func() error {
		if code, body := readyz(t, bombed); code != http.StatusServiceUnavailable || !strings.Contains(body, "bundle exceeds its limit: more than 67108864 bytes uncompressed") {
			return fmt.Errorf("/readyz: %d\n%s", code, body)
		}
		return nil
	})
}
