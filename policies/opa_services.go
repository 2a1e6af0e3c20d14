package policies

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/config"
	"github.com/open-policy-agent/opa/v1/plugins"
	"github.com/open-policy-agent/opa/v1/plugins/rest"
	"github.com/open-policy-agent/opa/v1/util"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/internal/probe"
)

// limitedPrefix names tollgate's auth plugins standing for services.
const limitedPrefix = "tollgate.limits."

// limiter puts tollgate's bundle limits in front of OPA's bundles, in the
// boot document (limit, then register) and in every configuration a
// discovery bundle brings (OnConfigDiscovery, OPA's hook for it): each
// service's credentials become tollgate's auth plugin, which bounds what
// the service answers with; each bundle gets size_limit_bytes; a file://
// bundle is checked before OPA reads it. Documents are changed in memory,
// never the team's file.
type limiter struct {
	client  serviceClient
	maxFile int64 // size_limit_bytes where a bundle sets none, 0 to leave OPA's
	manager *plugins.Manager

	mu      sync.Mutex
	names   map[string]string // service name and credentials (JSON) → its auth plugin
	pending map[string]any    // auth plugins not registered yet: name → credentials
}

func newLimiter(client serviceClient, maxFile int64) *limiter {
	return &limiter{client: client, maxFile: maxFile, names: map[string]string{}, pending: map[string]any{}}
}

// limit rewrites a configuration document (services and bundles).
func (l *limiter) limit(doc map[string]any) error {
	if err := l.limitServices(doc); err != nil {
		return err
	}
	bs, _ := doc["bundles"].(map[string]any)
	for _, name := range slices.Sorted(maps.Keys(bs)) {
		b, ok := bs[name].(map[string]any)
		if !ok {
			continue // OPA refuses it with its own message
		}
		if b["size_limit_bytes"] == nil && l.maxFile > 0 {
			b["size_limit_bytes"] = l.maxFile
		}
		if err := l.checkFile(b["resource"]); err != nil {
			return fmt.Errorf("bundles.%s: %w", name, err)
		}
	}
	return nil
}

// checkFile checks a file:// bundle against the limits: OPA's file loader
// reads it whole, with only the per-file limit. A missing file is left to
// OPA, which reports it and activates nothing.
func (l *limiter) checkFile(resource any) error {
	s, _ := resource.(string)
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "file" {
		return nil
	}
	if err := l.client.limits.CheckFile(u.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", s, err)
	}
	return nil
}

