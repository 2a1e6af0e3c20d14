package broker

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/tollgate/tollgate/identity"
)

// SessionOptions turn on device login (single sign-on through an OIDC
// provider, RFC 8628) and the login sessions it creates.
type SessionOptions struct {
	// Devices are the connectors that offer device login, by name.
	Devices map[string]identity.DeviceConnector
	Store   SessionStore
	// Sealer encrypts provider refresh tokens and device handles; every
	// replica must share its key.
	Sealer      *Sealer
	MaxLifetime time.Duration
	Idle        time.Duration
}

// defaultDeviceInterval is the least time between two polls when the
// provider names none (RFC 8628 §3.2).
const defaultDeviceInterval = 5 * time.Second

// handlePurpose is the additional data device handles are sealed with.
const handlePurpose = "tollgate-device-handle"

// deviceHandle is what the broker's device_code carries, sealed: the
// provider's device code never reaches the client in clear, and any
// replica holding the key can answer a poll.
type deviceHandle struct {
	Connector string `json:"c"`
	Service   string `json:"s"`
	Code      string `json:"d"`
	Expires   int64  `json:"e"` // unix seconds
	Interval  int64  `json:"i"` // seconds
}

// devicePolls remembers when each handle was last polled, for slow_down,
// and the handles that brought a login, so a replay here is refused
// without asking the provider (other replicas ask it: it refuses too).
// Plain LRUs, bounded in entries: an expirable one runs a goroutine that
// never ends, one more for every server a configuration reload builds, and
// an old entry is harmless (a handle past its expiry is refused anyway).
type devicePolls struct {
	mu   sync.Mutex
	last *lru.Cache[string, time.Time]
	used *lru.Cache[string, struct{}]
}

func newDevicePolls() *devicePolls {
	last, _ := lru.New[string, time.Time](100_000) // fails only for a size <= 0
	used, _ := lru.New[string, struct{}](100_000)
	return &devicePolls{last: last, used: used}
}

func (p *devicePolls) markUsed(handle string) { p.used.Add(handle, struct{}{}) }

func (p *devicePolls) wasUsed(handle string) bool { return p.used.Contains(handle) }

// admit records a poll of handle at now; false when the previous one was
// less than interval ago.
func (p *devicePolls) admit(handle string, now time.Time, interval time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if prev, ok := p.last.Get(handle); ok && now.Sub(prev) < interval {
		return false
	}
	p.last.Add(handle, now)
	return true
}

type deviceStartResponse struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete,omitempty"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

type deviceTokenResponse struct {
	RefreshToken string `json:"refresh_token"`
	SessionID    string `json:"session_id"`
	Subject      string `json:"subject"`
	ExpiresIn    int    `json:"expires_in"`
}

// serveJSON answers a device-login endpoint: serve's value as JSON, or its
// error, and one log line (which names no token or code).
func (s *Server) serveJSON(w http.ResponseWriter, r *http.Request, what string, serve func() (any, []any, error)) {
	start := time.Now()
	out, attrs, err := serve()
	status := http.StatusOK
	if err != nil {
		status = s.writeError(w, r, err)
		attrs = append(attrs, "error", err.Error())
	} else {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(out)
	}
	attrs = append(attrs, "client_ip", s.opts.ClientAddress.Of(r), "status", status, "latency_ms", float64(time.Since(start).Microseconds())/1000)
	s.log.Info(what, attrs...)
}

