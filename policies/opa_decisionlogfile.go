package policies

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/plugins"
)

// DecisionLogPlugin is the name of tollgate's decision-log plugin in an OPA
// document: `decision_logs.plugin` names it, `plugins` configures it.
const DecisionLogPlugin = "tollgate_decision_log"

// decisionLogFactory makes tollgate's decision-log plugin: OPA's
// decision_logs plugin hands it every event after its drop and mask
// policies, as it hands one to any `decision_logs.plugin`, and the plugin
// writes it to w as one JSON line.
//
// The plugin is an OPA LoggerPlugin (a slog.Handler), not a logs.Logger:
// for the former OPA itself turns the event into its console logger's
// fields (the error as its message, `type`), so the line is what
// `decision_logs.console: true` writes, without tollgate re-encoding
// OPA's event; a logs.Logger gets the event struct and would have to.
type decisionLogFactory struct{ w io.Writer }

func (decisionLogFactory) Validate(_ *plugins.Manager, config []byte) (any, error) {
	if s := strings.TrimSpace(string(config)); s != "" && s != "null" && s != "{}" {
		return nil, fmt.Errorf("plugins.%s: takes no configuration (policy.decision_log sets it)", DecisionLogPlugin)
	}
	return nil, nil
}

func (f decisionLogFactory) New(m *plugins.Manager, _ any) plugins.Plugin {
	return &decisionLogPlugin{manager: m, handler: consoleLineHandler(f.w)}
}

type decisionLogPlugin struct {
	manager *plugins.Manager
	handler slog.Handler
}

func (p *decisionLogPlugin) Start(context.Context) error {
	p.manager.UpdatePluginStatus(DecisionLogPlugin, &plugins.Status{State: plugins.StateOK})
	return nil
}

func (p *decisionLogPlugin) Stop(context.Context) {
	p.manager.UpdatePluginStatus(DecisionLogPlugin, &plugins.Status{State: plugins.StateNotReady})
}

func (*decisionLogPlugin) Reconfigure(context.Context, any) {}

// Logger is what OPA's decision_logs plugin logs each event to.
func (p *decisionLogPlugin) Logger() slog.Handler { return p.handler }

// consoleLineHandler writes each record as one JSON line in the shape of
// OPA's console logger (logrus's JSON formatter): "level" in lower case,
// "msg", and "time" in RFC 3339 seconds, beside the event's fields. slog's
// JSON handler writes a record in one Write, so lines never interleave.
func consoleLineHandler(w io.Writer) slog.Handler {
	return slog.NewJSONHandler(w, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) > 0 {
			return a
		}
		switch a.Key {
		case slog.LevelKey:
			return slog.String(a.Key, strings.ToLower(a.Value.String()))
		case slog.TimeKey:
			return slog.String(a.Key, a.Value.Time().Format(time.RFC3339))
		}
		return a
	}})
}

// withDecisionLog rewrites the OPA document (JSON) so that OPA's
// decision_logs plugin also hands every event to tollgate's plugin:
// `plugins.tollgate_decision_log` and `decision_logs.plugin`. What the
// document says of uploads (`service`), `console`, masks and drops stays.
// A document that already names a decision_logs plugin is refused: OPA
// takes one.
func withDecisionLog(doc []byte) ([]byte, error) {
	var v map[string]any
	if err := json.Unmarshal(doc, &v); err != nil {
		return nil, err
	}
	dl, _ := v["decision_logs"].(map[string]any)
	if dl == nil {
		dl = map[string]any{}
	}
	if dl["plugin"] != nil {
		return nil, errors.New("decision_logs.plugin: OPA hands events to one plugin only, and policy.decision_log is one: keep one of them")
	}
	// Without plugin and console, OPA uploads to the first service; with a
	// plugin named, it uploads only to a service named.
	if v["decision_logs"] != nil && dl["service"] == nil && dl["console"] != true && v["services"] != nil {
		return nil, errors.New("decision_logs.service: name the service to upload to: with policy.decision_log on, OPA no longer defaults to the first service")
	}
	// OPA checks the service's name only when no plugin is named.
	if name, ok := dl["service"].(string); ok && !hasService(v["services"], name) {
		return nil, fmt.Errorf("decision_logs.service: no service %q", name)
	}
	dl["plugin"] = DecisionLogPlugin
	v["decision_logs"] = dl
	ps, _ := v["plugins"].(map[string]any)
	if ps == nil {
		ps = map[string]any{}
	}
	ps[DecisionLogPlugin] = map[string]any{}
	v["plugins"] = ps
	return json.Marshal(v)
}

// hasService reports whether OPA's services (a map by name, or a list of
// services with a name) hold name.
func hasService(services any, name string) bool {
	switch ss := services.(type) {
	case map[string]any:
		_, ok := ss[name]
		return ok
	case []any:
		for _, s := range ss {
			if m, _ := s.(map[string]any); m["name"] == name {
				return true
			}
		}
	}
	return false
}
