package serve

import (
	"reflect"

	"github.com/tollgate/tollgate/internal/config"
)

// Reload applies next, a configuration read again (SIGHUP, a changed
// file): services, keys, connectors, throttle and the TLS certificate take
// effect at once; on an error the running configuration stays. Settings
// read only at start (listen, metrics, the policy section, caches) are
// reported when they changed. The result is logged and counted. The
// decision-log file is opened again first, whatever the result.
func (r *Runtime) Reload(next *config.Config) error {
	r.reopenLogs()
	cert, err := loadCert(next)
	if err != nil {
		return r.failed(next.Invalid(err))
	}
	gen, err := r.build(next, r.current.Load().connectors)
	if err != nil {
		return r.failed(next.Invalid(err))
	}
	old := r.current.Swap(gen)
	// Requests that started on the old generation finish on it: the
	// connectors it does not share close after the longest a request may take.
	retire(old.connectors, gen.connectors, RequestGrace)
	r.cache.Purge() // connectors may have changed: verify passwords again
	if cert != nil && r.cfg.TLS != nil {
		r.tlsCert.Store(cert)
	}
	r.count("success")
	r.warnRestartOnly(next)
	r.log.Info("configuration reloaded", "services", len(next.Services), "connectors", len(next.Identity))
	return nil
}

// ReloadFailed logs and counts a reload whose file did not load, and
// returns err; the decision-log file is opened again all the same.
func (r *Runtime) ReloadFailed(err error) error {
	r.reopenLogs()
	return r.failed(err)
}

// reopenLogs opens the decision-log file again by name: after log
// rotation renamed it, decisions go to the new file.
func (r *Runtime) reopenLogs() {
	if r.decisionFile == nil {
		return
	}
	if err := r.decisionFile.Reopen(); err != nil {
		r.log.Error("decision log: keeping the open file", "err", err)
	}
}

func (r *Runtime) failed(err error) error {
	r.count("failure")
	r.log.Error("reload failed; keeping the running configuration", "err", err)
	return err
}

func (r *Runtime) count(result string) {
	if r.reloads != nil {
		r.reloads.WithLabelValues(result).Inc()
	}
}

// warnRestartOnly names the settings of next that differ from those the
// runtime started with and take effect only at restart.
func (r *Runtime) warnRestartOnly(next *config.Config) {
	running := r.cfg
	for what, changed := range map[string]bool{
		"listen":           next.Listen != running.Listen,
		"tls (on or off)":  (next.TLS == nil) != (running.TLS == nil),
		"metrics":          !reflect.DeepEqual(next.Metrics, running.Metrics),
		"policy":           !reflect.DeepEqual(next.Policy, running.Policy),
		"credential_cache": !reflect.DeepEqual(next.CredentialCache, running.CredentialCache),
	} {
		if changed {
			r.log.Warn("configuration reloaded, but this setting takes effect only at restart", "setting", what)
		}
	}
}