// handleDeviceStart is POST /login/device: a device authorization at the
// connector's provider, answered with a sealed handle instead of its code.
func (s *Server) handleDeviceStart(w http.ResponseWriter, r *http.Request) {
	s.serveJSON(w, r, "device login start", func() (any, []any, error) {
		form, err := parseForm(w, r)
		if err != nil {
			return nil, nil, err
		}
		svc, err := s.service(form["service"])
		if err != nil {
			return nil, nil, err
		}
		name, dev, err := s.deviceConnector(single(form, "connector"))
		if err != nil {
			return nil, nil, err
		}
		attrs := []any{"service", svc.Name, "connector", name}
		if err := s.startAdmitted(r); err != nil {
			return nil, attrs, err
		}
		auth, err := dev.StartDevice(r.Context())
		if err != nil {
			return nil, attrs, providerFailure(r.Context(), err)
		}
		interval := max(auth.Interval, defaultDeviceInterval)
		h := deviceHandle{Connector: name, Service: svc.Name, Code: auth.DeviceCode,
			Expires: s.now().Add(auth.ExpiresIn).Unix(), Interval: int64(interval / time.Second)}
		plain, _ := json.Marshal(h) // strings and ints: cannot fail
		return deviceStartResponse{
			DeviceCode:              base64.RawURLEncoding.EncodeToString(s.opts.Sessions.Sealer.Seal(plain, handlePurpose)),
			UserCode:                auth.UserCode,
			VerificationURI:         auth.VerificationURI,
			VerificationURIComplete: auth.VerificationURIComplete,
			ExpiresIn:               int(auth.ExpiresIn / time.Second),
			Interval:                int(h.Interval),
		}, attrs, nil
	})
}

// startAdmitted refuses a device-login start (429) when the caller's
// address has started too many in the throttle's window; a store that
// cannot count lets it through, as for logins.
func (s *Server) startAdmitted(r *http.Request) error {
	wait, err := s.opts.Throttle.AdmitStart(r.Context(), s.opts.ClientAddress.Of(r))
	if err != nil {
		s.log.Warn("throttle store unavailable; not throttling", "err", err)
		return nil
	}
	if wait > 0 {
		e := newError(kindThrottled, nil, "too many device logins started from this address; retry later")
		e.retryAfter = wait
		return e
	}
	return nil
}

// deviceConnector picks the connector: the named one, or the only one.
func (s *Server) deviceConnector(name string) (string, identity.DeviceConnector, error) {
	devices := s.opts.Sessions.Devices
	if name == "" {
		if len(devices) != 1 {
			return "", nil, newError(kindBadRequest, nil, "connector required: one of %v", slices.Sorted(maps.Keys(devices)))
		}
		for n, d := range devices {
			return n, d, nil
		}
	}
	d, ok := devices[name]
	if !ok {
		return "", nil, newError(kindBadRequest, nil, "connector %q does not offer device login", truncate(name, 100))
	}
	return name, d, nil
}

// providerFailure is the answer when the provider could not be asked or
// refused the broker itself (a misconfigured client): 503 either way, the
// client can do nothing about it.
func providerFailure(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return newError(kindCancelled, err, "client went away while the identity provider answered")
	}
	return newError(kindUnavailable, err, "identity provider unavailable; try again")
}

// handleDevicePoll is POST /login/device/token. Handles that do not open
// (guessed, altered) and codes the provider no longer knows (replayed)
// count as failed logins of the client's address.
func (s *Server) handleDevicePoll(w http.ResponseWriter, r *http.Request) {
	s.serveJSON(w, r, "device login poll", func() (any, []any, error) {
		ctx := r.Context()
		form, err := parseForm(w, r)
		if err != nil {
			return nil, nil, err
		}
		svc, err := s.service(form["service"])
		if err != nil {
			return nil, nil, err
		}
		attempt, wait, err := s.opts.Throttle.Admit(ctx, s.opts.ClientAddress.Of(r))
		if err := s.throttled(wait, err); err != nil {
			return nil, nil, err
		}
		out, attrs, err := s.pollDevice(ctx, svc, single(form, "device_code"))
		var ae *apiError
		if !errors.As(err, &ae) || ae.kind != kindBadGrant {
			s.settle(ctx, attempt.Undo)
		}
		return out, attrs, err
	})
}

