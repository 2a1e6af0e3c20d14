// Package policies evaluates the Rego authorization policy: a query prepared
// once per policy revision, and an LRU of decisions keyed by that revision.
package policies

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/scope"
)

// DefaultQuery is the package the policy's rules live in.
const DefaultQuery = "data.registry.authz"

// Policy is one compiled revision of the policy.
type Policy struct {
	revision string
	// digest identifies the content; decisions are cached under it, so two
	// contents that carry the same manifest revision never share decisions.
	digest   string
	query    string
	prepared rego.PreparedEvalQuery
	// explain is prepared lazily; it also evaluates `reasons`.
	explain atomic.Pointer[rego.PreparedEvalQuery]
	store   func() rego.EvalOption
	b       *bundles.Bundle
	// uncacheable, when set, says why no decision of this policy is cached.
	uncacheable string
	shape       keyShape // what decisions are cached under, as the policy declares
}

// Revision returns the revision id of the policy.
func (p *Policy) Revision() string { return p.revision }

// Digest identifies the policy's content, whatever its revision says.
func (p *Policy) Digest() string { return p.digest }

// Compile compiles and prepares a bundle. query is the package path of the
// rules (for example data.registry.authz); the package must define `allowed`.
func Compile(ctx context.Context, b *bundles.Bundle, query string) (*Policy, error) {
	ref, err := ast.ParseRef(query)
	if err != nil || !ref.HasPrefix(ast.DefaultRootRef) || !ref.IsGround() {
		return nil, fmt.Errorf("policy query %q: want a package path such as %s", query, DefaultQuery)
	}
	if !definesRule(b, ref, "allowed") {
		return nil, fmt.Errorf("policy revision %s defines no rule %s.allowed", b.Revision, query)
	}
	store := inmem.NewFromObjectWithOpts(b.Data, inmem.OptReturnASTValuesOnRead(true))
	withTTL, err := mayDefineTTL(ctx, query, b.Modules, store, nil)
	if err != nil {
		return nil, fmt.Errorf("policy revision %s: %w", b.Revision, err)
	}
	opts := []func(*rego.Rego){
		rego.Query(decisionQuery(query, withTTL)),
		rego.Store(store),
		rego.GenerateJSON(rawResult),
		// print() calls stay in the policy; their output goes where the
		// evaluation's print hook says (nowhere unless logging at debug).
		rego.EnablePrintStatements(true),
	}
	for _, m := range b.Modules {
		opts = append(opts, rego.ParsedModule(m))
	}
	pq, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy revision %s: %w", b.Revision, err)
	}
	var shape keyShape
	if definesRule(b, ref, KeyShapeRule) {
		shapeOpts := []func(*rego.Rego){rego.Store(store)}
		for _, m := range b.Modules {
			shapeOpts = append(shapeOpts, rego.ParsedModule(m))
		}
		if shape, err = readKeyShape(ctx, query, shapeOpts...); err != nil {
			return nil, fmt.Errorf("policy revision %s: %w", b.Revision, err)
		}
	}
	return &Policy{revision: b.Revision, digest: b.Digest, query: query, prepared: pq, b: b, uncacheable: Uncacheable(b), shape: shape}, nil
}

// UncacheableReason says why decisions of this policy are never cached
// ("" when they are): it reads input.client, which is not in the cache key,
// or calls a non-deterministic built-in such as time.now_ns.
func (p *Policy) UncacheableReason() string { return p.uncacheable }

var clientRef = ast.MustParseRef("input.client")

// Uncacheable finds what makes a decision depend on more than the cache
// key: a reference to input.client (or to the whole input, which may be
// passed on to anything) and non-deterministic built-ins (time, random,
// http.send). It errs on the side of not caching; "" means cacheable.
func Uncacheable(b *bundles.Bundle) string { return uncacheable(b.Modules) }

func uncacheable(modules map[string]*ast.Module) string {
	names := make([]string, 0, len(modules))
	for name := range modules {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		reason := ""
		ast.WalkRefs(modules[name], func(r ast.Ref) bool {
			switch {
			case reason != "":
			case r.HasPrefix(clientRef):
				reason = fmt.Sprintf("%s reads input.client", name)
			case len(r) == 1 && r.Equal(ast.InputRootRef):
				reason = fmt.Sprintf("%s uses the whole input", name)
			case r[0].Equal(ast.InputRootDocument) && !isString(r[1]):
				// input[k] with k a variable or an expression may be input.client.
				reason = fmt.Sprintf("%s reads input[%v], which may be input.client", name, r[1])
			}
			return reason != ""
		})
		nondeterministic := func(op string) {
			if bi, ok := ast.BuiltinMap[op]; ok && bi.Nondeterministic && reason == "" {
				reason = fmt.Sprintf("%s calls %s, which is not deterministic", name, bi.Name)
			}
		}
		ast.WalkExprs(modules[name], func(e *ast.Expr) bool { // f(x) as a statement
			if e.IsCall() {
				nondeterministic(e.Operator().String())
			}
			return reason != ""
		})
		ast.WalkTerms(modules[name], func(t *ast.Term) bool { // f(x) inside a term
			if c, ok := t.Value.(ast.Call); ok && len(c) > 0 {
				nondeterministic(c[0].Value.String())
			}
			return reason != ""
		})
		if reason != "" {
			return reason
		}
	}
	return ""
}

