package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/urfave/cli/v2"

	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/redisstore"
	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/internal/atomicfile"
	"github.com/tollgate/tollgate/internal/config"
	"github.com/tollgate/tollgate/internal/secret"
	"github.com/tollgate/tollgate/policies"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the token broker",
		Description: `Serves GET and POST /token, /.well-known/jwks.json, /certs.pem, /healthz,
/readyz and /metrics (or /metrics on metrics.listen). Without --config it runs a development broker: example users with
generated passwords, the default policy, and a key created on first start, all
kept in --state-dir; it prints how to point a registry and a client at it.

Examples:
   tollgate serve
   tollgate serve --config /etc/tollgate/config.yaml
   tollgate serve --config /etc/tollgate/config.yaml --check   # validate and exit`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "configuration file (YAML)", EnvVars: []string{"TOLLGATE_CONFIG"}},
			&cli.StringFlag{Name: "state-dir", Value: ".tollgate", Usage: "development mode: where keys, users and the policy copy live"},
			&cli.StringFlag{Name: "listen", Usage: "listen address, overrides the configuration"},
			&cli.BoolFlag{Name: "check", Usage: "validate the configuration file and exit (0 when it is valid)"},
			pprofFlag(),
		},
		Action: func(c *cli.Context) error {
			cfg, dev, err := loadOrDevConfig(c)
			if err != nil {
				return err
			}
			if l := c.String("listen"); l != "" {
				cfg.Listen = l
			}
			if c.Bool("check") {
				ctx, cancel := context.WithCancel(c.Context)
				defer cancel() // stops the connectors' watchers
				if _, err := cfg.BuildChain(config.ConnectorEnv{Ctx: ctx}); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "configuration valid: %d service(s), %d connector(s), policy from %s\n", len(cfg.Services), len(cfg.Identity), bundles.RedactURL(cfg.Policy.Source))
				return nil
			}
			if err := servePprof(c, cfg); err != nil {
				return err
			}
			return serve(c.Context, cfg, dev, c.App.Writer, c.App.ErrWriter)
		},
	}
}

func loadOrDevConfig(c *cli.Context) (*config.Config, *devSetup, error) {
	if path := c.String("config"); path != "" {
		cfg, err := config.Load(path)
		return cfg, nil, err
	}
	return devConfig(c.String("state-dir"), c.String("listen"))
}

