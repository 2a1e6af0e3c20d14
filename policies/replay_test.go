package policies_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/policies"
	"github.com/tollgate/tollgate/scope"
)

// replayInputs are n token requests of every kind the default policy
// tells apart: members, groups, admins, strangers, anonymous callers;
// private and public projects; pull, push, delete and *.
func replayInputs(n int) []authz.Input {
	r := rand.New(rand.NewPCG(1, 2))
	users := []string{"alice", "bob", "carol", "admin", "dave", ""}
	groups := [][]string{{}, {"dev"}, {"registry-admins"}, {"ops"}, {"dev", "ops"}}
	repos := []string{"team/app", "team/db", "library/hello", "other/x", "bob/tools"}
	actions := [][]string{{"pull"}, {"push"}, {"pull", "push"}, {"*"}, {"delete"}, {"pull", "delete"}}
	var out []authz.Input
	for range n {
		id := identity.Identity{Subject: users[r.IntN(len(users))], Groups: groups[r.IntN(len(groups))], Connector: "local", Claims: map[string]any{}}
		id.Name = id.Subject
		if id.Subject == "" {
			id = identity.Anonymous()
		}
		in := authz.Input{Service: "registry.test", Identity: id, Client: authz.Client{IP: "192.0.2.1", UserAgent: "test"}}
		for range 1 + r.IntN(2) {
			in.Scopes = append(in.Scopes, scope.Scope{Type: "repository", Name: repos[r.IntN(len(repos))], Actions: actions[r.IntN(len(actions))]})
		}
		if r.IntN(20) == 0 {
			in.Scopes = append(in.Scopes, scope.Scope{Type: "registry", Name: "catalog", Actions: []string{"*"}})
		}
		out = append(out, in)
	}
	return out
}

// defaultAndChanged are the default policy and a change a reviewer would
// want to see the effect of: bob becomes a developer of team, library
// stops being public.
func defaultAndChanged(t *testing.T) (*policies.Policy, *policies.Policy, *bundles.Bundle) {
	t.Helper()
	ctx := context.Background()
	b, err := bundles.LoadFS(policies.DefaultFS(), "default")
	if err != nil {
		t.Fatal(err)
	}
	old, err := policies.Compile(ctx, b, policies.DefaultQuery)
	if err != nil {
		t.Fatal(err)
	}
	changed, err := bundles.LoadFS(policies.DefaultFS(), "default")
	if err != nil {
		t.Fatal(err)
	}
	projects := changed.Data["registry"].(map[string]any)["projects"].(map[string]any)
	projects["team"].(map[string]any)["members"].(map[string]any)["bob"] = "developer"
	projects["library"].(map[string]any)["public"] = false
	changed.Revision = "changed"
	p, err := policies.Compile(ctx, changed, policies.DefaultQuery)
	if err != nil {
		t.Fatal(err)
	}
	return old, p, b
}

// directChanges decides each input with both policies directly: the line
// numbers (from 1) whose grants differ.
func directChanges(t *testing.T, old, changed *policies.Policy, inputs []authz.Input) []int {
	t.Helper()
	ctx := context.Background()
	before, after := policies.NewEngine(0, 0), policies.NewEngine(0, 0)
	before.Swap(old)
	after.Swap(changed)
	var lines []int
	for i, in := range inputs {
		d1, err1 := before.Authorize(ctx, in)
		d2, err2 := after.Authorize(ctx, in)
		if err1 != nil || err2 != nil {
			t.Fatalf("input %d: %v, %v", i, err1, err2)
		}
		g1, g2 := d1.Grants(in.Scopes), d2.Grants(in.Scopes)
		if !slices.EqualFunc(g1, g2, func(a, b authz.Grant) bool { return slices.Equal(a.Granted, b.Granted) }) {
			lines = append(lines, i+1)
		}
	}
	return lines
}