func isString(t *ast.Term) bool {
	_, ok := t.Value.(ast.String)
	return ok
}

func definesRule(b *bundles.Bundle, pkg ast.Ref, rule string) bool {
	for _, m := range b.Modules {
		if !m.Package.Path.Equal(pkg) {
			continue
		}
		for _, r := range m.Rules {
			if r.Head.Name.String() == rule || (len(r.Head.Reference) > 0 && r.Head.Reference[0].Value.Compare(ast.Var(rule)) == 0) {
				return true
			}
		}
	}
	return false
}

// Engine holds the current policy and the decision cache. It is safe for
// concurrent use; Swap replaces the policy atomically.
type Engine struct {
	current atomic.Pointer[Policy]
	cache   *decisionCache
	prints  printLog
}

// Option changes what NewEngine builds.
type Option func(*engineOptions)

type engineOptions struct {
	cacheMaxBytes int64
	printLog      *slog.Logger
	printMax      int
}

// DefaultPrintMaxBytes bounds the print() output logged for one decision.
const DefaultPrintMaxBytes = 4096

// PrintLog logs the print() output of every evaluated decision to log at
// debug level, at most maxBytes of it per decision (DefaultPrintMaxBytes
// when maxBytes <= 0): a policy that prints its input must not let a
// caller fill the log. Cached decisions are not evaluated, so they print
// nothing.
func PrintLog(log *slog.Logger, maxBytes int) Option {
	return func(o *engineOptions) {
		o.printLog = log
		o.printMax = cmp.Or(max(maxBytes, 0), DefaultPrintMaxBytes)
	}
}

// CacheMaxBytes bounds the memory the decision cache holds (its entries,
// their decisions and its index, as estimated in decisioncache.go) to n
// bytes; the default is DefaultCacheMaxBytes. n <= 0 keeps the default.
func CacheMaxBytes(n int64) Option {
	return func(o *engineOptions) {
		if n > 0 {
			o.cacheMaxBytes = n
		}
	}
}

// NewEngine returns an engine with a decision cache of at most size entries
// and CacheMaxBytes bytes, each kept for ttl. size <= 0 or ttl <= 0
// disables the cache.
func NewEngine(cacheSize int, cacheTTL time.Duration, opts ...Option) *Engine {
	o := engineOptions{cacheMaxBytes: DefaultCacheMaxBytes}
	for _, opt := range opts {
		opt(&o)
	}
	e := &Engine{prints: printLog{log: o.printLog, max: o.printMax}}
	if cacheSize > 0 && cacheTTL > 0 {
		e.cache = newDecisionCache(cacheSize, cacheTTL, o.cacheMaxBytes)
	}
	return e
}

// CacheStats returns the number of cached decisions and the bytes accounted
// for them (never more than the budget); zeros without a cache.
func (e *Engine) CacheStats() (entries int, bytes int64) {
	if e.cache == nil {
		return 0, 0
	}
	return e.cache.stats()
}

// Swap makes p the policy for every following request. Cached decisions of
// older revisions become unreachable at once, because the revision is part of
// the key; they are also dropped to free memory.
func (e *Engine) Swap(p *Policy) {
	old := e.current.Swap(p)
	if e.cache != nil && old != nil && old.digest != p.digest {
		e.cache.purge()
	}
}

// Current returns the policy in force, or nil.
func (e *Engine) Current() *Policy { return e.current.Load() }

// Authorize evaluates the policy for in. An error means deny.
func (e *Engine) Authorize(ctx context.Context, in authz.Input) (authz.Decision, error) {
	p := e.current.Load()
	if p == nil {
		return authz.Decision{}, authz.ErrNoPolicy
	}
	var key [sha256.Size]byte
	if e.cache != nil && p.uncacheable == "" {
		key = cacheKey(p.digest, &in, p.shape)
		if d, ok := e.cache.get(key); ok {
			return authz.Decision{Allowed: d.allowed, TokenTTL: d.ttl, Revision: p.revision, Cached: true}, nil
		}
	}
	d, err := e.evalLogged(ctx, p, &in)
	if err != nil {
		return authz.Decision{}, err
	}
	if e.cache != nil && p.uncacheable == "" {
		e.cache.add(key, d.Allowed, d.TokenTTL)
	}
	return d, nil
}

