// Package serve is the broker at run time: what one configuration builds
// (services, keys, connectors, throttle), what outlives a reload (the
// policy engine, caches, shared stores, metrics), and the reload itself.
package serve

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/internal/config"
	"github.com/tollgate/tollgate/internal/yamlconf"
	"github.com/tollgate/tollgate/policies"
)

// Options is what a Runtime needs besides its configuration.
type Options struct {
	Log     *slog.Logger
	Stdout  io.Writer // the decision log's "stdout"
	Version string    // reported in decision logs
	// Check builds and verifies everything, then starts nothing: no
	// polling, no watchers, no Redis traffic; a policy URL that cannot be
	// fetched is an error (serve starts without it and keeps trying).
	Check bool
	// Offline (with Check) does not fetch a policy URL.
	Offline bool
}

// RequestGrace bounds a request's life (the server's write timeout): a
// connector a reload drops is stopped this long after.
const RequestGrace = 30 * time.Second

// Runtime is a running broker without its listener: Handler serves it,
// Reload applies a new configuration, Close stops it.
type Runtime struct {
	cfg     *config.Config // the configuration it started with
	opts    Options
	log     *slog.Logger
	bg      context.Context    // the life of connectors, polling, watchers
	stop    context.CancelFunc // ends bg
	closers []func()           // in reverse order of opening

	opa *policies.OPA
	// source is policy.source (a URL redacted), run as OPA's configuration
	// (config.ShortFormOPA); "" with opa:.
	source     string
	authorizer authz.Authorizer
	cache      *identity.CredentialCache
	stores     *sharedStores
	reg        *prometheus.Registry
	metrics    *broker.Metrics
	backends   *backendMetrics // nil when metrics are off
	reloads    *prometheus.CounterVec
	// decisionFile is the decision log's file (nil for stdout or off):
	// a reload opens it again, for log rotation.
	decisionFile *logFile
	// decisionLog is policy.decision_log's writer, nil when off.
	decisionLog io.Writer

	current atomic.Pointer[generation]
	tlsCert atomic.Pointer[tls.Certificate]
}

// New builds the broker cfg describes: it loads the policy, opens the
// decision log and the shared stores, loads keys and builds every
// connector. Any error is the configuration's, named by its path and line.
// The runtime lives until Close (not until ctx ends), so that requests
// draining after a signal still reach their connectors.
func New(ctx context.Context, cfg *config.Config, opts Options) (*Runtime, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	r := &Runtime{cfg: cfg, opts: opts, log: opts.Log, bg: bg, stop: stop, reg: prometheus.NewRegistry(),
		cache: identity.NewCredentialCache(*cfg.CredentialCache.Size, cfg.CredentialCache.TTL)}
	if *cfg.Metrics.Enabled {
		r.backends = newBackendMetrics(cfg.Metrics.BackendChecks()) // before the parts that call backends open
	}
	if err := r.open(ctx); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// open builds every part of r, in the order a broken part is best reported.
func (r *Runtime) open(ctx context.Context) error {
	cfg := r.cfg
	if err := r.openDecisionLogWriter(); err != nil {
		return cfg.Invalid(err)
	}
	if err := r.openPolicy(ctx); err != nil {
		return err
	}
	r.openDecisionLog()
	stores, err := openSharedStores(ctx, r.bg, cfg, r.log, r.opts.Check, r.backends.factory("redis"))
	if err != nil {
		return cfg.Invalid(err)
	}
	r.stores = stores
	r.closers = append(r.closers, stores.close)
	cert, err := loadCert(cfg)
	if err != nil {
		return cfg.Invalid(err)
	}
	r.tlsCert.Store(cert)
	if *cfg.Metrics.Enabled {
		r.registerMetrics()
	}
	gen, err := r.build(cfg, nil)
	if err != nil {
		return cfg.Invalid(err)
	}
	r.current.Store(gen)
	return nil
}

// Handler serves token requests with the configuration in force, and
// /metrics unless metrics.listen moves them (see MetricsHandler).
func (r *Runtime) Handler() http.Handler {
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.current.Load().srv.ServeHTTP(w, req)
	})
	if !*r.cfg.Metrics.Enabled || r.cfg.Metrics.Listen != "" {
		return h
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", r.MetricsHandler())
	mux.Handle("/", h)
	return mux
}

// MetricsHandler serves the Prometheus metrics; nil when they are off.
func (r *Runtime) MetricsHandler() http.Handler {
	if !*r.cfg.Metrics.Enabled {
		return nil
	}
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(r.log.Handler(), slog.LevelWarn)})
}

// TLSConfig serves the configured certificate, the one in force after a
// reload; nil without tls.
func (r *Runtime) TLSConfig() *tls.Config {
	if r.cfg.TLS == nil {
		return nil
	}
	return &tls.Config{MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return r.tlsCert.Load(), nil }}
}

// PolicyRevision is the revision of the policy in force ("" without one).
func (r *Runtime) PolicyRevision() string {
	return r.opa.Revision()
}

// Drain makes /readyz answer 503 while in-flight requests finish.
func (r *Runtime) Drain() {
	if g := r.current.Load(); g != nil {
		g.srv.SetDraining()
	}
}

// Close stops the connectors, the policy polling, the stores and the
// decision log. Requests still in flight should have finished.
func (r *Runtime) Close() error {
	if g := r.current.Load(); g != nil {
		retire(g.connectors, nil, 0)
	}
	r.stop()
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
	r.closers = nil
	return nil
}

// loadCert loads the TLS key pair of cfg; nil without tls.
func loadCert(cfg *config.Config) (*tls.Certificate, error) {
	if cfg.TLS == nil {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
	if err != nil {
		return nil, yamlconf.Prefix("tls", err)
	}
	return &cert, nil
}

// ready is /readyz's test: a policy is loaded.
func (r *Runtime) ready() error {
	if !r.opa.Ready() {
		return authz.ErrNoPolicy
	}
	return nil
}

// readyDetail is /readyz's body: the policy and the shared state.
func (r *Runtime) readyDetail() []string {
	lines := opaStatus(r.bg, r.opa)
	if r.source != "" {
		lines = append([]string{"policy source: " + r.source}, lines...)
	}
	return append(lines, r.stores.status()...)
}

// keysValid checks that every service can sign now, naming its keys.
func keysValid(services []*broker.Service, now time.Time) error {
	for i, s := range services {
		if s.Keys.Signer(now) == nil {
			return yamlconf.Errorf(fmt.Sprintf("services[%d].keys", i), "no key valid for signing now (each is scheduled for later or has expired)")
		}
	}
	return nil
}
