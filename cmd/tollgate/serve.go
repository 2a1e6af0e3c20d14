package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/internal/config"
	"github.com/tollgate/tollgate/internal/logwrite"
	"github.com/tollgate/tollgate/internal/serve"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the token broker",
		Description: `Serves GET and POST /token, /.well-known/jwks.json, /certs.pem, /healthz,
/readyz and /metrics (or /metrics on metrics.listen), and with device_login on an
OIDC connector POST /login/device, /login/device/token and /logout. Without --config it runs a development broker: example users with
generated passwords, the default policy, and a key created on first start, all
kept in --state-dir; it prints how to point a registry and a client at it.

Examples:
   tollgate serve
   tollgate serve --config /etc/tollgate/config.yaml
   tollgate serve --config /etc/tollgate/config.yaml --check   # validate and exit
   tollgate serve --config /etc/tollgate/config.yaml --check --offline   # without fetching a policy URL`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "configuration file (YAML)", EnvVars: []string{"TOLLGATE_CONFIG"}},
			&cli.StringFlag{Name: "state-dir", Value: ".tollgate", Usage: "development mode: where keys, users and the policy copy live"},
			&cli.StringFlag{Name: "listen", Usage: "listen address, overrides the configuration"},
			&cli.BoolFlag{Name: "check", Usage: "build everything serve would (keys, connectors, policy, stores) without listening, and exit (0 when serve would start)"},
			&cli.BoolFlag{Name: "offline", Usage: "with --check: do not fetch a policy URL"},
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
				return check(c, cfg)
			}
			if err := servePprof(c, cfg); err != nil {
				return err
			}
			return runServe(c.Context, cfg, dev, c.App.Writer, c.App.ErrWriter)
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

// check builds the broker as serve would, without a listener, and closes
// it again: it fails where serve would, with the same message.
func check(c *cli.Context, cfg *config.Config) error {
	log := newLogger(config.LogConfig{Level: "warn", Format: cfg.Log.Format}, c.App.ErrWriter)
	rt, err := serve.New(c.Context, cfg, serve.Options{Log: log, Stdout: io.Discard, Version: version, Check: true, Offline: c.Bool("offline")})
	if err != nil {
		return err
	}
	rt.Close()
	fmt.Fprintf(c.App.Writer, "configuration valid: %d service(s), %d connector(s), policy from %s\n", len(cfg.Services), len(cfg.Identity), bundles.RedactURL(cfg.Policy.Source))
	return nil
}

// logBufferBytes bounds the log lines waiting to be written: about four
// thousand token lines; a log call waits when they fill it.
const logBufferBytes = 1 << 20

// runServe runs the broker until ctx ends or SIGINT/SIGTERM; the
// development banner goes to out, logs to logOut.
func runServe(ctx context.Context, cfg *config.Config, dev *devSetup, out, logOut io.Writer) error {
	started := time.Now()
	if f, ok := logOut.(*os.File); ok {
		// One write for many lines under load, none in a request's path
		// (internal/logwrite); everything is out when serve returns.
		lw := logwrite.New(f, logBufferBytes)
		defer lw.Close()
		logOut = lw
	}
	log := newLogger(cfg.Log, logOut)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rt, err := serve.New(ctx, cfg, serve.Options{Log: log, Stdout: out, Version: version})
	if err != nil {
		return err
	}
	defer rt.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	closeMetrics, err := serveMetrics(cfg, rt, log)
	if err != nil {
		return err
	}
	defer closeMetrics()
	hs := httpServer(rt, log)
	log.Info("tollgate serving", "listen", ln.Addr().String(), "version", version,
		"policy_revision", rt.PolicyRevision(), "startup_ms", time.Since(started).Milliseconds())
	if dev != nil {
		dev.printBanner(out, ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() {
		if hs.TLSConfig != nil {
			errc <- hs.ServeTLS(ln, "", "")
		} else {
			errc <- hs.Serve(ln)
		}
	}()
	if err := runUntilDone(ctx, cfg, rt, log, errc); err != nil {
		return err
	}
	return shutdown(hs, rt, log)
}

// httpServer serves rt with the broker's timeouts and limits.
func httpServer(rt *serve.Runtime, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           rt.Handler(),
		TLSConfig:         rt.TLSConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      serve.RequestGrace,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// serveMetrics serves /metrics on metrics.listen, when set, until the
// returned function closes it.
func serveMetrics(cfg *config.Config, rt *serve.Runtime, log *slog.Logger) (func(), error) {
	mh := rt.MetricsHandler()
	if mh == nil || cfg.Metrics.Listen == "" {
		return func() {}, nil
	}
	mln, err := net.Listen("tcp", cfg.Metrics.Listen)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen: %w", err)
	}
	ms := &http.Server{Handler: mh, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go ms.Serve(mln)
	return func() { ms.Close() }, nil
}

// runUntilDone reloads on SIGHUP and on a changed configuration or key
// file until ctx ends (nil) or the server fails (its error).
func runUntilDone(ctx context.Context, cfg *config.Config, rt *serve.Runtime, log *slog.Logger, errc <-chan error) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	changed := make(chan struct{}, 1)
	if cfg.Path() != "" {
		go serve.WatchFiles(ctx, cfg, serve.ConfigPoll, changed)
	}
	for {
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
			return nil
		case <-hup:
			reload(rt, cfg.Path(), log)
		case <-changed:
			log.Info("configuration or key files changed: reloading")
			reload(rt, cfg.Path(), log)
		}
	}
}

// reload reads the configuration file again and applies it; a file that
// does not load keeps the running configuration.
func reload(rt *serve.Runtime, path string, log *slog.Logger) {
	if path == "" {
		log.Warn("SIGHUP ignored: the development default has no configuration file to read again")
		return
	}
	next, err := config.Load(path)
	if err != nil {
		rt.ReloadFailed(err)
		return
	}
	rt.Reload(next)
}

// shutdown drains: /readyz turns 503, in-flight requests finish (at most
// 30s), then the runtime closes (by the caller's defer).
func shutdown(hs *http.Server, rt *serve.Runtime, log *slog.Logger) error {
	log.Info("shutting down: draining in-flight requests")
	rt.Drain()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := hs.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