func newLogger(cfg config.LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// serve runs the broker until ctx ends or SIGINT/SIGTERM; the development
// banner goes to out, logs to logOut.
func serve(ctx context.Context, cfg *config.Config, dev *devSetup, out, logOut io.Writer) error {
	started := time.Now()
	log := newLogger(cfg.Log, logOut)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// Process-wide parts: the policy engine and its loader, the caches and
	// throttle counters, the metrics. A SIGHUP rebuilds everything else.
	dc := cfg.Policy.DecisionCache
	engine := policies.NewEngine(*dc.Size, dc.TTL, policies.CacheMaxBytes(int64(dc.MaxBytes)))
	poller, err := newPolicyPoller(cfg, engine, log)
	if err != nil {
		return err
	}
	if err := poller.Once(ctx); err != nil {
		if !poller.Source.IsURL() {
			return err // a broken local policy at start is a configuration error
		}
		// A bundle server may be down while the broker starts: serve, deny
		// every request (503, fail closed) and keep polling.
		log.Error("no policy yet: every token request is refused until the bundle loads",
			"source", bundles.RedactURL(cfg.Policy.Source), "err", err)
	}
	go poller.Run(ctx)
	var authorizer authz.Authorizer = engine
	if dl := cfg.Policy.DecisionLog; dl.Enabled {
		w, closeLog, err := openDecisionLog(dl.Path, out)
		if err != nil {
			return err
		}
		defer closeLog()
		authorizer = policies.NewDecisionLog(engine, w, cfg.Policy.Query, map[string]string{"id": instanceID(), "version": version})
	}
	stores, err := openSharedStores(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stores.close()
	shared := &sharedState{
		log: log, engine: engine, poller: poller, authorizer: authorizer,
		cache:  identity.NewCredentialCache(*cfg.CredentialCache.Size, cfg.CredentialCache.TTL),
		stores: stores,
		reg:    prometheus.NewRegistry(),
	}
	if *cfg.Metrics.Enabled {
		shared.metrics = broker.NewMetrics(shared.reg)
		registerServeMetrics(shared.reg, engine, poller, shared.cache)
		stores.registerMetrics(shared.reg)
		shared.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_config_reloads_total", Help: "Configuration reloads (SIGHUP), by result.",
		}, []string{"result"})
		shared.reg.MustRegister(shared.reloads)
	}

	gen, err := shared.build(ctx, cfg, nil)
	if err != nil {
		return err
	}
	current := &currentServer{}
	current.p.Store(gen)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	var handler http.Handler = current
	if *cfg.Metrics.Enabled {
		mh := promhttp.HandlerFor(shared.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)})
		if cfg.Metrics.Listen == "" {
			mux := http.NewServeMux()
			mux.Handle("GET /metrics", mh)
			mux.Handle("/", current)
			handler = mux
		} else {
			mln, err := net.Listen("tcp", cfg.Metrics.Listen)
			if err != nil {
				ln.Close()
				return fmt.Errorf("metrics.listen: %w", err)
			}
			ms := &http.Server{Handler: mh, ReadHeaderTimeout: 10 * time.Second}
			go ms.Serve(mln)
			defer ms.Close()
		}
	}
	hs := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      requestGrace,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	var tlsCert atomic.Pointer[tls.Certificate]
	if cfg.TLS != nil {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			ln.Close()
			return fmt.Errorf("tls: %w", err)
		}
		tlsCert.Store(&cert)
		hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return tlsCert.Load(), nil }}
	}
	log.Info("tollgate serving", "listen", ln.Addr().String(), "version", version,
		"policy_revision", revisionOf(engine), "startup_ms", time.Since(started).Milliseconds())
	if dev != nil {
		dev.printBanner(out, ln.Addr().String())
	}

	errc := make(chan error, 1)
	if cfg.TLS != nil {
		go func() { errc <- hs.ServeTLS(ln, "", "") }()
	} else {
		go func() { errc <- hs.Serve(ln) }()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	changed := make(chan struct{}, 1)
	if cfg.Path() != "" {
		go watchConfigFiles(ctx, cfg, configPoll, changed)
	}
	for running := true; running; {
		select {
		case err := <-errc:
			retire(current.p.Load().connectors, nil, 0)
			return err
		case <-ctx.Done():
			running = false
		case <-hup:
			shared.reload(ctx, cfg, current, &tlsCert)
		case <-changed:
			log.Info("configuration or key files changed: reloading")
			shared.reload(ctx, cfg, current, &tlsCert)
		}
	}
	log.Info("shutting down: draining in-flight requests")
	current.p.Load().srv.SetDraining()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = hs.Shutdown(shutdownCtx)
	retire(current.p.Load().connectors, nil, 0)
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// requestGrace bounds a request's life (the server's write timeout).
const requestGrace = 30 * time.Second

// sharedState is what outlives a configuration reload.
type sharedState struct {
	log        *slog.Logger
	engine     *policies.Engine
	poller     *bundles.Poller
	authorizer authz.Authorizer
	cache      *identity.CredentialCache
	stores     *sharedStores
	reg        *prometheus.Registry
	metrics    *broker.Metrics
	reloads    *prometheus.CounterVec
}

// generation is the broker built from one reading of the configuration:
// services and keys, connectors (their watchers stop with cancel), throttle.
type generation struct {
	srv        *broker.Server
	connectors map[string]*liveConnector // by name
}

// liveConnector is a built identity adapter and what stops it (its file
// watchers, its LDAP pool). A reload keeps a connector whose configuration
// did not change, with its caches, pooled connections and fetched OIDC keys:
// a reload while an identity provider is down must not lose them.
type liveConnector struct {
	key    string // its type, base directory and configuration text
	conn   identity.Connector
	cancel context.CancelFunc
}

// retire stops the connectors of old that next does not keep, after the
// longest a request may take (requests in flight finish on them).
func retire(old, next map[string]*liveConnector, after time.Duration) {
	for name, lc := range old {
		if next[name] != lc {
			time.AfterFunc(after, lc.cancel)
		}
	}
}

// connectors builds the chain of cfg, reusing the live connectors of prev
// whose configuration is unchanged.
func (sh *sharedState) connectors(ctx context.Context, cfg *config.Config, prev map[string]*liveConnector) (*identity.Chain, map[string]*liveConnector, error) {
	next := map[string]*liveConnector{}
	conns := make([]identity.Connector, 0, len(cfg.Identity))
	for i, c := range cfg.Identity {
		key := cfg.ConnectorKey(i)
		lc := prev[c.Name]
		if lc == nil || lc.key != key {
			cctx, cancel := context.WithCancel(ctx)
			conn, err := cfg.OpenConnector(config.ConnectorEnv{Ctx: cctx, Log: sh.log, Cache: sh.cache}, i)
			if err != nil {
				cancel()
				retire(next, prev, 0) // stop what this attempt built
				return nil, nil, err
			}
			lc = &liveConnector{key: key, conn: conn, cancel: cancel}
		}
		next[c.Name] = lc
		conns = append(conns, lc.conn)
	}
	return identity.NewChain(conns, sh.cache), next, nil
}

// currentServer serves with the generation in force; a reload swaps it
// atomically, so no request is dropped or served by half a configuration.
type currentServer struct {
	p atomic.Pointer[generation]
}

func (c *currentServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.p.Load().srv.ServeHTTP(w, r)
}

func (sh *sharedState) build(ctx context.Context, cfg *config.Config, prev map[string]*liveConnector) (*generation, error) {
	services, err := cfg.LoadServices()
	if err != nil {
		return nil, err
	}
	chain, live, err := sh.connectors(ctx, cfg, prev)
	if err != nil {
		return nil, err
	}
	refreshTTL := time.Duration(0)
	if *cfg.RefreshTokens.Enabled {
		refreshTTL = cfg.RefreshTokens.TTL
	}
	var throttle *broker.Throttle
	if tc := cfg.Throttle; *tc.Enabled {
		throttle = &broker.Throttle{Store: sh.stores.counters, Window: tc.Window, MaxPerUser: tc.MaxFailuresPerUser,
			MaxPerAddress: tc.MaxFailuresPerAddress, KnownAddressWindow: tc.KnownAddressTTL}
	}
	engine, poller := sh.engine, sh.poller
	clientAddr, err := cfg.ClientAddress()
	if err != nil {
		retire(live, prev, 0)
		return nil, err
	}
	srv, err := broker.New(broker.Options{
		ClientAddress: clientAddr,
		Services:      services,
		Authenticator: chain,
		Authorizer:    sh.authorizer,
		Anonymous:     *cfg.Anonymous,
		RefreshTTL:    refreshTTL,
		Throttle:      throttle,
		Revocations:   sh.stores.revocations,
		Metrics:       sh.metrics,
		Logger:        sh.log,
		Ready: func() error {
			if engine.Current() == nil {
				return authz.ErrNoPolicy
			}
			return nil
		},
		ReadyDetail: func() []string { return append(policyStatus(poller, engine), sh.stores.status()...) },
	})
	if err != nil {
		retire(live, prev, 0)
		return nil, err
	}
	return &generation{srv: srv, connectors: live}, nil
}

// reload reads the configuration file again (SIGHUP): services, keys,
// connectors, throttle and the TLS certificate take effect at once; a file
// that fails to load or build keeps the running configuration. Settings
// read only at start (listen, metrics, the policy section, caches) are
// reported when they changed.
func (sh *sharedState) reload(ctx context.Context, running *config.Config, current *currentServer, tlsCert *atomic.Pointer[tls.Certificate]) {
	result := "failure"
	defer func() {
		if sh.reloads != nil {
			sh.reloads.WithLabelValues(result).Inc()
		}
	}()
	if running.Path() == "" {
		sh.log.Warn("SIGHUP ignored: the development default has no configuration file to read again")
		return
	}
	cfg, err := config.Load(running.Path())
	if err != nil {
		sh.log.Error("reload failed; keeping the running configuration", "err", err)
		return
	}
	var cert *tls.Certificate
	if cfg.TLS != nil {
		c, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			sh.log.Error("reload failed; keeping the running configuration", "err", fmt.Errorf("tls: %w", err))
			return
		}
		cert = &c
	}
	gen, err := sh.build(ctx, cfg, current.p.Load().connectors)
	if err != nil {
		sh.log.Error("reload failed; keeping the running configuration", "err", err)
		return
	}
	old := current.p.Swap(gen)
	// Requests that started on the old generation finish on it: the
	// connectors it does not share close after the longest a request may take.
	retire(old.connectors, gen.connectors, requestGrace)
	sh.cache.Purge() // connectors may have changed: verify passwords again
	if cert != nil && running.TLS != nil {
		tlsCert.Store(cert)
	}
	result = "success"
	for what, changed := range map[string]bool{
		"listen":           cfg.Listen != running.Listen,
		"tls (on or off)":  (cfg.TLS == nil) != (running.TLS == nil),
		"metrics":          !reflect.DeepEqual(cfg.Metrics, running.Metrics),
		"policy":           !reflect.DeepEqual(cfg.Policy, running.Policy),
		"credential_cache": !reflect.DeepEqual(cfg.CredentialCache, running.CredentialCache),
	} {
		if changed {
			sh.log.Warn("configuration reloaded, but this setting takes effect only at restart", "setting", what)
		}
	}
	sh.log.Info("configuration reloaded", "services", len(cfg.Services), "connectors", len(cfg.Identity))
}