func replayChanges(t *testing.T, p *policies.Policy, log []byte) (changed []int, total int) {
	t.Helper()
	skipped, err := p.Replay(context.Background(), bytes.NewReader(log), func(r policies.Replayed) error {
		total++
		if r.Changed() {
			changed = append(changed, r.Line)
		}
		return nil
	})
	if err != nil || skipped != 0 {
		t.Fatalf("replay: %v (%d lines skipped)", err, skipped)
	}
	return changed, total
}

// oldLogLine is decision i as tollgate's own decision log wrote it before
// policy.decision_log went through OPA's plugin (testdata/decisions-old.jsonl
// holds lines that writer wrote): OPA's field names, the granted actions as
// {type, name, action} per scope, cached and request_id at the top level.
func oldLogLine(t *testing.T, i int, in authz.Input, d authz.Decision) []byte {
	t.Helper()
	result := []map[string]string{}
	for j, actions := range d.Allowed {
		for _, a := range slices.Sorted(maps.Keys(actions)) {
			result = append(result, map[string]string{"type": in.Scopes[j].Type, "name": in.Scopes[j].Name, "action": a})
		}
	}
	line, err := json.Marshal(map[string]any{
		"decision_id": fmt.Sprintf("00000000-0000-4000-8000-%012d", i), "labels": map[string]string{"id": "test"},
		"bundles": map[string]any{"tollgate": map[string]string{"revision": d.Revision}}, "path": "registry/authz/allowed",
		"input": in, "result": result, "requested_by": in.Client.IP, "timestamp": "2026-11-29T12:00:00Z",
		"metrics": map[string]int64{"timer_server_handler_ns": 1000}, "cached": d.Cached, "request_id": fmt.Sprint("req-", i),
	})
	if err != nil {
		t.Fatal(err)
	}
	return append(line, '\n')
}

