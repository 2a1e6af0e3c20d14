package policies

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate/authz"
)

// DecisionLog writes one JSON line per decision, in the shape of OPA's
// decision logs (decision_id, labels, bundles, path, input, result,
// timestamp, metrics), so pipelines built for OPA ingest them unchanged. The
// input holds no secret: passwords and bearer tokens never reach it.
type DecisionLog struct {
	next   authz.Authorizer
	path   string
	labels map[string]string

	mu sync.Mutex
	w  io.Writer
}

// NewDecisionLog logs every decision of next to w. query is the policy's
// package (data.registry.authz); labels identify this broker (OPA puts its
// instance id and version there).
func NewDecisionLog(next authz.Authorizer, w io.Writer, query string, labels map[string]string) *DecisionLog {
	path := strings.ReplaceAll(strings.TrimPrefix(query, "data."), ".", "/") + "/allowed"
	return &DecisionLog{next: next, w: w, path: path, labels: labels}
}

// decisionLogEntry is OPA's decision-log event, with the fields tollgate has.
type decisionLogEntry struct {
	DecisionID  string                    `json:"decision_id"`
	Labels      map[string]string         `json:"labels"`
	Bundles     map[string]bundleRevision `json:"bundles,omitempty"`
	Path        string                    `json:"path"`
	Input       *authz.Input              `json:"input"`
	Result      []allowedEntry            `json:"result"`
	Error       *decisionError            `json:"error,omitempty"`
	RequestedBy string                    `json:"requested_by"`
	Timestamp   time.Time                 `json:"timestamp"`
	Metrics     map[string]int64          `json:"metrics"`
	// Cached is not in OPA's shape: true when the decision cache answered.
	Cached bool `json:"cached"`
	// RequestID is not in OPA's shape: the X-Request-ID of the token
	// request, to join with the broker's request log.
	RequestID string `json:"request_id,omitempty"`
}

type bundleRevision struct {
	Revision string `json:"revision"`
}

type allowedEntry struct {
	Type   string `json:"type"`
	Name   string `json:"name"`
	Action string `json:"action"`
}

type decisionError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Authorize decides with the wrapped authorizer and logs the decision.
func (l *DecisionLog) Authorize(ctx context.Context, in authz.Input) (authz.Decision, error) {
	start := time.Now()
	d, err := l.next.Authorize(ctx, in)
	e := decisionLogEntry{
		DecisionID:  newDecisionID(),
		Labels:      l.labels,
		Path:        l.path,
		Input:       &in,
		Result:      []allowedEntry{},
		RequestedBy: in.Client.IP,
		Timestamp:   start.UTC(),
		Metrics:     map[string]int64{"timer_server_handler_ns": time.Since(start).Nanoseconds()},
		Cached:      d.Cached,
		RequestID:   authz.RequestID(ctx),
	}
	if d.Revision != "" {
		e.Bundles = map[string]bundleRevision{"tollgate": {Revision: d.Revision}}
	}
	if err != nil {
		e.Result = nil
		e.Error = &decisionError{Code: "evaluation_error", Message: err.Error()}
	} else {
		for i, actions := range d.Allowed {
			if i >= len(in.Scopes) {
				break
			}
			s := in.Scopes[i]
			for _, a := range slices.Sorted(maps.Keys(actions)) {
				e.Result = append(e.Result, allowedEntry{Type: s.Type, Name: s.Name, Action: a})
			}
		}
	}
	line, merr := json.Marshal(e)
	if merr == nil {
		line = append(line, '\n')
		l.mu.Lock()
		_, _ = l.w.Write(line) // a log that cannot be written never changes a decision
		l.mu.Unlock()
	}
	return d, err
}

// newDecisionID returns a random (version 4) UUID, as OPA's decision ids are.
func newDecisionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
