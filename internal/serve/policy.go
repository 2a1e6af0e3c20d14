package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/internal/yamlconf"
)

// openPolicy opens the policy: the opa: section, or policy.source as the
// opa: document it maps onto (config.ShortFormOPA), all run by OPA's
// plugins (decision 0014). Every new revision is compiled and prepared off
// the request path.
func (r *Runtime) openPolicy(ctx context.Context) error {
	cfg := r.cfg
	if cfg.OPA != nil {
		doc, err := cfg.OPADocument()
		if err != nil {
			return cfg.Invalid(err)
		}
		if err := r.openOPA(doc, "opa", nil, 0, false); err != nil {
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
	return r.openLocal(ctx)
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

// openDecisionLog sets the authorizer: the policy, run by OPA, which
// writes policy.decision_log through OPA's decision_logs plugin (it was
// given the writer).
func (r *Runtime) openDecisionLog() {
	r.authorizer = r.opa
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
