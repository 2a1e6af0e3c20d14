package policies

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/plugins"
	opabundle "github.com/open-policy-agent/opa/v1/plugins/bundle"
	"github.com/open-policy-agent/opa/v1/plugins/logs"
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

// boundDecisionLogs sets decision_logs.reporting.buffer_size_limit_bytes to
// limit where OPA would leave its size buffer (the default buffer_type)
// unbounded: it keeps every decision a failing collector did not take.
// The event buffer has a limit of its own (10,000 events), and OPA refuses
// a byte limit beside max_decisions_per_second.
func boundDecisionLogs(doc map[string]any, limit int64) {
	dl, ok := doc["decision_logs"].(map[string]any)
	if !ok || limit <= 0 {
		return
	}
	r, ok := dl["reporting"].(map[string]any)
	if dl["reporting"] == nil {
		r, ok = map[string]any{}, true
		dl["reporting"] = r
	}
	if !ok || r["buffer_size_limit_bytes"] != nil || r["max_decisions_per_second"] != nil {
		return
	}
	if t, _ := r["buffer_type"].(string); t == "" || t == "size" {
		r["buffer_size_limit_bytes"] = limit
	}
}

// warnImmediateUploads says what decision_logs.reporting.trigger:
// immediate costs in OPA (v1.22): each full chunk is uploaded by a
// goroutine of its own, one at a time, so a collector that hangs keeps
// each up to the service's response_header_timeout_seconds (10 s by
// default) while new chunks queue behind, each goroutine holding its
// chunk outside the bounded buffer. tollgate cannot bound that from
// outside; periodic uploads do not pile up.
func warnImmediateUploads(p *logs.Plugin, log *slog.Logger) {
	if p == nil || p.Config().Reporting.Trigger == nil || *p.Config().Reporting.Trigger != plugins.TriggerImmediate {
		return
	}
	log.Warn("decision_logs.reporting.trigger: immediate: while the collector hangs, OPA keeps one goroutine and one chunk in memory per upload_size_limit_bytes of decisions, unbounded; trigger: periodic with a short min_delay_seconds is bounded by buffer_size_limit_bytes")
}

// newDecisionID returns a random (version 4) UUID, as OPA's decision ids are.
func newDecisionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
