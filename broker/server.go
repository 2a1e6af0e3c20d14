// Package broker is the registry token service: it parses token requests,
// authenticates the caller, asks the policy, and signs the granted access.
package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/identity"
)

// Authenticator is what the broker needs of the identity side.
type Authenticator interface {
	Login(ctx context.Context, user, password string) (identity.Identity, bool, error)
	VerifyToken(ctx context.Context, raw string) (identity.Identity, bool, error)
	Refresh(ctx context.Context, prev identity.Identity) (identity.Identity, bool, error)
	HasTokenConnectors() bool
	// Unguessable reports whether user's secret cannot be guessed (a
	// robot's): its failed logins are throttled per address only.
	Unguessable(user string) bool
}

// Service is one audience the broker issues tokens for (a registry, a notary).
type Service struct {
	Name        string
	Default     bool
	Issuer      string
	Realm       string
	TokenTTL    time.Duration
	MaxTokenTTL time.Duration
	// TokenReuse is how long an access token may be served again to a
	// request for the same subject and grant instead of signing anew; 0
	// signs every token. At most 10 seconds.
	TokenReuse time.Duration
	Keys       *KeySet
}

// Options configure a Server.
type Options struct {
	Services      []*Service
	Authenticator Authenticator
	Authorizer    authz.Authorizer
	// Anonymous lets callers without credentials through to the policy.
	Anonymous bool
	// Metrics, when set, count requests and decisions.
	Metrics *Metrics
	// Revocations stop refresh tokens early; nil means none are revoked.
	Revocations Revocations
	// ClientAddress finds the client behind trusted proxies; nil means the
	// TCP peer is the client.
	ClientAddress *ClientAddress
	// Throttle limits failed logins; nil turns throttling off.
	Throttle *Throttle
	// RefreshTTL is the lifetime of refresh tokens; 0 disables them.
	RefreshTTL time.Duration
	Logger     *slog.Logger
	// Ready reports whether a policy is loaded; nil means always.
	Ready func() error
	// ReadyDetail adds lines to the /readyz body (the policy revision in
	// force, the last failed reload); nil adds none.
	ReadyDetail func() []string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Sessions, when set, serve device login (/login/device) and the
	// login sessions behind its refresh tokens.
	Sessions *SessionOptions
}

// Server serves the token endpoint, the published keys and health checks.
type Server struct {
	opts     Options
	services map[string]*Service
	fallback *Service
	log      *slog.Logger
	now      func() time.Time
	mux      *http.ServeMux
	draining atomic.Bool
	reuse    *tokenReuse
	signing  singleflight.Group // reuse keys being signed
	// revalidating runs one re-validation per session at a time.
	revalidating singleflight.Group
	polls        *devicePolls
}

// minTokenTTL is the shortest lifetime the broker signs: clients assume 60
// seconds when told less.
const minTokenTTL = 60 * time.Second

// New builds a Server. It fails when a service has no key that can sign.
func New(opts Options) (*Server, error) {
	s := &Server{opts: opts, services: map[string]*Service{}, log: opts.Logger, now: opts.Now, reuse: newTokenReuse()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	for _, svc := range opts.Services {
		if _, dup := s.services[svc.Name]; dup {
			return nil, fmt.Errorf("service %q defined twice", svc.Name)
		}
		if svc.TokenReuse < 0 || svc.TokenReuse > MaxTokenReuse {
			return nil, fmt.Errorf("service %q: token reuse window %s outside [0, %s]", svc.Name, svc.TokenReuse, MaxTokenReuse)
		}
		if svc.Keys == nil || svc.Keys.Signer(s.now()) == nil {
			return nil, fmt.Errorf("service %q: no key valid for signing now", svc.Name)
		}
		s.services[svc.Name] = svc
		if svc.Default {
			s.fallback = svc
		}
	}
	if len(opts.Services) == 1 && s.fallback == nil {
		s.fallback = opts.Services[0]
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/token", s.handleToken)
	mux.HandleFunc("GET /.well-known/jwks.json", s.handleJWKS)
	mux.HandleFunc("GET /certs.pem", s.handleCerts)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeText(w, http.StatusOK, "ok\n") })
	mux.HandleFunc("GET /readyz", s.handleReady)
	if so := opts.Sessions; so != nil && len(so.Devices) > 0 {
		if so.Store == nil || so.Sealer == nil || so.MaxLifetime <= 0 || so.Idle <= 0 {
			return nil, fmt.Errorf("device login needs a session store, a sealer, a maximum lifetime and an idle time")
		}
		s.polls = newDevicePolls()
		mux.HandleFunc("POST /login/device", s.handleDeviceStart)
		mux.HandleFunc("POST /login/device/token", s.handleDevicePoll)
		mux.HandleFunc("POST /logout", s.handleLogout)
	}
	s.mux = mux
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("X-Request-ID")
	if !validRequestID(id) {
		id = newRequestID()
	}
	w.Header().Set("X-Request-ID", id)
	ctx := authz.WithRemoteAddr(authz.WithRequestID(r.Context(), id), r.RemoteAddr)
	s.mux.ServeHTTP(w, r.WithContext(ctx))
}

