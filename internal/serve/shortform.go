package serve

import (
	"context"
	"errors"
	"time"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/internal/yamlconf"
)

// openShortForm runs a URL policy.source through OPA's plugins, as the
// opa: document it maps onto (config.ShortFormOPA, docs/opa.md): one
// service and one bundle "tollgate", bounded, redacted and kept at its
// origin as any opa: service is. The bundle server is probed as a
// backend. A check downloads the bundle once, unless offline.
func (r *Runtime) openShortForm(ctx context.Context) error {
	cfg := r.cfg
	doc, err := cfg.ShortFormOPA()
	if err != nil {
		return cfg.Invalid(err)
	}
	shown := bundles.RedactURL(cfg.Policy.Source)
	if err := r.openOPA(doc, "policy.source", r.backends.factory("bundle").For(shown), cfg.Policy.Polling.Timeout, false); err != nil {
		return err
	}
	r.source = shown
	switch {
	case r.opts.Check && r.opts.Offline:
		return nil
	case r.opts.Check:
		if err := r.opa.Start(ctx); err != nil {
			return cfg.Invalid(yamlconf.Prefix("policy.source", err))
		}
		defer r.opa.Stop(context.Background())
		if err := r.firstDownload(ctx); err != nil {
			return cfg.Invalid(yamlconf.Prefix("policy.source", err))
		}
		return nil
	}
	// As the short form always did, serve starts with the policy when the
	// server answers; when it does not, every request is refused (503)
	// while OPA keeps polling.
	if err := r.firstDownload(ctx); err != nil {
		r.log.Error("no policy yet: every token request is refused until the bundle loads",
			"source", shown, "err", err)
		return nil
	}
	r.log.Info("policy loaded", "source", shown, "revision", r.opa.Revision())
	return nil
}

// firstDownload waits until the bundle is activated (nil) or refused (the
// error, redacted), at most the polling timeout.
func (r *Runtime) firstDownload(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Policy.Polling.Timeout+5*time.Second)
	defer cancel()
	for {
		if r.opa.Ready() {
			return nil
		}
		for _, b := range r.opa.Bundles(ctx) {
			if b.LastError != "" {
				return errors.New(bundles.RedactURLs(b.LastError))
			}
		}
		select {
		case <-ctx.Done():
			return errors.New("no bundle downloaded in time")
		case <-time.After(20 * time.Millisecond):
		}
	}
}
