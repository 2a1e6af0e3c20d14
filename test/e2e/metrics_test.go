package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestMetrics: /metrics counts requests by outcome and connector, shows the
// policy in force and the caches, and holds no user name, password or scope.
func TestMetrics(t *testing.T) {
	b := startBroker(t)
	svc := flavors[0].service
	b.getToken(t, svc, "alice", "repository:team/app:pull,push")
	b.getToken(t, svc, "alice", "repository:team/app:pull,push") // credential cache hit
	req, _ := http.NewRequest(http.MethodGet, b.url("/token?service="+svc+"&scope=repository:secret/x:pull"), nil)
	req.SetBasicAuth("carol", "wrong-password")
	if resp, err := httpClient.Do(req); err == nil {
		resp.Body.Close()
	}

	resp, err := httpClient.Get(b.url("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	out := string(body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s\n%s", resp.Status, out)
	}
	for _, want := range []string{
		`tollgate_token_requests_total{connector="local",outcome="granted",status="200"} 2`,
		`tollgate_token_requests_total{connector="",outcome="unauthorized",status="401"} 1`,
		`tollgate_policy_decisions_total{cached="true"} 1`,
		`tollgate_policy_loaded 1`,
		`tollgate_policy_revision_info{revision="sha256:`,
		`tollgate_credential_cache_hits_total 1`,
		`tollgate_policy_decision_cache_entries 1`,
		`tollgate_policy_decision_cache_bytes `,
		`tollgate_token_request_duration_seconds_bucket{outcome="granted"`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for _, secret := range []string{"alice", "carol", "wrong-password", b.passwords["alice"], "team/app", "secret/x"} {
		if strings.Contains(out, secret) {
			t.Errorf("/metrics holds %q", secret)
		}
	}
}
