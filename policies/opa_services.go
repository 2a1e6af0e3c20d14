package policies

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"

	"github.com/open-policy-agent/opa/v1/plugins"
	"github.com/open-policy-agent/opa/v1/plugins/rest"

	"github.com/tollgate/tollgate/bundles"
)

// limitedPrefix names tollgate's auth plugin standing for one service.
const limitedPrefix = "tollgate.limits."

// limitServices puts, in doc's services (a map by name, or a list of
// services with a name, as OPA takes either), tollgate's auth plugin in
// place of each service's credentials, and returns those credentials by
// service name. The document is changed in memory, never the team's file.
func limitServices(doc map[string]any) map[string]any {
	saved := map[string]any{}
	swap := func(name string, s any) {
		svc, ok := s.(map[string]any)
		if !ok || name == "" {
			return // OPA refuses it with its own message
		}
		saved[name] = svc["credentials"]
		svc["credentials"] = map[string]any{"plugin": limitedPrefix + name}
	}
	switch ss := doc["services"].(type) {
	case map[string]any:
		for name, s := range ss {
			swap(name, s)
		}
	case []any:
		for _, s := range ss {
			if svc, ok := s.(map[string]any); ok {
				name, _ := svc["name"].(string)
				swap(name, s)
			}
		}
	}
	return saved
}

// registerLimited registers, for each service, the auth plugin that
// limitServices named: it authenticates with the service's own
// credentials, through OPA's plugin for them (bearer, oauth2, client_tls,
// ...), and bounds every bundle the service answers with.
func registerLimited(m *plugins.Manager, saved map[string]any, limits bundles.Limits) error {
	for _, name := range slices.Sorted(maps.Keys(saved)) {
		raw, err := json.Marshal(map[string]any{"credentials": saved[name]})
		if err != nil {
			return err
		}
		var c rest.Config
		if err := json.Unmarshal(raw, &c); err != nil {
			return fmt.Errorf("services.%s.credentials: %w", name, err)
		}
		inner, err := c.AuthPlugin(m.AuthPlugin)
		if err != nil {
			return fmt.Errorf("services.%s.credentials: %w", name, err)
		}
		m.Register(limitedPrefix+name, &limitedService{name: limitedPrefix + name, manager: m,
			inner: inner, creds: c, limits: limits})
	}
	return nil
}

// limitedService is one service's auth plugin (rest.HTTPAuthPlugin, OPA's
// credentials.plugin hook) and, as the manager wants of what it holds, a
// plugin that does nothing when started.
type limitedService struct {
	name    string
	manager *plugins.Manager
	inner   rest.HTTPAuthPlugin // OPA's plugin for the service's credentials
	creds   rest.Config         // the credentials as written
	limits  bundles.Limits
	// mu serializes the calls into inner, which every client of the
	// service (bundle downloads, status, decision logs) shares and OPA's
	// plugins do not guard: oauth2's Prepare writes its token cache.
	mu sync.Mutex
}

func (p *limitedService) NewClient(c rest.Config) (*http.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.Credentials = p.creds.Credentials
	hc, err := p.inner.NewClient(c)
	if err != nil {
		return nil, err
	}
	hc.Transport = p.limits.Transport(hc.Transport)
	return hc, nil
}

func (p *limitedService) Prepare(r *http.Request) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inner.Prepare(r)
}

func (p *limitedService) Start(context.Context) error {
	p.manager.UpdatePluginStatus(p.name, &plugins.Status{State: plugins.StateOK})
	return nil
}

func (p *limitedService) Stop(context.Context) {}

func (p *limitedService) Reconfigure(context.Context, any) {}
