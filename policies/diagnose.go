package policies

import (
	"context"
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/print"

	"github.com/tollgate/tollgate/authz"
)

// Diagnosis is one evaluation seen from inside, for `policy eval`: the
// decision the broker would get, plus what the policy printed, its
// reasons, the rules that produced each allowed item and the whole trace.
type Diagnosis struct {
	Decision authz.Decision
	// Reasons is the policy's own `reasons`, sorted.
	Reasons []string
	// Prints is the output of print() calls, in the order they ran.
	Prints []string
	// GrantedBy maps an allowed item ("type:name:action") to the
	// locations of the `allowed` rules that produced it.
	GrantedBy map[string][]*ast.Location
	// Trace is every event of the evaluation, as opa eval --explain full
	// records it; filter it with topdown/lineage.
	Trace []*topdown.Event
}

// GrantKey is the key of Diagnosis.GrantedBy for one allowed action.
func GrantKey(typ, name, action string) string { return typ + ":" + name + ":" + action }

// Diagnose evaluates the policy for in as the broker does (never cached),
// tracing the evaluation and capturing print() output.
func (p *Policy) Diagnose(ctx context.Context, in authz.Input) (Diagnosis, error) {
	allowed, err := ast.ParseRef(p.query + ".allowed")
	if err != nil {
		return Diagnosis{}, err
	}
	tr := &grantTracer{allowed: allowed, by: map[string][]*ast.Location{}}
	hook := &printBuffer{}
	d, err := p.eval(ctx, &in, rego.EvalQueryTracer(tr), rego.EvalPrintHook(hook))
	if err != nil {
		return Diagnosis{}, err
	}
	reasons, err := p.Explain(ctx, in)
	if err != nil {
		return Diagnosis{}, fmt.Errorf("policy revision %s: reasons: %w", p.revision, err)
	}
	return Diagnosis{Decision: d, Reasons: reasons, Prints: hook.lines, GrantedBy: tr.by, Trace: tr.events}, nil
}

// grantTracer records the trace and, as each `allowed` rule succeeds,
// the value it produced: bindings can only be plugged while the event is
// being emitted, not afterwards.
type grantTracer struct {
	events  topdown.BufferTracer
	allowed ast.Ref
	by      map[string][]*ast.Location
}

func (t *grantTracer) Enabled() bool { return true }

func (t *grantTracer) Config() topdown.TraceConfig { return t.events.Config() }

func (t *grantTracer) TraceEvent(e topdown.Event) {
	t.events.TraceEvent(e)
	r, ok := e.Node.(*ast.Rule)
	if !ok || e.Op != topdown.ExitOp || r.Module == nil || r.Head.Key == nil || !r.Path().Equal(t.allowed) {
		return
	}
	item, ok := e.Plug(r.Head.Key).Value.(ast.Object)
	if !ok {
		return
	}
	str := func(k string) string {
		s, _ := item.Get(ast.StringTerm(k)).Value.(ast.String)
		return string(s)
	}
	if item.Get(ast.StringTerm("type")) == nil || item.Get(ast.StringTerm("name")) == nil || item.Get(ast.StringTerm("action")) == nil {
		return
	}
	key := GrantKey(str("type"), str("name"), str("action"))
	for _, l := range t.by[key] {
		if l.Equal(r.Location) {
			return
		}
	}
	t.by[key] = append(t.by[key], r.Location)
}

// printBuffer keeps every print() line, for the command line.
type printBuffer struct{ lines []string }

func (b *printBuffer) Print(_ print.Context, msg string) error {
	b.lines = append(b.lines, msg)
	return nil
}

// boundedPrint keeps print() output up to max bytes, so that one decision
// of a policy printing its (attacker-chosen) input cannot flood the log.
type boundedPrint struct {
	buf       strings.Builder
	max       int
	truncated bool
}

func (b *boundedPrint) Print(_ print.Context, msg string) error {
	if b.truncated {
		return nil
	}
	if room := b.max - b.buf.Len(); len(msg)+1 > room {
		b.buf.WriteString(strings.ToValidUTF8(msg[:max(room, 0)], ""))
		b.truncated = true
		return nil
	}
	b.buf.WriteString(msg)
	b.buf.WriteByte('\n')
	return nil
}