// newPolicyPoller builds the loader of cfg.Policy.Source: every new revision
// is compiled and prepared off the request path, then swapped in atomically;
// one that fails to fetch, verify or compile never replaces the last good one.
func newPolicyPoller(cfg *config.Config, engine *policies.Engine, log *slog.Logger) (*bundles.Poller, error) {
	pc := cfg.Policy
	src := &bundles.Source{Location: pc.Source, Client: &http.Client{Timeout: pc.Polling.Timeout}, Limits: pc.BundleLimits()}
	if sc := pc.Signing; sc != nil {
		vc, err := bundles.VerificationConfig(sc.PublicKey, sc.Algorithm, sc.KeyID, sc.Scope)
		if err != nil {
			return nil, fmt.Errorf("policy.signing: %w", err)
		}
		src.Verify = vc
	}
	token, err := secret.Resolve(pc.BearerToken, pc.BearerTokenEnv, pc.BearerTokenFile, cfg.BaseDir())
	if err != nil {
		return nil, fmt.Errorf("policy.bearer_token: %w", err)
	}
	src.BearerToken = string(token) // sent to the origin of the source only
	shown := bundles.RedactURL(pc.Source)
	return &bundles.Poller{
		Source:   src,
		MinDelay: pc.Polling.MinDelay,
		MaxDelay: pc.Polling.MaxDelay,
		Log:      log,
		Apply: func(ctx context.Context, b *bundles.Bundle) error {
			p, err := policies.Compile(ctx, b, pc.Query)
			if err != nil {
				return err
			}
			if cur := engine.Current(); cur != nil && cur.Revision() == p.Revision() && cur.Digest() == p.Digest() {
				return nil
			}
			engine.Swap(p)
			if why := p.UncacheableReason(); why != "" {
				log.Info("policy loaded", "source", shown, "revision", p.Revision(), "decision_cache", "off: "+why)
			} else {
				log.Info("policy loaded", "source", shown, "revision", p.Revision())
			}
			return nil
		},
	}, nil
}

