package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/policies"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the token broker",
		Description: `Serves GET and POST /token, /.well-known/jwks.json, /certs.pem, /healthz and
/readyz. Without --config it runs a development broker: example users with
generated passwords, the default policy, and a key created on first start, all
kept in --state-dir; it prints how to point a registry and a client at it.

Examples:
   tollgate serve
   tollgate serve --config /etc/tollgate/config.yaml`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "configuration file (YAML)", EnvVars: []string{"TOLLGATE_CONFIG"}},
			&cli.StringFlag{Name: "state-dir", Value: ".tollgate", Usage: "development mode: where keys, users and the policy copy live"},
			&cli.StringFlag{Name: "listen", Usage: "listen address, overrides the configuration"},
		},
		Action: func(c *cli.Context) error {
			cfg, dev, err := loadOrDevConfig(c)
			if err != nil {
				return err
			}
			if l := c.String("listen"); l != "" {
				cfg.Listen = l
			}
			return serve(c.Context, cfg, dev, c.App.Writer, c.App.ErrWriter)
		},
	}
}

func loadOrDevConfig(c *cli.Context) (*Config, *devSetup, error) {
	if path := c.String("config"); path != "" {
		cfg, err := LoadConfig(path)
		return cfg, nil, err
	}
	return devConfig(c.String("state-dir"), c.String("listen"))
}

func newLogger(cfg LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// loadServices loads every service's key set.
func loadServices(cfg *Config) ([]*broker.Service, error) {
	var out []*broker.Service
	for i, sc := range cfg.Services {
		ks, err := broker.LoadKeyDir(sc.Keys)
		if err != nil {
			return nil, fmt.Errorf("services[%d].keys: %w", i, err)
		}
		out = append(out, &broker.Service{
			Name: sc.Name, Default: sc.Default, Issuer: sc.Issuer, Realm: sc.Realm,
			TokenTTL: sc.TokenTTL, MaxTokenTTL: sc.MaxTokenTTL, Keys: ks,
		})
	}
	return out, nil
}

// serve runs the broker until ctx ends or SIGINT/SIGTERM; the development
// banner goes to out, logs to logOut.
func serve(ctx context.Context, cfg *Config, dev *devSetup, out, logOut io.Writer) error {
	started := time.Now()
	log := newLogger(cfg.Log, logOut)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	services, err := loadServices(cfg)
	if err != nil {
		return err
	}
	env := connectorEnv{ctx: ctx, log: log, baseDir: cfg.baseDir,
		cache: identity.NewCredentialCache(*cfg.CredentialCache.Size, cfg.CredentialCache.TTL)}
	chain, err := buildChain(env, cfg.Identity)
	if err != nil {
		return err
	}

	engine := policies.NewEngine(*cfg.Policy.DecisionCache.Size, cfg.Policy.DecisionCache.TTL)
	watcher := &policyWatcher{dir: cfg.Policy.Source, query: cfg.Policy.Query, engine: engine, log: log}
	if err := watcher.load(ctx); err != nil {
		return err // a broken policy at start is a configuration error
	}
	go watcher.run(ctx, bundles.PollInterval)

	refreshTTL := time.Duration(0)
	if *cfg.RefreshTokens.Enabled {
		refreshTTL = cfg.RefreshTokens.TTL
	}
	srv, err := broker.New(broker.Options{
		Services:      services,
		Authenticator: chain,
		Authorizer:    engine,
		Anonymous:     *cfg.Anonymous,
		RefreshTTL:    refreshTTL,
		Logger:        log,
		Ready: func() error {
			if engine.Current() == nil {
				return policies.ErrNoPolicy
			}
			return nil
		},
	})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("tollgate serving", "listen", ln.Addr().String(), "version", version,
		"policy_revision", engine.Current().Revision(), "startup_ms", time.Since(started).Milliseconds())
	if dev != nil {
		dev.printBanner(out, ln.Addr().String())
	}

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: draining in-flight requests")
	srv.SetDraining()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// policyWatcher loads the policy directory and reloads it when it changes.
// A new revision is compiled off the request path and swapped in atomically;
// one that fails to load never replaces the last good one.
type policyWatcher struct {
	dir    string
	query  string
	engine *policies.Engine
	log    *slog.Logger
	stamp  string
}

func (w *policyWatcher) load(ctx context.Context) error {
	stamp, err := bundles.DirStamp(w.dir)
	if err != nil {
		return fmt.Errorf("policy.source: %w", err)
	}
	b, err := bundles.LoadDir(w.dir)
	if err != nil {
		return err
	}
	p, err := policies.Compile(ctx, b, w.query)
	if err != nil {
		return err
	}
	w.stamp = stamp
	if cur := w.engine.Current(); cur != nil && cur.Revision() == p.Revision() {
		return nil
	}
	w.engine.Swap(p)
	w.log.Info("policy loaded", "source", w.dir, "revision", p.Revision())
	return nil
}

func (w *policyWatcher) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		stamp, err := bundles.DirStamp(w.dir)
		if err != nil || stamp == w.stamp {
			continue
		}
		if err := w.load(ctx); err != nil {
			w.stamp = stamp // do not retry the same broken content every tick
			w.log.Error("policy reload failed; keeping the last good policy", "source", w.dir, "err", err)
		}
	}
}
