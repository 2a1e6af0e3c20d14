package policies

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/hooks"
	"github.com/open-policy-agent/opa/v1/logging"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/plugins"
	opabundle "github.com/open-policy-agent/opa/v1/plugins/bundle"
	"github.com/open-policy-agent/opa/v1/plugins/discovery"
	"github.com/open-policy-agent/opa/v1/plugins/logs"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/server"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/util"

	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/internal/probe"
)

// OPAOptions is what OpenOPA needs besides OPA's configuration document.
type OPAOptions struct {
	ID    string // OPA's instance id (labels.id in decision logs, status)
	Query string // the package of the rules, DefaultQuery when empty
	// CacheSize, CacheTTL and CacheMaxBytes size the decision cache as
	// NewEngine's arguments do.
	CacheSize     int
	CacheTTL      time.Duration
	CacheMaxBytes int64
	// MaxFileBytes becomes each bundle's size_limit_bytes where the
	// document does not set one (OPA's default is 1 GiB).
	MaxFileBytes int64
	// Limits bound every bundle a service answers with, before OPA reads
	// it: its total size and number of files (OPA bounds neither).
	Limits bundles.Limits
	// DecisionLogBufferBytes becomes decision_logs.reporting.
	// buffer_size_limit_bytes where the document does not bound the
	// buffer; DefaultDecisionLogBufferBytes when 0.
	DecisionLogBufferBytes int64
	// PersistenceDirectory is where persisted bundles go when the document
	// names no persistence_directory: OPA's own default, .opa in the
	// working directory, is / under systemd, read-only and shared.
	PersistenceDirectory string
	Log                  *slog.Logger
	// Probe, when set, records every request to the services: its
	// latency, and whether the server answered (200, or 304 not modified).
	Probe probe.Recorder
	// Timeout, when set, bounds each request to a service, its body
	// included (OPA bounds the wait for the headers only).
	Timeout time.Duration
	// DecisionLog, when set, receives every decision-log event as one JSON
	// line, as OPA's console logger writes it, after OPA's mask and drop
	// policies (policy.decision_log: see opa_decisionlogfile.go).
	DecisionLog io.Writer
	// DigestRevisions names the policy of a bundle without a manifest
	// revision by a digest of its content, in decision logs too, as a
	// local policy.source always was (contentRevision).
	DigestRevisions bool
}

// DefaultDecisionLogBufferBytes bounds the decision logs waiting for
// upload, where the document does not: OPA's default is no bound, and a
// collector that fails or hangs makes every decision stay in memory
// (about 125 bytes each, compressed): 64 MiB holds about half a million.
const DefaultDecisionLogBufferBytes = 64 << 20

// OPA is the policy engine run by OPA's own plugin manager: its bundles,
// services, keys, persistence, decision logs and status are configured by
// an OPA configuration document, as `opa run` reads it (decision 0014).
type OPA struct {
	manager *plugins.Manager
	query   string
	digests bool // OPAOptions.DigestRevisions
	cache   *decisionCache
	// gen counts activations: the manager's compiler trigger bumps it, and
	// a policy prepared for an older generation is prepared again.
	gen     atomic.Uint64
	ready   atomic.Bool // the bundle plugin's state is OK, see Ready
	mu      sync.Mutex  // prepares one policy at a time
	current atomic.Pointer[opaPolicy]

	log    *slog.Logger
	prints printLog      // print() output, logged at debug level
	logs   *logs.Plugin  // OPA's decision_logs plugin, nil when not configured
	reqs   atomic.Uint64 // decisions logged: req_id, as OPA's server counts requests

	listening atomic.Pointer[opabundle.Plugin] // the bundle plugin reporting to bundleStatus
	statusMu  sync.Mutex
	status    map[string]*opabundle.Status // as the bundle plugin last reported
	failing   map[string]*failures         // by bundle
}

// failures counts a bundle's consecutive failed attempts, which OPA's
// status does not: one per request the bundle plugin reports.
type failures struct {
	count       int
	since, last time.Time
}

