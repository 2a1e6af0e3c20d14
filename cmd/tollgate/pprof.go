package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tollgate/tollgate/internal/config"
)

// pprofFlag is serve's --pprof: off by default. Profiles are served on a
// listener of their own, never on the token listener, and on a loopback
// address only: reach them from elsewhere through an SSH tunnel or
// `kubectl port-forward`, which both arrive on the loopback interface.
func pprofFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "pprof",
		Usage:   "serve Go profiles (net/http/pprof; mutex and block profiles on) at this loopback address, e.g. 127.0.0.1:6060 or :6060 (meaning 127.0.0.1:6060); off by default",
		EnvVars: []string{"TOLLGATE_PPROF"},
	}
}

// servePprof starts the profile listener when --pprof is set and says where
// it is in the log.
func servePprof(c *cli.Context, cfg *config.Config) error {
	addr, err := startPprof(c.Context, c.String("pprof"))
	if err != nil || addr == nil {
		return err
	}
	newLogger(cfg.Log, c.App.ErrWriter).Warn("serving Go profiles (--pprof); not for production",
		"url", "http://"+addr.String()+"/debug/pprof/")
	return nil
}

// pprofAddr checks addr and makes an address without a host loopback.
func pprofAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("--pprof %q: %w", addr, err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", fmt.Errorf("--pprof %q: profiles are served on a loopback address only (127.0.0.1:PORT)", addr)
	}
	return net.JoinHostPort(host, port), nil
}

// startPprof serves /debug/pprof/ on addr until ctx ends. An empty addr does
// nothing.
func startPprof(ctx context.Context, addr string) (net.Addr, error) {
	if addr == "" {
		return nil, nil
	}
	addr, err := pprofAddr(addr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--pprof: %w", err)
	}
	if a, ok := ln.Addr().(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
		ln.Close() // "localhost" resolved to something else
		return nil, fmt.Errorf("--pprof %q: listening on %s, not a loopback address", addr, ln.Addr())
	}
	// Contention in the caches is what profiling is for; sample it while on.
	runtime.SetMutexProfileFraction(5)
	runtime.SetBlockProfileRate(int(10 * time.Microsecond))
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	go func() { _ = srv.Serve(ln) }() // ends with ErrServerClosed at shutdown
	return ln.Addr(), nil
}