// validRequestID accepts a caller's (a proxy's) request id only when it is
// short and plain, so it cannot forge log lines.
func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// SetDraining makes /readyz fail so load balancers stop sending traffic
// while in-flight requests finish.
func (s *Server) SetDraining() { s.draining.Store(true) }

// handleReady answers 200 "ready" or 503 with the reason, followed by the
// detail lines, so an operator sees why a policy is not the one expected.
func (s *Server) handleReady(w http.ResponseWriter, _ *http.Request) {
	status, text := http.StatusOK, "ready"
	if s.draining.Load() {
		status, text = http.StatusServiceUnavailable, "draining"
	} else if err := s.readyErr(); err != nil {
		status, text = http.StatusServiceUnavailable, "not ready: "+err.Error()
	}
	var detail []string
	if s.opts.ReadyDetail != nil {
		detail = s.opts.ReadyDetail()
	}
	writeText(w, status, strings.Join(append([]string{text}, detail...), "\n")+"\n")
}

func (s *Server) readyErr() error {
	if s.opts.Ready != nil {
		if err := s.opts.Ready(); err != nil {
			return err
		}
	}
	now := s.now()
	for _, svc := range s.opts.Services {
		if svc.Keys.Signer(now) == nil {
			return fmt.Errorf("service %s has no key valid for signing", svc.Name)
		}
	}
	return nil
}

// handleJWKS publishes every service's public keys. A kid names one key
// whatever service it belongs to, so one document serves all of them.
func (s *Server) handleJWKS(w http.ResponseWriter, _ *http.Request) {
	now := s.now()
	keys := []JWK{}
	seen := map[string]bool{}
	for _, svc := range s.opts.Services {
		for _, k := range svc.Keys.JWKs(now) {
			if !seen[k.Kid] {
				seen[k.Kid] = true
				keys = append(keys, k)
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=60")
	_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys})
}

// handleCerts publishes the certificate bundle of a service (?service=), or
// of the default service, for a registry's rootcertbundle.
func (s *Server) handleCerts(w http.ResponseWriter, r *http.Request) {
	svc, err := s.service(r.URL.Query()["service"])
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Cache-Control", "public, max-age=60")
	_, _ = w.Write(svc.Keys.CertBundle(s.now()))
}

// service resolves the service parameter. A missing service is normal
// (containerd omits it): the default service answers.
func (s *Server) service(values []string) (*Service, error) {
	if len(values) > 1 {
		return nil, newError(kindBadRequest, nil, "service given %d times", len(values))
	}
	if len(values) == 0 || values[0] == "" {
		if s.fallback == nil {
			return nil, newError(kindBadRequest, nil, "missing service parameter and no default service configured")
		}
		return s.fallback, nil
	}
	svc, ok := s.services[values[0]]
	if !ok {
		return nil, newError(kindBadRequest, nil, "unknown service %q", truncate(values[0], 100))
	}
	return svc, nil
}

func writeText(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(text))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
