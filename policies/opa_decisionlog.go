package policies

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	opabundle "github.com/open-policy-agent/opa/v1/plugins/bundle"
	"github.com/open-policy-agent/opa/v1/server"
	"github.com/open-policy-agent/opa/v1/server/types"
	"github.com/open-policy-agent/opa/v1/storage"

	"github.com/tollgate/tollgate/authz"
)

// DecisionLogKey is the key under the decision-log event's `custom` field
// that holds what tollgate knows of a decision besides OPA's fields
// (decision 0014): OPA leaves `custom` to embedders and names nothing so.
const DecisionLogKey = "tollgate"

// logDecision gives the decision to OPA's decision_logs plugin as the
// record `opa run --server` writes for a POST to /v1/data/<query>/allowed:
// the same path, input and result, the active bundles, OPA's labels; so
// OPA's batching, upload, mask and drop policies and console output apply.
// A log that cannot be written never changes a decision.
//
// When the caller reports the request's outcome (authz.WithOutcome, the
// broker), the event waits for it and adds the token id and the session:
// still one event per decision, with the ids, time and metrics of the
// decision. The decision's transaction is closed by then, so OPA's mask
// and drop policies read the store in a transaction of their own.
func (e *OPA) logDecision(ctx context.Context, txn storage.Transaction, active map[string]server.BundleInfo, in *authz.Input,
	d authz.Decision, err error, m metrics.Metrics) {
	inputAST := inputValue(in)
	input, jerr := ast.JSON(inputAST)
	if jerr != nil {
		return
	}
	facts := map[string]any{"cached": d.Cached, "service": in.Service, "request_id": authz.RequestID(ctx)}
	info := &server.Info{
		Txn:        txn,
		Bundles:    active,
		DecisionID: newDecisionID(),
		RemoteAddr: cmp.Or(authz.RemoteAddr(ctx), in.Client.IP),
		RequestID:  e.reqs.Add(1),
		Path:       decisionPath(e.query),
		Timestamp:  time.Now().UTC(),
		Input:      &input,
		InputAST:   inputAST,
		Error:      err,
		Metrics:    m,
		Custom:     map[string]any{DecisionLogKey: facts},
	}
	if err == nil {
		result := allowedResult(in, d)
		info.Results = &result
	}
	m.Timer(metrics.ServerHandler).Stop()
	later := authz.OnOutcome(ctx, func(o authz.Outcome) {
		if o.TokenID != "" {
			facts["token_id"] = o.TokenID
		}
		if o.SessionID != "" {
			facts["session_id"] = o.SessionID
		}
		info.Txn = nil
		// The client may be gone: the event is still the decision's.
		_ = e.logs.Log(context.WithoutCancel(ctx), info)
	})
	if !later {
		_ = e.logs.Log(ctx, info)
	}
}

// logNoPolicy logs a request refused (authz.ErrNoPolicy) before every
// bundle was activated as OPA logs a decision that failed: no result, the
// error as OPA writes one ({code, message}, with the message of OPA's
// /health?bundles), the bundles active so far (none: OPA leaves the field
// out). OPA itself would evaluate against what it has, and log an undefined
// decision; tollgate refuses instead (decision 0014).
func (e *OPA) logNoPolicy(ctx context.Context, in *authz.Input) {
	if e.logs == nil {
		return
	}
	m := metrics.New()
	m.Timer(metrics.ServerHandler).Start()
	txn, err := e.manager.Store.NewTransaction(ctx)
	if err != nil {
		return
	}
	defer e.manager.Store.Abort(ctx, txn)
	_, active, err := e.revisions(ctx, txn)
	if err != nil {
		return
	}
	msg := "one or more bundles are not activated"
	if bp := opabundle.Lookup(e.manager); bp != nil {
		if names := bp.NotActivated(); len(names) > 0 {
			msg += ": " + strings.Join(names, ", ")
		}
	}
	e.logDecision(ctx, txn, active, in, authz.Decision{}, types.NewErrorV1(types.CodeInternal, "%s", msg), m)
}

// decisionPath is the path OPA logs for the `allowed` rule of query
// (data.registry.authz): registry/authz/allowed.
func decisionPath(query string) string {
	ref := ast.MustParseRef(query)
	path := ""
	for _, t := range ref[1:] {
		if s, ok := t.Value.(ast.String); ok {
			path += string(s) + "/"
		}
	}
	return path + "allowed"
}

// allowedResult is the `allowed` set of the decision as OPA returns it: an
// array of {type, name, action}, in OPA's order of a set.
func allowedResult(in *authz.Input, d authz.Decision) any {
	set := ast.NewSet()
	for i, actions := range d.Allowed {
		if i >= len(in.Scopes) {
			break
		}
		for _, a := range slices.Sorted(maps.Keys(actions)) {
			set.Add(ast.ObjectTerm(
				ast.Item(ast.StringTerm("type"), ast.StringTerm(in.Scopes[i].Type)),
				ast.Item(ast.StringTerm("name"), ast.StringTerm(in.Scopes[i].Name)),
				ast.Item(ast.StringTerm("action"), ast.StringTerm(a))))
		}
	}
	v, _ := ast.JSON(set)
	return v
}