// policyStatus is the policy part of /readyz.
func policyStatus(p *bundles.Poller, engine *policies.Engine) []string {
	st := p.Status()
	lines := []string{"policy source: " + bundles.RedactURL(p.Source.Location)}
	if cur := engine.Current(); cur != nil {
		lines = append(lines, fmt.Sprintf("policy revision: %s (loaded %s)", cur.Revision(), st.LastSuccess.UTC().Format(time.RFC3339)))
		if why := cur.UncacheableReason(); why != "" {
			lines = append(lines, "decision cache: off for this policy: "+why)
		}
	} else {
		lines = append(lines, "policy revision: none: every token request is refused")
	}
	if st.Failures > 0 {
		lines = append(lines, fmt.Sprintf("policy reload failing: %d attempts since %s, last error: %s",
			st.Failures, st.LastErrorAt.UTC().Format(time.RFC3339), st.LastError))
	}
	return lines
}

func revisionOf(e *policies.Engine) string {
	if p := e.Current(); p != nil {
		return p.Revision()
	}
	return ""
}

// openDecisionLog opens the decision log: "stdout" or a file, appended to.
func openDecisionLog(path string, stdout io.Writer) (io.Writer, func(), error) {
	if path == "stdout" {
		return stdout, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("policy.decision_log.path: %w", err)
	}
	return f, func() { f.Close() }, nil
}

