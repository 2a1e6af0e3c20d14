package policies_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/bundles"
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

// The engine of the opa: section logs what a policy prints as the engine of
// policy.source does: at debug level, with the request id; not above.
func TestOPAPrintOutputIsLoggedAtDebug(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "authz.rego"), []byte(printingPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	var bundle bytes.Buffer
	if err := bundles.Build(context.Background(), dir, "p1", nil, &bundle); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(bundle.Bytes()) }))
	defer srv.Close()
	doc := fmt.Sprintf("services:\n  s: {url: %s}\nbundles:\n  authz: {service: s, resource: /b.tar.gz}\n", srv.URL)
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		// A file, not a buffer: OPA's plugins log from their own goroutines.
		logFile, err := os.Create(filepath.Join(dir, "log-"+level.String()))
		if err != nil {
			t.Fatal(err)
		}
		defer logFile.Close()
		e, err := policies.OpenOPA([]byte(doc), policies.OPAOptions{ID: "t", Log: slog.New(slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: level}))})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		if err := e.Start(ctx); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); !e.Ready(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the bundle was not activated: %v", e.Bundles(ctx))
			}
		}
		d, err := e.Authorize(authz.WithRequestID(ctx, "req-9"), input("alice"))
		e.Stop(context.Background())
		cancel()
		if err != nil || !d.Allowed[0]["pull"] {
			t.Fatalf("%v: decision %v, %v", level, d.Allowed, err)
		}
		logged, _ := os.ReadFile(logFile.Name())
		var prints []string
		for _, line := range strings.Split(string(logged), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "policy print" {
				prints = append(prints, fmt.Sprint(rec["request_id"], " ", rec["output"]))
			}
		}
		want := []string{"req-9 asked by alice"}
		if level > slog.LevelDebug {
			want = nil
		}
		if !slices.Equal(prints, want) {
			t.Errorf("at %v, policy prints %q, want %q", level, prints, want)
		}
	}
}
