package serve

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/open-policy-agent/opa/v1/util"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/internal/config"
	"github.com/tollgate/tollgate/test/testenv"
)

// A URL policy.source with a bearer token, a signature and polling is, as
// ShortFormOPA writes it, exactly the opa: document docs/opa.md gives for
// it; run by OPA's plugins it decides as the short form's own loader does,
// and as the documented document does, with the same /readyz bundle line.
func TestShortFormMapsOntoItsDocumentedOPAConfig(t *testing.T) {
	private, public := testenv.WriteES256KeyPair(t, t.TempDir())
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "authz.rego"), []byte(opaTestPolicy), 0o644)
	os.WriteFile(filepath.Join(dir, "data.json"), []byte(`{"grants": {"dev": ["pull"], "ops": ["pull", "push"]}}`), 0o644)
	var bundle bytes.Buffer
	if err := bundles.Build(context.Background(), dir, "rev-1", &bundles.Signing{Key: private, Algorithm: "ES256", KeyID: "tg"}, &bundle); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t0ken" || r.URL.RequestURI() != "/b/authz.tar.gz?sig=abc" {
			http.Error(w, "who are you", http.StatusForbidden)
			return
		}
		w.Write(bundle.Bytes())
	}))
	defer srv.Close()

	path := testConfig(t)
	raw, _ := os.ReadFile(path)
	short := fmt.Sprintf(`  source: %s/b/authz.tar.gz?sig=abc
  bearer_token: t0ken
  signing: {public_key: %s, algorithm: ES256, key_id: tg}
  polling: {min_delay: 1s, max_delay: 1500ms, timeout: 5s}
`, srv.URL, public)
	os.WriteFile(path, []byte(strings.Replace(string(raw), "  source: policy\n", short, 1)), 0o600)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	mapped, err := cfg.ShortFormOPA()
	if err != nil {
		t.Fatal(err)
	}

	pub, _ := os.ReadFile(public)
	documented := fmt.Sprintf(`services:
  tollgate:
    url: %s/b
    response_header_timeout_seconds: 5
    credentials: {bearer: {token: t0ken}}
bundles:
  tollgate:
    service: tollgate
    resource: authz.tar.gz?sig=abc
    polling: {min_delay_seconds: 1, max_delay_seconds: 2}
    signing: {keyid: tg}
keys:
  tg:
    algorithm: ES256
    key: |
      %s
`, srv.URL, strings.ReplaceAll(strings.TrimSpace(string(pub)), "\n", "\n      "))
	var got, want map[string]any
	if err := util.Unmarshal(mapped, &got); err != nil {
		t.Fatal(err)
	}
	if err := util.Unmarshal([]byte(documented), &want); err != nil {
		t.Fatal(err)
	}
	// The PEM as read from the file, and as a YAML block, differ in the
	// final newline only.
	for _, doc := range []map[string]any{got, want} {
		k := doc["keys"].(map[string]any)["tg"].(map[string]any)
		k["key"] = strings.TrimSpace(k["key"].(string))
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the short form maps onto\n%s\nnot the documented\n%s", mapped, documented)
	}

	rt := newTestRuntime(t, path) // the short form, as the broker runs it
	viaDocs := openTestOPA(t, documented)
	waitFor(t, "both to activate the bundle", func() bool { return rt.ready() == nil && viaDocs.Ready() })
	ctx := context.Background()
	ours, err := rt.authorizer.Authorize(ctx, opaTestInput)
	if err != nil {
		t.Fatal(err)
	}
	d, err := viaDocs.Authorize(ctx, opaTestInput)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(d.Allowed, d.TokenTTL, d.Revision) != fmt.Sprint(ours.Allowed, ours.TokenTTL, ours.Revision) || !ours.Allowed[0]["pull"] {
		t.Errorf("the documented opa: section decided %+v, the short form %+v", d, ours)
	}
	when := regexp.MustCompile(`downloaded [^)]*`)
	shortLines := when.ReplaceAllString(strings.Join(rt.readyDetail(), "\n"), "downloaded T")
	docs := when.ReplaceAllString(strings.Join(opaStatus(ctx, viaDocs), "\n"), "downloaded T")
	wantLines := "policy source: " + srv.URL + "/b/authz.tar.gz?xxxxx\n" + docs
	if !strings.HasPrefix(shortLines, wantLines) || !strings.HasPrefix(docs, "bundle tollgate: revision rev-1 (downloaded T)") {
		t.Errorf("/readyz of the short form:\n%s\nwant, as the documented opa: section's:\n%s", shortLines, wantLines)
	}
}

// The policy metrics of a URL source come from OPA's bundle status, in the
// series the alerts read: no policy and failures counted while the server
// fails, loaded and no failure once it serves the bundle.
func TestShortFormPolicyMetricsFollowTheBundle(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "authz.rego"), []byte(opaTestPolicy), 0o644)
	var bundle bytes.Buffer
	if err := bundles.Build(context.Background(), dir, "rev-9", nil, &bundle); err != nil {
		t.Fatal(err)
	}
	var up atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		w.Write(bundle.Bytes())
	}))
	defer srv.Close()
	path := testConfig(t)
	raw, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(raw), "  source: policy\n",
		"  source: "+srv.URL+"/b.tar.gz\n  polling: {min_delay: 1s, max_delay: 1s, timeout: 1s}\n", 1)), 0o600)
	rt := newTestRuntime(t, path)

	has := func(series ...string) func() bool {
		return func() bool {
			got := strings.Join(scrape(t, rt), "\n")
			for _, s := range series {
				if !strings.Contains(got, s) {
					return false
				}
			}
			return true
		}
	}
	counted := regexp.MustCompile(`(?m)^tollgate_policy_reload_failures [1-9]`)
	waitFor(t, "no policy and failures counted", func() bool {
		return has("tollgate_policy_loaded 0")() && counted.MatchString(strings.Join(scrape(t, rt), "\n"))
	})
	for _, s := range scrape(t, rt) {
		if s == "tollgate_policy_last_reload_failure_timestamp_seconds 0" {
			t.Error("failures counted without their time")
		}
	}
	up.Store(true)
	waitFor(t, "the bundle loaded", has("tollgate_policy_loaded 1", "tollgate_policy_reload_failures 0",
		`tollgate_policy_revision_info{revision="rev-9"} 1`))
}
