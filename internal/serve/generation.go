package serve

import (
	"context"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/internal/config"
)

// generation is the broker built from one reading of the configuration:
// services and keys, connectors (their watchers stop with cancel), throttle.
// Handler serves the generation in force; a reload swaps it atomically, so
// no request is dropped or served by half a configuration.
type generation struct {
	srv        *broker.Server
	services   []*broker.Service         // with their keys, for the expiry gauge
	connectors map[string]*liveConnector // by name
}

// liveConnector is a built identity adapter and what stops it (its file
// watchers, its LDAP pool). A reload keeps a connector whose configuration
// did not change, with its caches, pooled connections and fetched OIDC keys:
// a reload while an identity provider is down must not lose them.
type liveConnector struct {
	key     string // config.ConnectorKey: its type, base directory and text
	conn    identity.Connector
	cancel  context.CancelFunc
	release func() // drops its backends' metric series (connectorProbes)
}

// retire stops the connectors of old that next does not keep, after the
// longest a request may take (requests in flight finish on them). Their
// backends' metric series go at once: they are no longer configured.
func retire(old, next map[string]*liveConnector, after time.Duration) {
	for name, lc := range old {
		if next[name] != lc {
			lc.release()
			time.AfterFunc(after, lc.cancel)
		}
	}
}

// connectors builds the chain of cfg, reusing the live connectors of prev
// whose configuration is unchanged. Connectors live at most as long as r.
func (r *Runtime) connectors(cfg *config.Config, prev map[string]*liveConnector) (*identity.Chain, map[string]*liveConnector, error) {
	next := map[string]*liveConnector{}
	conns := make([]identity.Connector, 0, len(cfg.Identity))
	for i, c := range cfg.Identity {
		key := cfg.ConnectorKey(i)
		lc := prev[c.Name]
		if lc == nil || lc.key != key {
			cctx, cancel := context.WithCancel(r.bg)
			probes, release := r.backends.connectorProbes()
			conn, err := cfg.OpenConnector(config.ConnectorEnv{Ctx: cctx, Log: r.log, Cache: r.cache, Check: r.opts.Check, Probes: probes}, i)
			if err != nil {
				cancel()
				release()
				retire(next, prev, 0) // stop what this attempt built
				return nil, nil, err
			}
			lc = &liveConnector{key: key, conn: conn, cancel: cancel, release: release}
		}
		next[c.Name] = lc
		conns = append(conns, lc.conn)
	}
	return identity.NewChain(conns, r.cache), next, nil
}

// build makes the generation of cfg; on error it stops what it built.
func (r *Runtime) build(cfg *config.Config, prev map[string]*liveConnector) (*generation, error) {
	services, err := cfg.LoadServices()
	if err != nil {
		return nil, err
	}
	if err := keysValid(services, time.Now()); err != nil {
		return nil, err
	}
	clientAddr, err := cfg.ClientAddress()
	if err != nil {
		return nil, err
	}
	chain, live, err := r.connectors(cfg, prev)
	if err != nil {
		return nil, err
	}
	sessions, err := r.sessionOptions(cfg, live)
	if err != nil {
		retire(live, prev, 0)
		return nil, err
	}
	srv, err := broker.New(broker.Options{
		ClientAddress: clientAddr,
		Services:      services,
		Authenticator: chain,
		Authorizer:    r.authorizer,
		Anonymous:     *cfg.Anonymous,
		RefreshTTL:    refreshTTL(cfg),
		Throttle:      r.throttle(cfg),
		Revocations:   r.stores.revocations,
		Metrics:       r.metrics,
		Logger:        r.log,
		Ready:         r.ready,
		ReadyDetail:   r.readyDetail,
		Sessions:      sessions,
	})
	if err != nil {
		retire(live, prev, 0)
		return nil, err
	}
	return &generation{srv: srv, services: services, connectors: live}, nil
}

func refreshTTL(cfg *config.Config) time.Duration {
	if !*cfg.RefreshTokens.Enabled {
		return 0
	}
	return cfg.RefreshTokens.TTL
}

// throttle limits failed logins with cfg's limits, on the shared counters.
func (r *Runtime) throttle(cfg *config.Config) *broker.Throttle {
	tc := cfg.Throttle
	if !*tc.Enabled {
		return nil
	}
	return &broker.Throttle{Store: r.stores.counters, Window: tc.Window, MaxPerUser: tc.MaxFailuresPerUser,
		MaxPerAddress: tc.MaxFailuresPerAddress, KnownAddressWindow: tc.KnownAddressTTL,
		MaxStartsPerAddress: tc.MaxDeviceStartsPerAddress}
}
