package serve

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/internal/probe"
	"github.com/tollgate/tollgate/internal/yamlconf"
	"github.com/tollgate/tollgate/policies"
)

// openOPA builds the policy engine from the opa section, run by OPA's
// plugin manager (decision 0014). Start activates the bundles persisted
// under persistence_directory before returning, then downloads in the
// background; until every bundle is active, every request is refused
// (503). A check starts nothing: OPA has validated the document.
//
// section names where doc came from in errors: "opa", or "policy.source"
// for the short form (config.ShortFormOPA); rec records its requests;
// timeout, when set, bounds each request, body included. local is a local
// policy.source's short form: a bundle without a manifest revision is
// named by its content, as it always was, and nothing is persisted (the
// files are the copy), so state_dir is not needed.
func (r *Runtime) openOPA(doc []byte, section string, rec probe.Recorder, timeout time.Duration, local bool) error {
	cfg := r.cfg
	dc := cfg.Policy.DecisionCache
	persist := filepath.Join(cfg.StateDir, "opa")
	if local {
		persist = ""
	}
	e, err := policies.OpenOPA(doc, policies.OPAOptions{
		ID: instanceID(), Query: cfg.Policy.Query,
		CacheSize: *dc.Size, CacheTTL: dc.TTL, CacheMaxBytes: int64(dc.MaxBytes),
		MaxFileBytes: int64(cfg.Policy.MaxBundleBytes), Limits: cfg.Policy.BundleLimits(),
		PersistenceDirectory: persist,
		Log:                  r.log.With("policy", "opa"),
		Probe:                rec,
		Timeout:              timeout,
		DecisionLog:          r.decisionLog,
		DigestRevisions:      local,
	})
	if err != nil {
		return cfg.Invalid(yamlconf.Prefix(section, err))
	}
	r.opa = e
	if r.opts.Check {
		return nil
	}
	if err := e.Start(r.bg); err != nil {
		return cfg.Invalid(yamlconf.Prefix(section, err))
	}
	r.closers = append(r.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		e.Stop(ctx)
	})
	return nil
}

// opaStatus is the policy part of /readyz: each bundle's state. OPA's
// messages are shown with every URL in them redacted; credentials live in
// services, which is never shown.
func opaStatus(ctx context.Context, e *policies.OPA) []string {
	var lines []string
	bs := e.Bundles(ctx)
	for _, b := range bs {
		if b.Active && b.Revision == "" && len(bs) == 1 {
			b.Revision = e.Revision() // a local source's digest
		}
		line := fmt.Sprintf("bundle %s: ", b.Name)
		switch {
		case !b.Active:
			line += "not active: every token request is refused"
		case b.Persisted:
			line += fmt.Sprintf("revision %s (from the persisted copy, not downloaded yet)", b.Revision)
		default:
			line += fmt.Sprintf("revision %s (downloaded %s)", b.Revision, b.LastDownload.UTC().Format(time.RFC3339))
		}
		switch {
		case b.Failures > 0 && b.LastError != "":
			line += fmt.Sprintf("; reload failing: %d attempts since %s, last error: %s",
				b.Failures, b.FailingSince.UTC().Format(time.RFC3339), bundles.RedactURLs(b.LastError))
		case b.LastError != "":
			line += "; last error: " + bundles.RedactURLs(b.LastError)
		}
		lines = append(lines, line)
	}
	if why := e.UncacheableReason(); why != "" {
		lines = append(lines, "decision cache: off for this policy: "+why)
	}
	return lines
}