// instanceID names this process in decision logs, as OPA's labels.id does.
var instanceID = sync.OnceValue(func() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d", host, os.Getpid())
})

// registerServeMetrics adds what only serve knows: the policy in force and
// its reloads, the decision and credential caches, and the Go runtime and
// process.
func registerServeMetrics(reg *prometheus.Registry, engine *policies.Engine, poller *bundles.Poller, cache *identity.CredentialCache) {
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		policyCollector{engine: engine, poller: poller},
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tollgate_credential_cache_hits_total", Help: "Logins answered from the verified-credential cache.",
		}, func() float64 { h, _ := cache.Stats(); return float64(h) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tollgate_credential_cache_misses_total", Help: "Logins that had to ask an identity backend.",
		}, func() float64 { _, m := cache.Stats(); return float64(m) }),
	)
}

// policyCollector reports the policy in force at scrape time.
type policyCollector struct {
	engine *policies.Engine
	poller *bundles.Poller
}

var (
	policyInfoDesc     = prometheus.NewDesc("tollgate_policy_revision_info", "The policy revision in force (value 1); absent without a policy.", []string{"revision"}, nil)
	policyLoadedDesc   = prometheus.NewDesc("tollgate_policy_loaded", "1 when a policy is loaded, 0 when every request is refused.", nil, nil)
	policyFailingDesc  = prometheus.NewDesc("tollgate_policy_reload_failures", "Consecutive failed attempts to load a new policy revision (0 when the last attempt succeeded).", nil, nil)
	policySuccessDesc  = prometheus.NewDesc("tollgate_policy_last_reload_success_timestamp_seconds", "When a policy revision last loaded.", nil, nil)
	policyLastFailDesc = prometheus.NewDesc("tollgate_policy_last_reload_failure_timestamp_seconds", "When loading a policy revision last failed (0: never).", nil, nil)
	cacheEntriesDesc   = prometheus.NewDesc("tollgate_policy_decision_cache_entries", "Decisions in the decision cache.", nil, nil)
	cacheBytesDesc     = prometheus.NewDesc("tollgate_policy_decision_cache_bytes", "Memory the decision cache accounts for (at most policy.decision_cache.max_bytes).", nil, nil)
)

func (c policyCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{policyInfoDesc, policyLoadedDesc, policyFailingDesc, policySuccessDesc, policyLastFailDesc, cacheEntriesDesc, cacheBytesDesc} {
		ch <- d
	}
}

func (c policyCollector) Collect(ch chan<- prometheus.Metric) {
	loaded := 0.0
	if p := c.engine.Current(); p != nil {
		loaded = 1
		ch <- prometheus.MustNewConstMetric(policyInfoDesc, prometheus.GaugeValue, 1, p.Revision())
	}
	ch <- prometheus.MustNewConstMetric(policyLoadedDesc, prometheus.GaugeValue, loaded)
	st := c.poller.Status()
	ch <- prometheus.MustNewConstMetric(policyFailingDesc, prometheus.GaugeValue, float64(st.Failures))
	ch <- prometheus.MustNewConstMetric(policySuccessDesc, prometheus.GaugeValue, unixOrZero(st.LastSuccess))
	ch <- prometheus.MustNewConstMetric(policyLastFailDesc, prometheus.GaugeValue, unixOrZero(st.LastErrorAt))
	entries, bytes := c.engine.CacheStats()
	ch <- prometheus.MustNewConstMetric(cacheEntriesDesc, prometheus.GaugeValue, float64(entries))
	ch <- prometheus.MustNewConstMetric(cacheBytesDesc, prometheus.GaugeValue, float64(bytes))
}

