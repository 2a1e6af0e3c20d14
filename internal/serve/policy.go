package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/internal/config"
	"github.com/tollgate/tollgate/internal/yamlconf"
	"github.com/tollgate/tollgate/policies"
)

// openPolicy makes the engine and its loader and loads the policy once.
// Every new revision is compiled and prepared off the request path, then
// swapped in atomically.
func (r *Runtime) openPolicy(ctx context.Context) error {
	cfg := r.cfg
	if cfg.OPA != nil {
		doc, err := cfg.OPADocument()
		if err != nil {
			return cfg.Invalid(err)
		}
		if err := r.openOPA(doc, "opa", nil, 0); err != nil {
			return err
		}
		if !r.opts.Check && !r.opa.Ready() {
			r.log.Error("no policy yet: every token request is refused until every bundle is activated")
		}
		return nil
	}
	if bundles.IsURL(cfg.Policy.Source) {
		return r.openShortForm(ctx)
	}
	dc := cfg.Policy.DecisionCache
	r.engine = policies.NewEngine(*dc.Size, dc.TTL, policies.CacheMaxBytes(int64(dc.MaxBytes)),
		policies.PrintLog(r.log, policies.DefaultPrintMaxBytes))
	poller, err := newPolicyPoller(cfg, r.engine, r.log)
	if err != nil {
		return cfg.Invalid(err)
	}
	r.poller = poller
	if err := r.loadPolicy(ctx); err != nil {
		return err
	}
	if !r.opts.Check {
		go poller.Run(r.bg)
	}
	return nil
}

// loadPolicy loads the first revision of a local source: one that does not
// load, verify or compile is a configuration error. (A URL is the short
// form of opa:, see openShortForm.)
func (r *Runtime) loadPolicy(ctx context.Context) error {
	if err := r.poller.Once(ctx); err != nil {
		return r.cfg.Invalid(yamlconf.Prefix("policy.source", err))
	}
	return nil
}

// openDecisionLogWriter opens policy.decision_log's writer, when enabled,
// before the policy: OPA's decision_logs plugin is built with it
// (OPAOptions.DecisionLog).
func (r *Runtime) openDecisionLogWriter() error {
	dl := r.cfg.Policy.DecisionLog
	if !dl.Enabled {
		return nil
	}
	w, closeLog, err := openDecisionLog(dl.Path, r.opts.Stdout, r.opts.Check)
	if err != nil {
		return yamlconf.Prefix("policy.decision_log.path", err)
	}
	r.closers = append(r.closers, closeLog)
	if f, ok := w.(*logFile); ok {
		r.decisionFile = f
	}
	r.decisionLog = w
	return nil
}

// openDecisionLog sets the authorizer: the policy, behind
// policies.DecisionLog for a local source when policy.decision_log is on.
// A policy run by OPA (opa:, a URL) writes the log through OPA's
// decision_logs plugin instead, which was given the writer.
func (r *Runtime) openDecisionLog() {
	if r.opa != nil {
		r.authorizer = r.opa
		return
	}
	r.authorizer = r.engine
	if r.decisionLog != nil {
		r.authorizer = policies.NewDecisionLog(r.engine, r.decisionLog, r.cfg.Policy.Query, map[string]string{"id": instanceID(), "version": r.opts.Version})
	}
}

// openDecisionLog opens the decision log: "stdout" or a file, appended to.
// A check leaves no file behind that was not there.
func openDecisionLog(path string, stdout io.Writer, check bool) (io.Writer, func(), error) {
	if path == "stdout" {
		return stdout, func() {}, nil
	}
	_, statErr := os.Stat(path)
	f, err := openLogFile(path)
	if err != nil {
		return nil, nil, err
	}
	created := errors.Is(statErr, fs.ErrNotExist)
	return f, func() {
		f.Close()
		if check && created {
			os.Remove(path)
		}
	}, nil
}

// logFile is a file appended to that Reopen opens again by name, so that
// log rotation can rename it away and signal (no copytruncate needed).
type logFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func openLogFile(path string) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, err
	}
	return &logFile{path: path, f: f}, nil
}

func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(p)
}

// Reopen opens the path again; on failure the open file stays in use.
func (l *logFile) Reopen() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("reopening %s: %w", l.path, err)
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	return old.Close()
}

func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// instanceID names this process in decision logs, as OPA's labels.id does.
var instanceID = sync.OnceValue(func() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d", host, os.Getpid())
})

// newPolicyPoller builds the loader of cfg.Policy.Source: every new revision
// is compiled and prepared off the request path, then swapped in atomically;
// one that fails to fetch, verify or compile never replaces the last good one.
func newPolicyPoller(cfg *config.Config, engine *policies.Engine, log *slog.Logger) (*bundles.Poller, error) {
	pc := cfg.Policy
	src, err := cfg.PolicySource()
	if err != nil {
		return nil, err
	}
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
