package serve

import (
	"context"
	"fmt"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/internal/atomicfile"
	"github.com/tollgate/tollgate/internal/yamlconf"
)

// openLocal runs a local policy.source (a directory, a bundle tarball)
// through OPA's plugins as the opa: document it maps onto
// (config.ShortFormOPA): a file:// bundle with trigger: manual, which OPA's
// file loader reads only when triggered. tollgate's own watcher triggers
// it when the files change (watchLocal). The first load must succeed, in
// serve as in a check: a local policy that does not load, verify or
// compile is a configuration error, as it always was.
func (r *Runtime) openLocal(ctx context.Context) error {
	cfg := r.cfg
	source := cfg.Policy.Source
	doc, err := cfg.ShortFormOPA()
	if err != nil {
		return cfg.Invalid(err)
	}
	// Taken before the first load: a change during it is loaded again.
	stamp := atomicfile.Stamp(source)
	if err := checkLocal(source, cfg.Policy.BundleLimits()); err != nil {
		return cfg.Invalid(yamlconf.Prefix("policy.source", err))
	}
	if err := r.openOPA(doc, "policy.source", nil, 0, true); err != nil {
		return err
	}
	r.source = source
	if r.opts.Check {
		if err := r.opa.Start(ctx); err != nil {
			return cfg.Invalid(yamlconf.Prefix("policy.source", err))
		}
		defer r.opa.Stop(context.Background())
	}
	if err := r.firstDownload(ctx); err != nil {
		return cfg.Invalid(yamlconf.Prefix("policy.source", fmt.Errorf("policy source %s: %w", source, err)))
	}
	if r.opts.Check {
		return nil
	}
	r.logLoaded()
	go r.watchLocal(stamp)
	return nil
}

// watchLocal loads the local source again whenever its files change
// (their names, sizes and times; a ConfigMap update swaps ..data), every
// polling.min_delay, as bundles.Poller did. A tarball is checked against
// the bundle limits first: OPA's reader bounds each file only, and reads
// them all into memory. A version that fails is not tried again until the
// files change; the last good one keeps serving, /readyz and the policy
// metrics count the failure.
func (r *Runtime) watchLocal(stamp string) {
	source, limits := r.cfg.Policy.Source, r.cfg.Policy.BundleLimits()
	check := func() error { return checkLocal(source, limits) }
	atomicfile.Watch(r.bg, r.cfg.Policy.Polling.MinDelay, source, func() string { return stamp }, func() error {
		stamp = atomicfile.Stamp(source)
		return r.opa.Reload(r.bg, check)
	}, func(err error) {
		if err != nil && r.bg.Err() == nil {
			r.log.Error("policy bundle not loaded; keeping the last good one",
				"source", source, "revision_in_force", r.opa.Revision(), "err", err)
			return
		}
		r.logLoaded()
	})
}

// checkLocal checks a tarball against the bundle limits (a directory
// passes: OPA bounds each of its files).
func checkLocal(source string, limits bundles.Limits) error {
	if err := limits.CheckFile(source); err != nil {
		return fmt.Errorf("policy source %s: %w", source, err)
	}
	return nil
}

// logLoaded logs the revision a local source activated.
func (r *Runtime) logLoaded() {
	if why := r.opa.UncacheableReason(); why != "" {
		r.log.Info("policy loaded", "source", r.source, "revision", r.opa.Revision(), "decision_cache", "off: "+why)
		return
	}
	r.log.Info("policy loaded", "source", r.source, "revision", r.opa.Revision())
}