// TestReplayReportsExactlyTheChangedDecisions: 1,200 decisions recorded in
// the broker's older decision-log line under the default policy, replayed
// through a changed one, report exactly the decisions that deciding each
// input with both policies finds changed, and none through the unchanged
// policy.
func TestReplayReportsExactlyTheChangedDecisions(t *testing.T) {
	old, changed, _ := defaultAndChanged(t)
	inputs := replayInputs(1200)
	e := policies.NewEngine(1000, 0)
	e.Swap(old)
	var log bytes.Buffer
	for i, in := range inputs {
		d, err := e.Authorize(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		log.Write(oldLogLine(t, i, in, d))
	}
	want := directChanges(t, old, changed, inputs)
	if len(want) < 50 || len(want) > len(inputs)-50 {
		t.Fatalf("%d of %d decisions change: the corpus does not tell changed from unchanged", len(want), len(inputs))
	}
	got, total := replayChanges(t, changed, log.Bytes())
	if total != len(inputs) || !slices.Equal(got, want) {
		t.Fatalf("replay of %d decisions reports %d changed, direct evaluation %d\nreplay: %v\ndirect: %v", total, len(got), len(want), got, want)
	}
	if got, _ := replayChanges(t, old, log.Bytes()); len(got) != 0 {
		t.Fatalf("the recording policy changes its own decisions on lines %v", got)
	}
}

// TestReplayReadsOPADecisionLogs: the lines OPA writes when it serves the
// same policy (result: the allowed set for path registry/authz/allowed, the
// package's document for registry/authz), among other log lines, replay as
// the broker's older lines do.
func TestReplayReadsOPADecisionLogs(t *testing.T) {
	old, changed, b := defaultAndChanged(t)
	inputs := replayInputs(300)
	ctx := context.Background()
	var mods []func(*rego.Rego)
	for _, m := range b.Modules {
		mods = append(mods, rego.ParsedModule(m))
	}
	var log bytes.Buffer
	log.WriteString(`{"level":"info","msg":"Initializing server.","time":"2026-11-29T12:00:00Z"}` + "\n")
	for i, in := range inputs {
		path, query := "registry/authz/allowed", "data.registry.authz.allowed"
		if i%2 == 1 {
			path, query = "registry/authz", "data.registry.authz"
		}
		raw, _ := json.Marshal(in)
		var doc any
		json.Unmarshal(raw, &doc)
		r := rego.New(append(mods, rego.Query(query), rego.Store(inmem.NewFromObject(b.Data)), rego.Input(doc))...)
		rs, err := r.Eval(ctx)
		if err != nil || len(rs) != 1 {
			t.Fatalf("opa eval %s: %v %v", query, rs, err)
		}
		res, _ := json.Marshal(rs[0].Expressions[0].Value)
		fmt.Fprintf(&log, `{"decision_id":"%d","labels":{"id":"opa-1","version":"1.22.2"},"path":%q,"input":%s,"result":%s,"timestamp":"2026-11-29T12:00:00Z"}`+"\n", i, path, raw, res)
	}
	if got, _ := replayChanges(t, old, log.Bytes()[bytes.IndexByte(log.Bytes(), '\n')+1:]); len(got) != 0 {
		t.Fatalf("OPA's decisions of the same policy change on lines %v", got)
	}
	want := directChanges(t, old, changed, inputs)
	got, total := replayChanges(t, changed, log.Bytes()[bytes.IndexByte(log.Bytes(), '\n')+1:])
	if total != len(inputs) || !slices.Equal(got, want) || len(want) == 0 {
		t.Fatalf("replay of %d OPA decisions reports %v, direct evaluation %v", total, got, want)
	}
	skipped, err := changed.Replay(ctx, bytes.NewReader(log.Bytes()), func(policies.Replayed) error { return nil })
	if err != nil || skipped != 1 {
		t.Fatalf("a log line that is no decision: skipped %d, %v", skipped, err)
	}
}

// TestReplayReadsTheOldTollgateLine: lines tollgate's own decision log wrote
// (testdata/decisions-old.jsonl, under the default policy, the first before
// a policy was loaded) replay as they were decided: the error as a recorded
// error, which a policy that decides changes, the grants as granted, the
// denial as nothing granted. An error in OPA's console line (its message)
// is a recorded error too.
func TestReplayReadsTheOldTollgateLine(t *testing.T) {
	p, _, _ := defaultAndChanged(t)
	log, err := os.ReadFile("testdata/decisions-old.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	log = append(log, `{"decision_id":"a6199170-9525-4cfe-afe3-507552010278","path":"registry/authz/allowed",`+
		`"input":{"service":"registry.test","identity":{"subject":"dave","connector":"local"},"scopes":[{"type":"repository","name":"team/app","actions":["pull"]}]},`+
		`"error":"one or more bundles are not activated: authz","type":"openpolicyagent.org/decision_logs","level":"info","msg":"Decision Log","time":"2026-11-30T01:23:45Z"}`+"\n"...)
	var got []string
	skipped, err := p.Replay(context.Background(), bytes.NewReader(log), func(r policies.Replayed) error {
		got = append(got, fmt.Sprintf("%d %s recorded:%v %v now:%v changed:%v", r.Line, r.Input.Identity.Subject, r.BeforeOK, r.Before, r.After, r.Changed()))
		return nil
	})
	want := []string{
		"1 alice recorded:false [] now:[[pull push]] changed:true",
		"2 alice recorded:true [[pull push]] now:[[pull push]] changed:false",
		"3 bob recorded:true [[pull]] now:[[pull]] changed:false",
		"4 carol recorded:true [[]] now:[[]] changed:false",
		"5 dave recorded:false [] now:[[]] changed:true",
	}
	if err != nil || skipped != 0 || !slices.Equal(got, want) {
		t.Fatalf("replay: %v (%d skipped)\ngot  %q\nwant %q", err, skipped, got, want)
	}
}

// A line longer than the scanner takes is named by its number.
func TestReplayNamesTheLineTooLong(t *testing.T) {
	p, _, _ := defaultAndChanged(t)
	log := "{}\n{\"input\": {\"service\": \"" + strings.Repeat("a", 17<<20) + "\"}}\n"
	_, err := p.Replay(context.Background(), strings.NewReader(log), func(policies.Replayed) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("got %v, want an error naming line 2", err)
	}
}