func unixOrZero(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// sharedStores are where throttle counters and refresh-token revocations
// live: Redis when configured (shared by every replica), else the process's
// memory and a revocations file in state_dir that `tollgate token revoke`
// edits.
type sharedStores struct {
	counters    broker.CounterStore
	revocations broker.Revocations
	redis       *redisstore.Store // nil without Redis
	close       func()
}

// revocationSync is how often each replica copies the revocations from
// Redis: how far behind its copy may be when Redis stops answering.
const revocationSync = time.Second

func openSharedStores(ctx context.Context, cfg *config.Config, log *slog.Logger) (*sharedStores, error) {
	local := broker.NewMemoryCounters(100_000, max(cfg.Throttle.Window, cfg.Throttle.KnownAddressTTL))
	if rc := cfg.Redis; rc != nil {
		redis.SetLogger(redisLogger{log})
		rs, err := openRedis(cfg, log)
		if err != nil {
			return nil, err
		}
		if err := rs.Sync(ctx); err != nil {
			log.Warn("redis does not answer: serving anyway; failed logins are counted by this replica alone until it does",
				"addr", rc.Addr, "err", err)
		}
		sctx, cancel := context.WithCancel(ctx)
		go rs.Run(sctx, revocationSync)
		return &sharedStores{
			counters: &broker.FallbackCounters{Shared: rs, Local: local}, revocations: rs, redis: rs,
			close: func() { cancel(); rs.Close() },
		}, nil
	}
	fr, err := broker.OpenFileRevocations(cfg.RevocationsFile())
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	go fr.Watch(wctx, time.Second, log)
	return &sharedStores{counters: local, revocations: fr, close: cancel}, nil
}

// status is the shared-state line of /readyz (none without Redis). A stale
// state does not make the broker unready: it serves, throttling on its own
// counts and checking revocations against its last copy (decision 0010).
func (st *sharedStores) status() []string {
	if st.redis == nil {
		return nil
	}
	s := st.redis.Status()
	synced := "never"
	if !s.LastSync.IsZero() {
		synced = s.LastSync.UTC().Format(time.RFC3339)
	}
	if !s.Stale {
		return []string{"shared state: redis in sync (revocations synced " + synced + ")"}
	}
	why := "revocations not synced lately"
	if !s.DownSince.IsZero() {
		why = "redis does not answer since " + s.DownSince.UTC().Format(time.RFC3339)
	}
	return []string{"shared state: stale: " + why + "; failed logins are counted by this replica alone, refresh tokens are checked against the revocations synced " + synced}
}

// registerMetrics says whether the shared state is current.
func (st *sharedStores) registerMetrics(reg prometheus.Registerer) {
	if st.redis == nil {
		return
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tollgate_shared_state_stale",
			Help: "1 while Redis does not answer or the revocations were not synced lately: failed logins are counted per replica, revocations checked against the last copy.",
		}, func() float64 {
			if st.redis.Status().Stale {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tollgate_shared_state_last_sync_timestamp_seconds",
			Help: "When the revocations were last copied from Redis (unix time; 0 before the first copy).",
		}, func() float64 { return unixOrZero(st.redis.Status().LastSync) }),
	)
}

func openRedis(cfg *config.Config, log *slog.Logger) (*redisstore.Store, error) {
	rc := cfg.Redis
	pw, err := secret.Resolve(rc.Password, rc.PasswordEnv, rc.PasswordFile, cfg.BaseDir())
	if err != nil {
		return nil, fmt.Errorf("redis.password: %w", err)
	}
	return redisstore.New(redisstore.Options{Addr: rc.Addr, Password: string(pw), DB: rc.DB, Prefix: rc.Prefix, Timeout: rc.Timeout, Logger: log}), nil
}

// redisLogger sends the Redis client's own messages (reconnects) to the
// broker's log at debug level; outages are reported where they matter.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}

// configPoll is how often the configuration file and the key directories
// are checked for changes.
const configPoll = 2 * time.Second

// watchConfigFiles signals changed when the configuration file, a key
// directory or the TLS key pair it names changes (size, time, names), so
// editing them has the effect of a SIGHUP.
func watchConfigFiles(ctx context.Context, cfg *config.Config, every time.Duration, changed chan<- struct{}) {
	stamp := func() string {
		paths := []string{cfg.Path()}
		if c, err := config.Load(cfg.Path()); err == nil {
			for _, svc := range c.Services {
				paths = append(paths, svc.Keys)
			}
			if c.TLS != nil {
				paths = append(paths, c.TLS.CertFile, c.TLS.KeyFile)
			}
		}
		return atomicfile.Stamp(paths...)
	}
	last := stamp()
	atomicfile.Poll(ctx, every, func() {
		if now := stamp(); now != last {
			last = now
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	})
}
