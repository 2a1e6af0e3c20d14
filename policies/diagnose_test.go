package policies_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/policies"
)

const printingPolicy = `package registry.authz
allowed contains {"type": s.type, "name": s.name, "action": "pull"} if {
	some s in input.scopes
	print("asked by", input.identity.subject)
}

allowed contains {"type": s.type, "name": s.name, "action": "push"} if {
	input.identity.subject == "alice"
	some s in input.scopes
}
`

func TestDiagnoseNamesTheRuleThatGrantedEachAction(t *testing.T) {
	p := compile(t, printingPolicy)
	d, err := p.Diagnose(context.Background(), input("alice"))
	if err != nil {
		t.Fatal(err)
	}
	for action, line := range map[string]int{"pull": 2, "push": 7} {
		locs := d.GrantedBy[policies.GrantKey("repository", "team/app", action)]
		if len(locs) != 1 || locs[0].Row != line || !strings.HasSuffix(locs[0].File, "p.rego") {
			t.Errorf("%s granted by %v, want the rule at p.rego:%d", action, locs, line)
		}
	}
	if len(d.Prints) != 1 || d.Prints[0] != "asked by alice" {
		t.Errorf("prints = %q", d.Prints)
	}
	if len(d.Trace) == 0 || len(d.Decision.Allowed[0]) != 2 {
		t.Errorf("trace of %d events, decision %v", len(d.Trace), d.Decision.Allowed)
	}

	d, err = p.Diagnose(context.Background(), input("bob"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.GrantedBy[policies.GrantKey("repository", "team/app", "push")]; ok || d.Decision.Allowed[0]["push"] {
		t.Errorf("push granted to bob: %v", d.GrantedBy)
	}
}

// The broker logs what a policy prints at debug level, one line per
// evaluated decision, bounded: the input is the caller's to choose.
func TestEnginePrintOutputIsLoggedAtDebugAndBounded(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := policies.NewEngine(0, 0, policies.PrintLog(log, 64))
	e.Swap(compile(t, printingPolicy))
	ctx := authz.WithRequestID(context.Background(), "req-1")
	if _, err := e.Authorize(ctx, input("alice")); err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	if rec["msg"] != "policy print" || rec["output"] != "asked by alice" || rec["request_id"] != "req-1" || rec["truncated"] != false {
		t.Errorf("log line: %s", buf.String())
	}

	buf.Reset()
	if _, err := e.Authorize(ctx, input(strings.Repeat("x", 1000))); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	if out, _ := rec["output"].(string); len(out) != 64 || rec["truncated"] != true {
		t.Errorf("a 1000-byte print logged as %d bytes, truncated %v", len(out), rec["truncated"])
	}

	// Above debug, nothing is logged.
	buf.Reset()
	quiet := policies.NewEngine(0, 0, policies.PrintLog(slog.New(slog.NewJSONHandler(&buf, nil)), 0))
	quiet.Swap(compile(t, printingPolicy))
	if _, err := quiet.Authorize(ctx, input("alice")); err != nil || buf.Len() != 0 {
		t.Errorf("info level: err %v, logged %s", err, buf.String())
	}
}
