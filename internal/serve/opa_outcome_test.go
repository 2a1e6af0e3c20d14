package serve

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/policies"
	"github.com/tollgate/tollgate/test/opatest"
)

// loggingOPA is the OPA engine of opaConfig with its decision logs
// uploaded to a collector every second; bundles, when not empty, are more
// lines under bundles:.
func loggingOPA(t *testing.T, bundles string) (*policies.OPA, *opatest.Collector) {
	t.Helper()
	collector, public := bundleAndCollector(t, opatest.Keep)
	doc := strings.Replace(opaConfig(t, collector.URL, public, t.TempDir()), "\nbundles:\n", "\nbundles:\n"+bundles, 1) + uploadEverySecond
	return openTestOPA(t, doc), collector
}

// TestOPADecisionLogWaitsForTheTokenID: a decision whose request reports
// its outcome (as the broker does once it signed) is uploaded once, with
// the token id and the login session under tollgate's key; a request
// refused without a token has neither.
func TestOPADecisionLogWaitsForTheTokenID(t *testing.T) {
	e, collector := loggingOPA(t, "")
	waitFor(t, "tollgate to activate the bundle", e.Ready)
	decide := func(service string, o authz.Outcome) {
		t.Helper()
		ctx, report := authz.WithOutcome(authz.WithRequestID(context.Background(), "req-"+service))
		in := opaTestInput
		in.Service = service
		if _, err := e.Authorize(ctx, in); err != nil {
			t.Fatal(err)
		}
		report(o)
	}
	decide("signed", authz.Outcome{TokenID: "jti-of-the-token", SessionID: "session-1"})
	decide("refused", authz.Outcome{})
	if _, err := e.Authorize(context.Background(), opaTestInput); err != nil { // uploaded after both
		t.Fatal(err)
	}
	waitFor(t, "the last decision's upload", func() bool { return decisionEvent(collector, true, opaTestInput.Service) != nil })

	for service, want := range map[string]string{
		"signed":  "map[cached:false request_id:req-signed service:signed session_id:session-1 token_id:jti-of-the-token]",
		"refused": "map[cached:false request_id:req-refused service:refused]",
	} {
		n := 0
		for _, ev := range collector.Events() {
			if ev["input"].(map[string]any)["service"] == service {
				n++
				if tg := ev["custom"].(map[string]any)[policies.DecisionLogKey]; fmt.Sprint(tg) != want {
					t.Errorf("%s: custom.%s = %v, want %s", service, policies.DecisionLogKey, tg, want)
				}
			}
		}
		if n != 1 {
			t.Errorf("%s: %d events uploaded, want 1", service, n)
		}
	}
}

// TestOPARefusalBeforeActivationIsLoggedAsAnError: while a bundle is not
// activated yet, a request is refused (ErrNoPolicy, 503) and logged as OPA
// logs a failed decision: no result, the error as OPA writes one, the
// bundles active so far.
func TestOPARefusalBeforeActivationIsLoggedAsAnError(t *testing.T) {
	e, collector := loggingOPA(t, "  missing: {service: bundles, resource: /b/missing.tar.gz}\n")
	waitFor(t, "the authz bundle to be activated", func() bool {
		bs := e.Bundles(context.Background())
		return len(bs) == 2 && bs[0].Name == "authz" && bs[0].Active
	})
	ctx := authz.WithRemoteAddr(authz.WithRequestID(context.Background(), "req-9"), "127.0.0.1:50123")
	if _, err := e.Authorize(ctx, opaTestInput); !errors.Is(err, authz.ErrNoPolicy) {
		t.Fatalf("with bundle missing not activated: %v, want ErrNoPolicy", err)
	}
	var ev map[string]any
	waitFor(t, "the refusal's upload", func() bool { ev = decisionEvent(collector, true, opaTestInput.Service); return ev != nil })
	if _, ok := ev["result"]; ok {
		t.Errorf("a refusal logged a result: %v", ev["result"])
	}
	for field, want := range map[string]string{
		"error":        "map[code:internal_error message:one or more bundles are not activated: missing]",
		"bundles":      "map[authz:map[revision:rev-1]]",
		"path":         "registry/authz/allowed",
		"requested_by": "127.0.0.1:50123",
		"custom":       "map[tollgate:map[cached:false request_id:req-9 service:registry.example.com]]",
	} {
		if got := fmt.Sprint(ev[field]); got != want {
			t.Errorf("%s = %s, want %s", field, got, want)
		}
	}
	for _, field := range []string{"decision_id", "input", "labels", "metrics", "req_id", "timestamp"} {
		if ev[field] == nil {
			t.Errorf("no %s in the refusal's event: %v", field, ev)
		}
	}
}
