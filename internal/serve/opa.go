package serve

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/internal/yamlconf"
	"github.com/tollgate/tollgate/policies"
)

// openOPA builds the policy engine from the opa section, run by OPA's
// plugin manager (decision 0014). Start activates the bundles persisted
// under persistence_directory before returning, then downloads in the
// background; until every bundle is active, every request is refused
// (503). A check starts nothing: OPA has validated the document.
func (r *Runtime) openOPA() error {
	cfg := r.cfg
	doc, err := cfg.OPADocument()
	if err != nil {
		return cfg.Invalid(err)
	}
	dc := cfg.Policy.DecisionCache
	e, err := policies.OpenOPA(doc, policies.OPAOptions{
		ID: instanceID(), Query: cfg.Policy.Query,
		CacheSize: *dc.Size, CacheTTL: dc.TTL, CacheMaxBytes: int64(dc.MaxBytes),
		MaxFileBytes: int64(cfg.Policy.MaxBundleBytes), Limits: cfg.Policy.BundleLimits(),
		PersistenceDirectory: filepath.Join(cfg.StateDir, "opa"),
		Log:                  r.log.With("policy", "opa"),
	})
	if err != nil {
		return cfg.Invalid(yamlconf.Prefix("opa", err))
	}
	r.opa = e
	if r.opts.Check {
		return nil
	}
	if err := e.Start(r.bg); err != nil {
		return cfg.Invalid(yamlconf.Prefix("opa", err))
	}
	r.closers = append(r.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		e.Stop(ctx)
	})
	if !e.Ready() {
		r.log.Error("no policy yet: every token request is refused until every bundle is activated")
	}
	return nil
}

// opaStatus is the policy part of /readyz: each bundle's state. OPA's
// messages are shown with every URL in them redacted; credentials live in
// services, which is never shown.
func opaStatus(ctx context.Context, e *policies.OPA) []string {
	var lines []string
	for _, b := range e.Bundles(ctx) {
		line := fmt.Sprintf("bundle %s: ", b.Name)
		switch {
		case !b.Active:
			line += "not active: every token request is refused"
		case b.Persisted:
			line += fmt.Sprintf("revision %s (from the persisted copy, not downloaded yet)", b.Revision)
		default:
			line += fmt.Sprintf("revision %s (downloaded %s)", b.Revision, b.LastDownload.UTC().Format(time.RFC3339))
		}
		if b.LastError != "" {
			line += "; last error: " + bundles.RedactURLs(b.LastError)
		}
		lines = append(lines, line)
	}
	if why := e.UncacheableReason(); why != "" {
		lines = append(lines, "decision cache: off for this policy: "+why)
	}
	return lines
}