// evalLogged evaluates in, logging its print() output when debug logging
// is on; otherwise print() calls go nowhere and cost nothing more.
func (e *Engine) evalLogged(ctx context.Context, p *Policy, in *authz.Input) (authz.Decision, error) {
	out := e.prints.start(ctx)
	if out == nil {
		return p.eval(ctx, in)
	}
	d, err := p.eval(ctx, in, rego.EvalPrintHook(out))
	e.prints.done(ctx, out, p.revision, in)
	return d, err
}

// printLog logs the print() output of each evaluated decision at debug
// level, at most max bytes of it; both engines share it.
type printLog struct {
	log *slog.Logger // nil: print() output goes nowhere
	max int
}

// start returns the print hook of one evaluation, nil when nothing would
// be logged.
func (l printLog) start(ctx context.Context) *boundedPrint {
	if l.log == nil || !l.log.Enabled(ctx, slog.LevelDebug) {
		return nil
	}
	return &boundedPrint{max: l.max}
}

// done logs what the evaluation of in printed into out, if anything.
func (l printLog) done(ctx context.Context, out *boundedPrint, revision string, in *authz.Input) {
	if out.buf.Len() > 0 || out.truncated {
		l.log.DebugContext(ctx, "policy print", "request_id", authz.RequestID(ctx), "revision", revision,
			"subject", in.Identity.Subject, "output", strings.TrimSuffix(out.buf.String(), "\n"), "truncated", out.truncated)
	}
}

func (p *Policy) eval(ctx context.Context, in *authz.Input, opts ...rego.EvalOption) (authz.Decision, error) {
	// Nothing reads OPA's metrics here, and their timers cost allocations.
	all := make([]rego.EvalOption, 0, len(opts)+2)
	all = append(append(append(all, rego.EvalMetrics(metrics.NoOp())), opts...), rego.EvalParsedInput(inputValue(in)))
	rs, err := p.prepared.Eval(ctx, all...)
	if err != nil {
		return authz.Decision{}, fmt.Errorf("policy revision %s: %w", p.revision, err)
	}
	return decide(rs, in, p.revision), nil
}

// Explain evaluates the policy's optional `reasons` for in, for diagnostics.
func (p *Policy) Explain(ctx context.Context, in authz.Input) ([]string, error) {
	pq := p.explain.Load()
	if pq == nil {
		opts := []func(*rego.Rego){
			rego.Query(fmt.Sprintf("reasons := [r | some r in %s.reasons]", p.query)),
			rego.Store(inmem.NewFromObject(p.b.Data)),
			rego.EnablePrintStatements(true),
		}
		for _, m := range p.b.Modules {
			opts = append(opts, rego.ParsedModule(m))
		}
		prepared, err := rego.New(opts...).PrepareForEval(ctx)
		if err != nil {
			return nil, err
		}
		pq = &prepared
		p.explain.Store(pq)
	}
	rs, err := pq.Eval(ctx, rego.EvalParsedInput(inputValue(&in)))
	if err != nil || len(rs) == 0 {
		return nil, err
	}
	var out []string
	items, _ := rs[0].Bindings["reasons"].([]any)
	for _, r := range items {
		if s, ok := r.(string); ok {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out, nil
}

// cacheKey digests everything a cached decision may depend on except the
// client: the revision, the service, the whole identity and the scopes.
// Policies that read input.client are never cached (see Uncacheable).
func cacheKey(revision string, in *authz.Input, shape keyShape) [sha256.Size]byte {
	h := sha256.New()
	var n [4]byte
	field := func(s string) {
		binary.BigEndian.PutUint32(n[:], uint32(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field(revision)
	field(in.Service)
	id := &in.Identity
	field(id.Subject)
	field(id.Name)
	field(id.Connector)
	if id.Anonymous {
		field("anonymous")
	} else {
		field("")
	}
	groups := slices.Clone(id.Groups)
	slices.Sort(groups)
	field(strings.Join(groups, "\x00"))
	if len(id.Claims) > 0 {
		c, _ := json.Marshal(id.Claims) // sorted keys: stable
		field(string(c))
	} else {
		field("")
	}
	for i, s := range in.Scopes {
		field(s.Type)
		field(shape.scopeName(s.Type, s.Name, id.Connector))
		if shape.namespace {
			// Grants go to scopes by name, so scopes that share a name
			// share them: the key says which earlier scope, if any, this
			// one repeats, or team/a,team/a would answer team/a,team/b.
			binary.BigEndian.PutUint32(n[:], uint32(firstNamed(in.Scopes, i)))
			h.Write(n[:])
		}
		field(strings.Join(s.Actions, ","))
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// firstNamed is the index of the first scope with the type and name of
// scopes[i] (i itself when none before it has them).
func firstNamed(scopes []scope.Scope, i int) int {
	for j := range i {
		if scopes[j].Type == scopes[i].Type && scopes[j].Name == scopes[i].Name {
			return j
		}
	}
	return i
}