// opaPolicy is the query prepared against one activation.
type opaPolicy struct {
	gen         uint64
	revision    string                       // the active bundles' revisions
	bundles     map[string]server.BundleInfo // the same, for decision logs
	key         string                       // what decisions are cached under
	prepared    rego.PreparedEvalQuery
	uncacheable string
	shape       keyShape // what decisions are cached under, as the policy declares
}

// OpenOPA builds the plugin manager and OPA's plugins from doc (YAML or
// JSON), as the OPA SDK and `opa run` do, without starting them. OPA
// validates the document; its warnings (unknown keys) are logged.
func OpenOPA(doc []byte, o OPAOptions) (*OPA, error) {
	limits := newLimiter(serviceClient{limits: o.Limits, probe: o.Probe, timeout: o.Timeout}, o.MaxFileBytes)
	doc, err := rewrite(doc, limits, o.PersistenceDirectory, cmpOr(o.DecisionLogBufferBytes, DefaultDecisionLogBufferBytes))
	if err != nil {
		return nil, err
	}
	factories := map[string]plugins.Factory{}
	if o.DecisionLog != nil {
		if doc, err = withDecisionLog(doc); err != nil {
			return nil, err
		}
		factories[DecisionLogPlugin] = decisionLogFactory{w: o.DecisionLog}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	l := &opaLogger{log: o.Log}
	m, err := plugins.New(doc, o.ID, inmem.NewWithOpts(inmem.OptReturnASTValuesOnRead(true)),
		plugins.Logger(l), plugins.ConsoleLogger(l),
		// print() calls stay in the compiled policy, as in NewEngine's;
		// Authorize gives each evaluation its hook when logging at debug.
		plugins.EnablePrintStatements(true),
		plugins.WithParserOptions(ast.ParserOptions{ProcessAnnotation: true, RegoVersion: ast.RegoV1}))
	if err != nil {
		return nil, err
	}
	limits.manager = m
	if err := limits.register(context.Background(), false); err != nil {
		return nil, err
	}
	for _, w := range m.Config.Warnings {
		o.Log.Warn("opa configuration", "warning", w)
	}
	if len(m.Config.Bundles) == 0 && len(m.Config.Bundle) == 0 && len(m.Config.Discovery) == 0 {
		return nil, errors.New("bundles: at least one bundle is required: the policy comes from it")
	}
	var boot map[string]any
	if err := json.Unmarshal(doc, &boot); err != nil {
		return nil, err
	}
	d, err := discovery.New(m, discovery.BootConfig(boot), discovery.Hooks(hooks.New(limits)),
		discovery.Factories(factories))
	if err != nil {
		return nil, err
	}
	m.Register(discovery.Name, d)
	e := &OPA{manager: m, query: o.Query, log: o.Log, digests: o.DigestRevisions, status: map[string]*opabundle.Status{}, failing: map[string]*failures{}, logs: logs.Lookup(m),
		prints: printLog{log: o.Log, max: DefaultPrintMaxBytes}}
	warnImmediateUploads(e.logs, o.Log)
	e.listenToBundles()
	// A discovery bundle creates the bundle plugin later: listen to it as
	// soon as the manager reports its status. Not in the manager's status
	// goroutine, which the plugin lookup could wait for.
	// The manager calls its listeners before UpdatePluginStatus returns, so
	// ready follows the bundle plugin's state without asking the manager's
	// status goroutine on every request (a channel round trip and a copy).
	m.RegisterPluginStatusListener("tollgate", func(st map[string]*plugins.Status) {
		s := st[opabundle.Name]
		e.ready.Store(s != nil && s.State == plugins.StateOK)
		go e.listenToBundles()
	})
	if e.query == "" {
		e.query = DefaultQuery
	}
	if o.CacheSize > 0 && o.CacheTTL > 0 {
		e.cache = newDecisionCache(o.CacheSize, o.CacheTTL, cmpOr(o.CacheMaxBytes, DefaultCacheMaxBytes))
	}
	m.RegisterCompilerTrigger(func(storage.Transaction) {
		e.gen.Add(1)
		if e.cache != nil {
			e.cache.purge()
		}
	})
	return e, nil
}

func cmpOr(a, b int64) int64 {
	if a > 0 {
		return a
	}
	return b
}

// rewrite converts doc to JSON, sets persistence_directory when it is
// absent and persist is given, puts tollgate's limits in front of its
// services and bundles (limiter.limit: OPA's default size_limit_bytes,
// 1 GiB a file, is no bound at all), and bounds the decision-log buffer
// to dlBuffer bytes where the document leaves it unbounded
// (boundDecisionLogs).
func rewrite(doc []byte, limits *limiter, persist string, dlBuffer int64) ([]byte, error) {
	var v map[string]any
	if err := util.Unmarshal(doc, &v); err != nil {
		return nil, fmt.Errorf("opa configuration: %w", err)
	}
	if v["bundle"] != nil {
		// OPA reads it with a fixed 1 GiB file limit and no signing.
		return nil, errors.New("bundle: OPA's deprecated single-bundle form is not supported (no size limit, no signing): name the bundle under bundles")
	}
	if v["persistence_directory"] == nil && persist != "" {
		v["persistence_directory"] = persist
	}
	boundDecisionLogs(v, dlBuffer)
	if err := limits.limit(v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// Manager is OPA's plugin manager, for what else an embedder asks of it.
func (e *OPA) Manager() *plugins.Manager { return e.manager }

// Start starts OPA's plugins: the bundle plugin activates what it
// persisted, then downloads in the background.
func (e *OPA) Start(ctx context.Context) error {
	if err := e.checkPersistence(); err != nil {
		return err
	}
	return e.manager.Start(ctx)
}

// Stop stops the plugins (flushing decision logs as OPA does), returning
// when ctx is done at the latest: OPA's decision-log plugin waits for an
// upload in flight under a context of its own, for as long as a hanging
// collector keeps it (each queued chunk up to the service's
// response_header_timeout_seconds). The plugins go on stopping behind.
func (e *OPA) Stop(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.manager.Stop(ctx)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		e.log.Warn("stopping OPA's plugins took longer than allowed: decisions not uploaded yet are abandoned", "err", ctx.Err())
	}
}

// Ready reports whether every configured bundle has been activated at least
// once, as OPA's /health?bundles does. Before, Authorize refuses: a policy
// built from part of its bundles might miss a deny.
func (e *OPA) Ready() bool { return e.ready.Load() }

// Authorize evaluates the policy for in against what the bundle plugin
// activated. An error means deny.
func (e *OPA) Authorize(ctx context.Context, in authz.Input) (authz.Decision, error) {
	if !e.Ready() {
		e.logNoPolicy(ctx, &in)
		return authz.Decision{}, authz.ErrNoPolicy
	}
	if d, ok := e.cached(&in); ok {
		return d, nil
	}
	// The read transaction first: an activation commits, compiler trigger
	// included, under the store's write lock, so from here on the compiler,
	// the generation and the data agree.
	txn, err := e.manager.Store.NewTransaction(ctx)
	if err != nil {
		return authz.Decision{}, fmt.Errorf("policy store: %w", err)
	}
	defer e.manager.Store.Abort(ctx, txn)
	var m metrics.Metrics // what OPA's server measures, for the decision log
	if e.logs != nil {
		m = metrics.New()
		m.Timer(metrics.ServerHandler).Start()
	}
	p, err := e.policy(ctx, txn, m)
	if err != nil {
		return authz.Decision{}, err
	}
	d, err := e.decide(ctx, txn, p, &in, m)
	if e.logs != nil {
		e.logDecision(ctx, txn, p.bundles, &in, d, err, m)
	}
	if err != nil {
		return authz.Decision{}, fmt.Errorf("policy revision %s: %w", p.revision, err)
	}
	return d, nil
}

// cached answers from the decision cache without a store transaction, as
// Engine does: entries are keyed by generation and purged on activation, so
// a hit under the current generation was evaluated against it. With
// decision logs, a cached decision is logged with the store's bundles: it
// goes the long way.
func (e *OPA) cached(in *authz.Input) (authz.Decision, bool) {
	if e.cache == nil || e.logs != nil {
		return authz.Decision{}, false
	}
	p := e.current.Load()
	if p == nil || p.gen != e.gen.Load() || p.uncacheable != "" {
		return authz.Decision{}, false
	}
	d, ok := e.cache.get(cacheKey(p.key, in, p.shape))
	if !ok {
		return authz.Decision{}, false
	}
	return authz.Decision{Allowed: d.allowed, TokenTTL: d.ttl, Revision: p.revision, Cached: true}, true
}

// decide answers from the decision cache or evaluates p.
// m, when not nil, takes OPA's evaluation metrics.
func (e *OPA) decide(ctx context.Context, txn storage.Transaction, p *opaPolicy, in *authz.Input, m metrics.Metrics) (authz.Decision, error) {
	cacheable := e.cache != nil && p.uncacheable == ""
	var key [sha256.Size]byte
	if cacheable {
		key = cacheKey(p.key, in, p.shape)
		if d, ok := e.cache.get(key); ok {
			return authz.Decision{Allowed: d.allowed, TokenTTL: d.ttl, Revision: p.revision, Cached: true}, nil
		}
	}
	if m != nil {
		m.Timer(metrics.RegoInputParse).Start()
	}
	// Only the decision log reads OPA's metrics; without it, their timers
	// would cost allocations for nothing.
	opts := []rego.EvalOption{rego.EvalParsedInput(inputValue(in)), rego.EvalTransaction(txn), rego.EvalMetrics(metrics.NoOp())}
	if m != nil {
		m.Timer(metrics.RegoInputParse).Stop()
		opts[2] = rego.EvalMetrics(m)
	}
	out := e.prints.start(ctx)
	if out != nil {
		opts = append(opts, rego.EvalPrintHook(out))
	}
	rs, err := p.prepared.Eval(ctx, opts...)
	if out != nil {
		e.prints.done(ctx, out, p.revision, in)
	}
	if err != nil {
		return authz.Decision{}, err
	}
	d := decide(rs, in, p.revision)
	if cacheable {
		e.cache.add(key, d.Allowed, d.TokenTTL)
	}
	return d, nil
}

// Revision is the active bundles' revisions ("" before the first
// activation): one bundle's revision, or name=revision pairs.
func (e *OPA) Revision() string {
	if p := e.current.Load(); p != nil && p.gen == e.gen.Load() {
		return p.revision
	}
	ctx := context.Background()
	txn, err := e.manager.Store.NewTransaction(ctx)
	if err != nil {
		return ""
	}
	defer e.manager.Store.Abort(ctx, txn)
	if e.digests && e.Ready() {
		if p, err := e.policy(ctx, txn, nil); err == nil {
			return p.revision // the digest, prepared as the next request would
		}
	}
	rev, _, _ := e.revisions(ctx, txn)
	return rev
}

// policy returns the query prepared for the activation txn sees. m, when
// not nil, counts as OPA's server does: a query cache hit, or the time
// this call spent preparing.
func (e *OPA) policy(ctx context.Context, txn storage.Transaction, m metrics.Metrics) (*opaPolicy, error) {
	gen := e.gen.Load()
	if p := e.current.Load(); p != nil && p.gen == gen {
		queryCacheHit(m, 1)
		return p, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.current.Load(); p != nil && p.gen == gen {
		queryCacheHit(m, 1)
		return p, nil
	}
	queryCacheHit(m, 0)
	if m != nil {
		defer m.Timer(metrics.RegoQueryCompile).Stop()
		m.Timer(metrics.RegoQueryCompile).Start()
	}
	compiler := e.manager.GetCompiler()
	rev, byName, err := e.revisions(ctx, txn)
	if err != nil {
		return nil, err
	}
	if rev == "" && e.digests {
		if rev, err = contentRevision(ctx, e.manager.Store, txn); err != nil {
			return nil, err
		}
		for name := range byName { // the decision log names it too
			byName[name] = server.BundleInfo{Revision: rev}
		}
	}
	// With decision logs, an error carries its stack_trace, as OPA's server
	// logs it; it costs only when there is an error.
	withTTL, err := mayDefineTTL(ctx, e.query, compiler.Modules, e.manager.Store, txn)
	if err != nil {
		return nil, fmt.Errorf("policy revision %s: %w", rev, err)
	}
	pq, err := rego.New(rego.Query(decisionQuery(e.query, withTTL)), rego.Compiler(compiler), rego.GenerateJSON(rawResult),
		rego.Store(e.manager.Store), rego.Transaction(txn), rego.StackTraces(e.logs != nil)).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy revision %s: %w", rev, err)
	}
	shape, err := readKeyShape(ctx, e.query, rego.Compiler(compiler), rego.Store(e.manager.Store), rego.Transaction(txn))
	if err != nil {
		return nil, fmt.Errorf("policy revision %s: %w", rev, err)
	}
	p := &opaPolicy{gen: gen, revision: rev, bundles: byName, key: fmt.Sprintf("%d\x00%s", gen, rev), prepared: pq,
		uncacheable: uncacheable(servedModules(compiler.Modules)), shape: shape}
	e.current.Store(p)
	return p, nil
}

// queryCacheHit records, as counter_server_query_cache_hit, whether the
// query was already prepared.
func queryCacheHit(m metrics.Metrics, n uint64) {
	if m != nil {
		m.Counter(metrics.ServerQueryCacheHit).Add(n)
	}
}

// revisions names the active bundles' revisions: the revision alone for one
// bundle, sorted name=revision pairs for several; and each by its name.
func (e *OPA) revisions(ctx context.Context, txn storage.Transaction) (string, map[string]server.BundleInfo, error) {
	names, err := bundle.ReadBundleNamesFromStore(ctx, e.manager.Store, txn)
	if err != nil && !storage.IsNotFound(err) {
		return "", nil, fmt.Errorf("reading the active bundles: %w", err)
	}
	slices.Sort(names)
	pairs := make([]string, 0, len(names))
	byName := make(map[string]server.BundleInfo, len(names))
	for _, n := range names {
		rev, err := bundle.ReadBundleRevisionFromStore(ctx, e.manager.Store, txn, n)
		if err != nil && !storage.IsNotFound(err) {
			return "", nil, fmt.Errorf("reading the revision of bundle %s: %w", n, err)
		}
		byName[n] = server.BundleInfo{Revision: rev}
		pairs = append(pairs, n+"="+rev)
	}
	if len(names) == 1 {
		return byName[names[0]].Revision, byName, nil
	}
	return strings.Join(pairs, ","), byName, nil
}

// UncacheableReason says why decisions of the active policy are not cached.
func (e *OPA) UncacheableReason() string {
	if p := e.current.Load(); p != nil {
		return p.uncacheable
	}
	return ""
}

// CacheStats returns the number of cached decisions and their bytes.
func (e *OPA) CacheStats() (entries int, bytes int64) {
	if e.cache == nil {
		return 0, 0
	}
	return e.cache.stats()
}

// opaLogger writes OPA's logs to slog.
type opaLogger struct{ log *slog.Logger }

// logf logs with every URL redacted: OPA's messages quote the URLs they
// fetched, a pre-signed signature in the query, at debug a password too.
func (l *opaLogger) logf(level slog.Level, f string, a []any) {
	l.log.Log(context.Background(), level, bundles.RedactURLs(fmt.Sprintf(f, a...)), "component", "opa")
}

func (l *opaLogger) Debug(f string, a ...any) { l.logf(slog.LevelDebug, f, a) }
func (l *opaLogger) Info(f string, a ...any)  { l.logf(slog.LevelInfo, f, a) }
func (l *opaLogger) Warn(f string, a ...any)  { l.logf(slog.LevelWarn, f, a) }
func (l *opaLogger) Error(f string, a ...any) { l.logf(slog.LevelError, f, a) }

func (l *opaLogger) WithFields(fields map[string]any) logging.Logger {
	args := make([]any, 0, 2*len(fields))
	for k, v := range fields {
		if s, ok := v.(string); ok {
			v = bundles.RedactURLs(s)
		}
		args = append(args, k, v)
	}
	return &opaLogger{log: l.log.With(args...)}
}

func (l *opaLogger) GetLevel() logging.Level {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		return logging.Debug
	}
	return logging.Info
}

func (l *opaLogger) SetLevel(logging.Level) {}

// listenToBundles has the bundle plugin, once there is one, report each
// bundle's status to bundleStatus, for /readyz.
func (e *OPA) listenToBundles() {
	bp := opabundle.Lookup(e.manager)
	if bp == nil || e.listening.Swap(bp) == bp {
		return
	}
	bp.RegisterBulkListener("tollgate", e.bundleStatus)
}

func (e *OPA) bundleStatus(st map[string]*opabundle.Status) {
	e.statusMu.Lock()
	defer e.statusMu.Unlock()
	for name, s := range st {
		if prev := e.status[name]; prev == nil || !s.LastRequest.Equal(prev.LastRequest) {
			e.countAttempt(name, s)
		}
		c := *s
		e.status[name] = &c
	}
}

// countAttempt counts a new request of the bundle plugin for bundle name.
func (e *OPA) countAttempt(name string, s *opabundle.Status) {
	f := e.failing[name]
	if f == nil {
		f = &failures{}
		e.failing[name] = f
	}
	if !failed(s) {
		f.count = 0
		return
	}
	if f.count == 0 {
		f.since = s.LastRequest
	}
	f.count++
	f.last = s.LastRequest
}

func failed(s *opabundle.Status) bool { return s.Code != "" || s.Message != "" || len(s.Errors) > 0 }

// BundleState is one configured bundle, for /readyz.
type BundleState struct {
	Name string
	// Revision is the active revision; Active is false before the bundle
	// was first activated.
	Revision string
	Active   bool
	// Persisted is true when the active revision was read from the
	// persistence directory and no download has succeeded since.
	Persisted    bool
	LastDownload time.Time
	// LastError is the bundle plugin's last error, "" after a success.
	LastError string
	// Failures counts the failed attempts since the last success, the
	// first at FailingSince; LastFailure is the latest failure ever.
	Failures     int
	FailingSince time.Time
	LastFailure  time.Time
	// LastActivation is when a revision was last activated.
	LastActivation time.Time
}

// Bundles returns the state of every configured bundle, sorted by name.
func (e *OPA) Bundles(ctx context.Context) []BundleState {
	bp := opabundle.Lookup(e.manager)
	if bp == nil {
		return nil
	}
	txn, err := e.manager.Store.NewTransaction(ctx)
	if err != nil {
		return nil
	}
	defer e.manager.Store.Abort(ctx, txn)
	active, _ := bundle.ReadBundleNamesFromStore(ctx, e.manager.Store, txn)
	e.statusMu.Lock()
	defer e.statusMu.Unlock()
	var out []BundleState
	for _, name := range slices.Sorted(maps.Keys(bp.Config().Bundles)) {
		st := BundleState{Name: name, Active: slices.Contains(active, name)}
		if st.Active {
			st.Revision, _ = bundle.ReadBundleRevisionFromStore(ctx, e.manager.Store, txn, name)
		}
		if s := e.status[name]; s != nil {
			st.LastDownload, st.LastActivation = s.LastSuccessfulDownload, s.LastSuccessfulActivation
			if f := e.failing[name]; f != nil {
				st.Failures, st.FailingSince, st.LastFailure = f.count, f.since, f.last
			}
			if failed(s) {
				st.LastError = lastError(s)
			}
		}
		st.Persisted = st.Active && st.LastDownload.IsZero()
		out = append(out, st)
	}
	return out
}

// lastError is the bundle plugin's error, with the HTTP status it got.
func lastError(s *opabundle.Status) string {
	msg := s.Code + ": " + s.Message
	if len(s.Errors) > 0 {
		msg += " " + fmt.Sprint(s.Errors)
	}
	if s.HTTPCode != "" {
		msg += " (HTTP " + string(s.HTTPCode) + ")"
	}
	return msg
}
