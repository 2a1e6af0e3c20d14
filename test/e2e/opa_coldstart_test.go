package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/test/opatest"
)

func tokenID(t *testing.T, token string) string {
	t.Helper()
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &c); err != nil || c.ID == "" {
		t.Fatalf("token %q: no jti (%v)", token, err)
	}
	return c.ID
}

// TestOPAColdStartWithTheBundleServerDown (issue 18's acceptance): a
// broker whose opa: section persists its bundle activates and persists it;
// stopped, and started again with the bundle server gone, it serves tokens
// by the persisted revision, which /readyz names as the persisted copy;
// the decision-log event of each token carries its jti. A cold start with
// nothing persisted refuses (503, the JSON error), is not ready, and logs
// the refusal as an OPA error entry with no token id.
func TestOPAColdStartWithTheBundleServerDown(t *testing.T) {
	f := flavors[1] // distribution 3
	src := t.TempDir()
	writePolicy(t, src, testPolicyData)
	files := map[string]string{".manifest": `{"revision": "cold-1"}`}
	entries, _ := os.ReadDir(src)
	for _, e := range entries {
		data, _ := os.ReadFile(filepath.Join(src, e.Name()))
		files[e.Name()] = string(data)
	}
	bundle := buildBundle(t, files)
	bundles := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/bundles/authz.tar.gz" {
			http.NotFound(w, r)
			return
		}
		w.Write(bundle)
	}))
	defer bundles.Close()
	collector := opatest.Start(t, opatest.Keep, nil)
	section := fmt.Sprintf(`opa:
  services:
    bundles: {url: %s}
    collector: {url: %s}
  bundles:
    authz: {service: bundles, resource: /bundles/authz.tar.gz, persist: true, polling: {min_delay_seconds: 1, max_delay_seconds: 2}}
  decision_logs: {service: collector, resource: /logs, reporting: {min_delay_seconds: 1, max_delay_seconds: 1}}
`, bundles.URL, collector.URL)
	want := []access{{"repository", "team/app", []string{"pull", "push"}}}
	// tokenByRevision asks b for alice's token, checks what it grants and
	// that its decision was logged with its jti under the revision.
	tokenByRevision := func(b *broker) string {
		t.Helper()
		tok := b.getToken(t, f.service, "alice", "repository:team/app:pull,push")
		expectAccess(t, tok, want)
		jti := tokenID(t, tok)
		e := collector.Await(t, "token "+jti, func(e map[string]any) bool { return opatest.Tollgate(e)["token_id"] == jti })
		if fmt.Sprint(e["bundles"]) != "map[authz:map[revision:cold-1]]" || e["error"] != nil {
			t.Errorf("the decision of token %s: %v", jti, e)
		}
		return tok
	}

	b := startBrokerWith(t, brokerOptions{opa: section})
	if code, body := readyz(t, b); code != http.StatusOK || !strings.Contains(body, "bundle authz: revision cold-1 (downloaded") {
		t.Fatalf("/readyz after the first activation: %d\n%s", code, body)
	}
	tokenByRevision(b)

	// Stop the broker (OPA flushes its logs), then the bundle server.
	b.proc.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.proc.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the broker did not stop within 20s of SIGTERM")
	}
	bundles.Close()

	b.proc = startProcess(t, "tollgate-cold", b.dir, nil, tollgateBin, "serve", "--config", b.config)
	waitFor200(t, b.proc, b.url("/readyz"))
	if code, body := readyz(t, b); code != http.StatusOK || !strings.Contains(body, "bundle authz: revision cold-1 (from the persisted copy") {
		t.Errorf("/readyz on a cold start with the bundle server down: %d\n%s", code, body)
	}
	r := startRegistry(t, f, b)
	pushImage(t, r, tokenByRevision(b), "team/app", "v1")

	none := startBrokerWith(t, brokerOptions{opa: section, startsUnready: true})
	status, raw, _ := none.askToken(t, f.service, "alice", "repository:team/app:pull")
	var refusal struct {
		Errors []struct{ Code, Message string }
	}
	if status != http.StatusServiceUnavailable || json.Unmarshal(raw, &refusal) != nil || len(refusal.Errors) != 1 || refusal.Errors[0].Code != "UNAVAILABLE" {
		t.Errorf("a token request with nothing persisted and the bundle server down: %d %s, want 503 UNAVAILABLE", status, raw)
	}
	if code, body := readyz(t, none); code != http.StatusServiceUnavailable || !strings.Contains(body, "bundle authz: not active") {
		t.Errorf("/readyz with nothing persisted: %d\n%s", code, body)
	}
	e := collector.Await(t, "the refusal", func(e map[string]any) bool { return e["error"] != nil })
	tg := opatest.Tollgate(e)
	if fmt.Sprint(e["error"]) != "map[code:internal_error message:one or more bundles are not activated: authz]" ||
		e["result"] != nil || e["bundles"] != nil || tg["token_id"] != nil {
		t.Errorf("the refusal's decision-log event: %v", e)
	}
}