// limitServices puts, in doc's services (a map by name, or a list of
// services with a name, as OPA takes either), tollgate's auth plugin in
// place of each service's credentials.
func (l *limiter) limitServices(doc map[string]any) error {
	var errs []error
	swap := func(name string, s any) {
		svc, ok := s.(map[string]any)
		if !ok || name == "" {
			return // OPA refuses it with its own message
		}
		plugin, err := l.plugin(name, svc["credentials"])
		if err != nil {
			errs = append(errs, fmt.Errorf("services.%s.credentials: %w", name, err))
			return
		}
		svc["credentials"] = map[string]any{"plugin": plugin}
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
	return errors.Join(errs...)
}

// plugin names the auth plugin standing for a service's credentials: the
// same for the same service and credentials (a discovered configuration
// that repeats a boot service gets the same, as OPA's check that the
// discovery service is unchanged wants), a new one otherwise.
func (l *limiter) plugin(service string, creds any) (string, error) {
	if c, ok := creds.(map[string]any); ok {
		if p, _ := c["plugin"].(string); strings.HasPrefix(p, limitedPrefix) {
			// Another service's credentials, sent to this one's URL.
			return "", fmt.Errorf("plugin %s is tollgate's own", p)
		}
	}
	raw, err := json.Marshal(creds)
	if err != nil {
		return "", err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	key := service + "\x00" + string(raw)
	if name, ok := l.names[key]; ok {
		return name, nil
	}
	name := limitedPrefix + service
	if slices.Contains(slices.Collect(maps.Values(l.names)), name) {
		name += "." + strconv.Itoa(len(l.names))
	}
	l.names[key] = name
	l.pending[name] = creds
	return name, nil
}

// serviceClient is what tollgate adds to every service's HTTP client.
type serviceClient struct {
	limits  bundles.Limits
	probe   probe.Recorder
	timeout time.Duration
}

// register registers on l.manager the auth plugins named since the last
// call; start starts them, for a manager that is already running.
func (l *limiter) register(ctx context.Context, start bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(l.pending)) {
		raw, err := json.Marshal(map[string]any{"credentials": l.pending[name]})
		if err != nil {
			return err
		}
		service := strings.TrimPrefix(name, limitedPrefix)
		var c rest.Config
		if err := json.Unmarshal(raw, &c); err != nil {
			return fmt.Errorf("services.%s.credentials: %w", service, err)
		}
		inner, err := c.AuthPlugin(l.manager.AuthPlugin)
		if err != nil {
			return fmt.Errorf("services.%s.credentials: %w", service, err)
		}
		p := &limitedService{name: name, manager: l.manager, inner: inner, creds: c, client: l.client}
		l.manager.Register(name, p)
		if start {
			p.Start(ctx)
		}
		delete(l.pending, name)
	}
	return nil
}

// OnConfigDiscovery limits the services and bundles of a configuration a
// discovery bundle brings, as those of the boot document are
// (hooks.ConfigDiscoveryHook).
func (l *limiter) OnConfigDiscovery(ctx context.Context, conf *config.Config) (*config.Config, error) {
	if conf.Bundle != nil {
		return nil, errors.New("bundle: OPA's deprecated single-bundle form is not supported (no size limit): name the bundle under bundles")
	}
	doc := map[string]any{}
	for key, raw := range map[string]json.RawMessage{"services": conf.Services, "bundles": conf.Bundles} {
		if raw != nil {
			var v any
			if err := util.Unmarshal(raw, &v); err != nil {
				return nil, fmt.Errorf("discovered %s: %w", key, err)
			}
			doc[key] = v
		}
	}
	if err := l.limit(doc); err != nil {
		return nil, fmt.Errorf("discovered configuration: %w", err)
	}
	var err error
	if doc["services"] != nil {
		conf.Services, err = json.Marshal(doc["services"])
	}
	if err == nil && doc["bundles"] != nil {
		conf.Bundles, err = json.Marshal(doc["bundles"])
	}
	if err != nil {
		return nil, err
	}
	return conf, l.register(ctx, true)
}

// limitedService is one service's auth plugin (rest.HTTPAuthPlugin, OPA's
// credentials.plugin hook) and, as the manager wants of what it holds, a
// plugin that does nothing when started.
type limitedService struct {
	name    string
	manager *plugins.Manager
	inner   rest.HTTPAuthPlugin // OPA's plugin for the service's credentials
	creds   rest.Config         // the credentials as written
	client  serviceClient
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
	guard := newCredentialGuard(hc.Transport, c.URL, slices.Collect(maps.Keys(c.Headers)))
	hc.Transport = p.client.limits.Transport(probed{guard, p.client.probe})
	if p.client.timeout > 0 {
		hc.Timeout = p.client.timeout
	}
	// As for policy.source: net/http alone follows a redirect from https
	// to http and sends Authorization to another port or a subdomain.
	hc.CheckRedirect = bundles.CheckRedirectDropping(slices.Collect(maps.Keys(c.Headers))...)
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

// probed records each request's latency and whether the server answered
// (200, or 304 not modified) to rec; a bundle refused afterwards (too
// large, unsigned, invalid) is no failure of the server's.
type probed struct {
	base http.RoundTripper
	rec  probe.Recorder
}

func (t probed) RoundTrip(req *http.Request) (*http.Response, error) {
	base := cmp.Or[http.RoundTripper](t.base, http.DefaultTransport)
	if t.rec == nil {
		return base.RoundTrip(req)
	}
	done := probe.Start(t.rec)
	resp, err := base.RoundTrip(req)
	switch {
	case err != nil:
		done(req.Context(), err)
	case resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotModified:
		done(req.Context(), fmt.Errorf("%s answered %s", bundles.RedactURL(req.URL.String()), resp.Status))
	default:
		done(req.Context(), nil)
	}
	return resp, err
}
