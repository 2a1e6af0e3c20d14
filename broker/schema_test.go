package broker_test

import (
	"context"
	"encoding/json"
	"net/url"
	"sync"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/policies"
)

// recorder is the real engine with every input it was asked about kept.
type recorder struct {
	next authz.Authorizer
	mu   sync.Mutex
	ins  []authz.Input
}

func (r *recorder) Authorize(ctx context.Context, in authz.Input) (authz.Decision, error) {
	r.mu.Lock()
	r.ins = append(r.ins, in)
	r.mu.Unlock()
	return r.next.Authorize(ctx, in)
}

// TestBrokerInputMatchesThePublishedSchema validates the inputs the broker
// really builds (password, anonymous, refresh, star, several scopes) against
// policies/schema/input.json with OPA's own json.match_schema.
func TestBrokerInputMatchesThePublishedSchema(t *testing.T) {
	rec := &recorder{}
	f := newFixture(t, func(o *broker.Options) { rec.next = o.Authorizer; o.Authorizer = rec })
	a := f.get(t, "service=registry.test&scope=repository:team/app:pull,push&scope=registry:catalog:*&offline_token=true", "Authorization", basic("alice", "alice-secret"))
	f.get(t, "scope=repository(plugin):public/x:*")
	f.post(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {a.body["refresh_token"].(string)}, "scope": {"repository:team/app:pull"}})
	if len(rec.ins) != 3 {
		t.Fatalf("%d policy inputs recorded, want 3", len(rec.ins))
	}

	var schema any
	if err := json.Unmarshal(policies.InputSchema(), &schema); err != nil {
		t.Fatal(err)
	}
	pq, err := rego.New(rego.Query("[ok, errs] := json.match_schema(input.doc, input.schema)")).PrepareForEval(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i, in := range rec.ins {
		raw, _ := json.Marshal(in)
		var doc any
		json.Unmarshal(raw, &doc)
		rs, err := pq.Eval(context.Background(), rego.EvalInput(map[string]any{"doc": doc, "schema": schema}))
		if err != nil || len(rs) != 1 {
			t.Fatalf("input %d: %v %v", i, rs, err)
		}
		if ok, _ := rs[0].Bindings["ok"].(bool); !ok {
			t.Fatalf("input %d does not match the schema: %v\n%s", i, rs[0].Bindings["errs"], raw)
		}
	}

	// The check can fail: a document with a misspelled field is refused.
	rs, _ := pq.Eval(context.Background(), rego.EvalInput(map[string]any{
		"doc": map[string]any{"service": "x", "identity": map[string]any{"subjct": "a"}, "scopes": []any{}, "client": map[string]any{}}, "schema": schema}))
	if ok, _ := rs[0].Bindings["ok"].(bool); ok {
		t.Fatal("the schema accepted a misspelled identity field")
	}
}