func (s *Server) pollDevice(ctx context.Context, svc *Service, handle string) (any, []any, error) {
	so := s.opts.Sessions
	var h deviceHandle
	sealed, err := base64.RawURLEncoding.DecodeString(handle)
	if err == nil {
		var plain []byte
		if plain, err = so.Sealer.Open(sealed, handlePurpose); err == nil {
			err = json.Unmarshal(plain, &h)
		}
	}
	if err != nil || h.Service != svc.Name || so.Devices[h.Connector] == nil {
		return nil, nil, newError(kindBadGrant, err, "unknown device code")
	}
	attrs := []any{"service", svc.Name, "connector", h.Connector}
	// The sealed bytes, not the text, name the handle: base64 decoding
	// skips \r and \n, so many texts are one handle.
	key := string(sealed)
	now := s.now()
	if s.polls.wasUsed(key) {
		return nil, attrs, newError(kindBadGrant, nil, "device code already used")
	}
	if now.Unix() >= h.Expires {
		return nil, attrs, newError(kindExpiredToken, nil, "the device code expired: start again")
	}
	if !s.polls.admit(key, now, time.Duration(h.Interval)*time.Second) {
		return nil, attrs, newError(kindSlowDown, nil, "polled faster than every %ds", h.Interval)
	}
	login, err := so.Devices[h.Connector].PollDevice(ctx, h.Code)
	if err != nil {
		return nil, attrs, pollFailure(ctx, err)
	}
	sess, tok, err := s.createSession(ctx, svc, h.Connector, login, now)
	if err != nil {
		return nil, attrs, err
	}
	s.polls.markUsed(key)
	attrs = append(attrs, "subject", sess.Subject, "session_id", sess.ID)
	return deviceTokenResponse{RefreshToken: tok, SessionID: sess.ID, Subject: sess.Subject,
		ExpiresIn: int(so.MaxLifetime / time.Second)}, attrs, nil
}

// pollFailure passes the provider's RFC 8628 answers on; any other refusal
// of the code is invalid_grant.
func pollFailure(ctx context.Context, err error) error {
	var oe *identity.OAuthError
	var rej *identity.RejectedError
	switch {
	case errors.As(err, &oe):
		kind := map[string]*errorKind{"authorization_pending": kindPending, "slow_down": kindSlowDown,
			"expired_token": kindExpiredToken, "access_denied": kindAccessDenied}[oe.Code]
		if kind == nil {
			return newError(kindBadGrant, err, "the identity provider refused the device code")
		}
		return newError(kind, nil, "%s", oe.Error())
	case errors.As(err, &rej):
		return newError(kindAccessDenied, nil, "%s", rej.Reason)
	}
	return providerFailure(ctx, err)
}

// createSession records the login and signs the refresh token bound to it.
func (s *Server) createSession(ctx context.Context, svc *Service, connector string, login identity.DeviceLogin, now time.Time) (*Session, string, error) {
	so := s.opts.Sessions
	if login.RefreshToken == "" {
		return nil, "", newError(kindUnavailable, nil, "the identity provider issued no refresh token (the client needs scope offline_access)")
	}
	sess := &Session{ID: rand.Text(), Connector: connector, Service: svc.Name, Created: now, LastUsed: now, LastValidated: now,
		Expires: now.Add(so.MaxLifetime)}
	sess.setIdentity(identity.Normalize(login.Identity))
	sess.Refresh = so.Sealer.Seal([]byte(login.RefreshToken), sessionPurpose+sess.ID)
	key := svc.Keys.Signer(now)
	if key == nil {
		return nil, "", newError(kindUnavailable, nil, "no signing key is valid for service %q", svc.Name)
	}
	tok, err := svc.signRefresh(key, sess.Identity(), sess.ID, now, so.MaxLifetime)
	if err != nil {
		return nil, "", err
	}
	if err := so.Store.Create(ctx, sess); err != nil {
		return nil, "", newError(kindUnavailable, err, "session store unavailable; try again")
	}
	return sess, tok, nil
}
