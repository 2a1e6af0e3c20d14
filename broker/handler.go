package broker

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/scope"
)

// Limits on a token request. Real clients send a few hundred bytes.
const (
	maxQueryBytes    = 16 << 10
	maxBodyBytes     = maxRefreshBytes + 16<<10 // a refresh token and the rest of a request
	maxUserBytes     = 256
	maxPasswordBytes = 8 << 10 // OIDC tokens are accepted as passwords
	// maxRefreshBytes bounds the refresh tokens the broker accepts, and
	// signRefresh issues none longer. The longest carries the claims of an
	// OIDC token of maxPasswordBytes: at most 6 KiB of JSON, 8 KiB in
	// base64, and a kid-only header, the registered claims, the subject
	// and a signature (683 characters for RSA-4096) fit in the other 8 KiB.
	// Only claims that grow when encoded again (invalid UTF-8) or a subject
	// of kilobytes can pass it: then no refresh token is issued (logged).
	maxRefreshBytes = 16 << 10
)

// tokenRequest is a parsed GET or POST /token.
type tokenRequest struct {
	svc      *Service
	scopes   []scope.Scope
	grant    string // "" (GET), "password" or "refresh_token"
	user     string
	password string
	bearer   string
	refresh  string
	basic    bool // credentials were given (Basic header or password grant)
	offline  bool
	account  string
	clientID string
	addr     string // the client's address, for throttling and the policy
	// sessionID is the login session of a session-bound refresh token.
	sessionID string
}

type tokenResponse struct {
	Token        string `json:"token"`
	AccessToken  string `json:"access_token"`
	ExpiresIn    int    `json:"expires_in"`
	IssuedAt     string `json:"issued_at"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// handleToken is the whole request path: parse, authenticate, authorize,
// intersect, sign, answer, and one decision log line.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	// The policy's decision log waits for the token id (decision 0014).
	ctx, report := authz.WithOutcome(r.Context())
	rec, err := s.serveToken(ctx, w, r)
	status := http.StatusOK
	if err != nil {
		status = s.writeError(w, r, err)
	}
	report(rec.authzOutcome(err))
	elapsed := time.Since(start)
	outcome := rec.outcome(status, err)
	rec.log(s.log, r, status, outcome, err, elapsed)
	s.opts.Metrics.observe(outcome, status, &rec, elapsed)
}

// serveToken answers a token request, or fails it, and returns what the
// log line says of it: what each step learned, as far as the request got.
func (s *Server) serveToken(ctx context.Context, w http.ResponseWriter, r *http.Request) (decision, error) {
	rec := decision{addr: s.opts.ClientAddress.Of(r)}
	req, err := s.parseRequest(w, r)
	if err != nil {
		return rec, err
	}
	req.addr = rec.addr
	rec.req = req

	id, err := s.authenticate(ctx, req)
	if err != nil {
		return rec, err
	}
	rec.id = &id

	if rec.grant, err = s.authorize(ctx, r, req, id); err != nil {
		return rec, err
	}

	now := s.now()
	key := req.svc.Keys.Signer(now)
	if key == nil {
		return rec, newError(kindUnavailable, nil, "no signing key is valid for service %q", req.svc.Name)
	}
	tok, reused, err := s.accessToken(req.svc, key, id.Subject, rec.grant.access, now, rec.grant.ttl)
	if err != nil {
		return rec, err
	}
	rec.tokenID, rec.reused = tok.id, reused
	resp := tok.resp
	if resp.RefreshToken, err = s.refreshToken(req, key, id, now); err != nil {
		return rec, err
	}
	rec.refreshIssued = resp.RefreshToken != ""
	writeTokenResponse(w, &resp)
	return rec, nil
}

// accessToken signs the access token, or serves the one signed for the same
// claims within the service's reuse window (see tokenReuse); reused says which.
func (s *Server) accessToken(svc *Service, key *Key, subject string, access []AccessEntry, now time.Time, ttl time.Duration) (t reusedToken, reused bool, err error) {
	sign := func() (reusedToken, error) {
		tok, id, err := svc.signAccess(key, subject, access, now, ttl)
		resp := tokenResponse{Token: tok, AccessToken: tok, ExpiresIn: int(ttl / time.Second), IssuedAt: now.UTC().Format(time.RFC3339)}
		return reusedToken{key: key, resp: resp, id: id, iat: now.Round(0)}, err
	}
	var rk string
	if svc.TokenReuse > 0 {
		rk = reuseKey(svc, key, subject, ttl, access)
	}
	if rk == "" {
		t, err := sign()
		return t, false, err
	}
	if t, ok := s.reuse.get(rk, key, now, svc.TokenReuse); ok {
		return t, true, nil
	}
	// Identical requests that miss together wait for one signature: a storm
	// on an RS256 key would otherwise sign once per waiting request. Looking
	// again inside covers a request that missed just as the last one ended.
	signed := false
	v, err, _ := s.signing.Do(rk, func() (any, error) {
		if t, ok := s.reuse.get(rk, key, now, svc.TokenReuse); ok {
			return t, nil
		}
		signed = true
		t, err := sign()
		if err == nil {
			s.reuse.put(rk, t)
		}
		return t, err
	})
	if err != nil {
		return reusedToken{}, false, err
	}
	return v.(reusedToken), !signed, nil
}

// refreshToken signs the refresh token the request asked for, or returns ""
// where none is issued: not asked for, anonymous, refreshed with one already,
// or an identity whose credential is about to expire.
func (s *Server) refreshToken(req *tokenRequest, key *Key, id identity.Identity, now time.Time) (string, error) {
	ttl := refreshLifetime(s.opts.RefreshTTL, id, now)
	if !req.offline || req.grant == "refresh_token" || ttl <= 0 || id.Anonymous {
		return "", nil
	}
	tok, err := req.svc.signRefresh(key, id, "", now, ttl)
	if errors.Is(err, errRefreshTooLarge) {
		// Better none than one this broker would refuse.
		s.log.Warn("refresh token not issued", "subject", id.Subject, "connector", id.Connector, "err", err)
		return "", nil
	}
	return tok, err
}

// refreshLifetime is the configured refresh-token lifetime, cut short for
// an identity whose credential expires sooner (an OIDC token): a refresh
// token must not outlive what it was issued for.
func refreshLifetime(ttl time.Duration, id identity.Identity, now time.Time) time.Duration {
	if !id.Expiry.IsZero() {
		ttl = min(ttl, id.Expiry.Sub(now).Truncate(time.Second))
	}
	return ttl
}

func (s *Server) parseRequest(w http.ResponseWriter, r *http.Request) (*tokenRequest, error) {
	if len(r.URL.RawQuery) > maxQueryBytes {
		return nil, newError(kindTooLarge, nil, "query string longer than %d bytes", maxQueryBytes)
	}
	req := &tokenRequest{}
	var params map[string][]string
	switch r.Method {
	case http.MethodGet:
		q, err := parseQuery(r.URL.RawQuery)
		if err != nil {
			return nil, err
		}
		params = q
		req.offline = single(q, "offline_token") == "true"
		if err := req.parseAuthorization(r.Header.Values("Authorization")); err != nil {
			return nil, err
		}
	case http.MethodPost:
		form, err := parseForm(w, r)
		if err != nil {
			return nil, err
		}
		q, err := parseQuery(r.URL.RawQuery)
		if err != nil {
			return nil, err
		}
		if err := takeFromQuery(form, q, "service", "scope"); err != nil {
			return nil, err
		}
		params = form
		if err := req.parseGrant(form); err != nil {
			return nil, err
		}
	default:
		return nil, newError(kindMethod, nil, "method %s not allowed: use GET or POST", r.Method)
	}
	for _, p := range []string{"account", "client_id", "grant_type", "username", "password", "refresh_token", "access_type", "offline_token"} {
		if len(params[p]) > 1 {
			return nil, newError(kindBadRequest, nil, "parameter %s given %d times", p, len(params[p]))
		}
	}
	req.account = truncate(single(params, "account"), maxUserBytes)
	req.clientID = truncate(single(params, "client_id"), maxUserBytes)

	svc, err := s.service(params["service"])
	if err != nil {
		return nil, err
	}
	req.svc = svc
	if req.scopes, err = scope.Parse(params["scope"]); err != nil {
		return nil, newError(kindBadScope, nil, "%s", err.Error())
	}
	return req, nil
}

func parseQuery(raw string) (map[string][]string, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, newError(kindBadRequest, nil, "malformed query string")
	}
	return q, nil
}

func parseForm(w http.ResponseWriter, r *http.Request) (map[string][]string, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, newError(kindBadRequest, nil, "POST /token wants Content-Type application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, newError(kindTooLarge, nil, "request body larger than %d bytes", maxBodyBytes)
		}
		return nil, newError(kindBadRequest, nil, "malformed form body")
	}
	return r.PostForm, nil
}

// takeFromQuery lets a POST name keys in its query string as well as in its
// form (some clients keep service and scope in the realm's query); a key
// given in both with different values is refused rather than guessed at.
func takeFromQuery(form, query map[string][]string, keys ...string) error {
	for _, k := range keys {
		q, ok := query[k]
		if !ok {
			continue
		}
		if f, both := form[k]; both && !slices.Equal(f, q) {
			return newError(kindBadRequest, nil, "%s differs between the query string and the form body", k)
		}
		form[k] = q
	}
	return nil
}

// parseGrant reads the OAuth2 form of POST /token.
func (req *tokenRequest) parseGrant(form map[string][]string) error {
	req.grant = single(form, "grant_type")
	req.offline = single(form, "access_type") == "offline"
	switch req.grant {
	case "password":
		req.user, req.password, req.basic = single(form, "username"), single(form, "password"), true
		if req.user == "" || req.password == "" {
			return newError(kindBadRequest, nil, "grant_type=password needs username and password")
		}
	case "refresh_token":
		req.refresh = single(form, "refresh_token")
		if req.refresh == "" {
			return newError(kindBadRequest, nil, "grant_type=refresh_token needs refresh_token")
		}
	case "":
		return newError(kindBadRequest, nil, "missing grant_type")
	default:
		return newError(kindUnsupportedGrant, nil, "grant_type %q is not supported: use password or refresh_token", truncate(req.grant, 50))
	}
	return req.checkCredentialSizes()
}

// parseAuthorization reads the Authorization header of GET /token.
func (req *tokenRequest) parseAuthorization(values []string) error {
	if len(values) == 0 {
		return nil
	}
	if len(values) > 1 {
		return newError(kindBadRequest, nil, "more than one Authorization header")
	}
	scheme, cred, _ := strings.Cut(strings.TrimSpace(values[0]), " ")
	cred = strings.TrimSpace(cred)
	switch {
	case strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.DecodeString(cred)
		if err != nil {
			return newError(kindBadRequest, nil, "malformed Basic authorization header: not base64")
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return newError(kindBadRequest, nil, "malformed Basic authorization header: no ':' between user and password")
		}
		req.user, req.password, req.basic = user, pass, true
	case strings.EqualFold(scheme, "Bearer"):
		if cred == "" {
			return newError(kindBadRequest, nil, "empty Bearer token")
		}
		req.bearer = cred
	default:
		return newError(kindBadRequest, nil, "unsupported authorization scheme %q: use Basic or Bearer", truncate(scheme, 20))
	}
	return req.checkCredentialSizes()
}

func (req *tokenRequest) checkCredentialSizes() error {
	if len(req.user) > maxUserBytes || len(req.password) > maxPasswordBytes ||
		len(req.bearer) > maxPasswordBytes || len(req.refresh) > maxRefreshBytes {
		return newError(kindBadRequest, nil, "credentials too long")
	}
	if !utf8.ValidString(req.user) || strings.ContainsFunc(req.user, unicode.IsControl) {
		return newError(kindBadRequest, nil, "invalid character in user name (it must be UTF-8 text without control characters)")
	}
	return nil
}

func single(m map[string][]string, key string) string {
	if v := m[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// grant is what the policy decided for one request.
type grant struct {
	access   []AccessEntry // what the token carries
	scopes   []authz.Grant // what became of each requested scope
	ttl      time.Duration // the token's lifetime
	revision string        // of the policy that decided; "" when none was asked
	cached   bool          // the decision cache answered
}

// authorize asks the policy and intersects its answer with the request: the
// broker signs only what was both asked and allowed.
func (s *Server) authorize(ctx context.Context, r *http.Request, req *tokenRequest, id identity.Identity) (grant, error) {
	g := grant{ttl: req.svc.TokenTTL}
	if len(req.scopes) == 0 {
		return g, nil // login check: authenticate, grant nothing
	}
	dec, err := s.opts.Authorizer.Authorize(ctx, authz.Input{
		Service:  req.svc.Name,
		Identity: id,
		Scopes:   req.scopes,
		Client:   authz.Client{IP: req.addr, UserAgent: truncate(r.UserAgent(), 256)},
	})
	switch {
	case errors.Is(err, authz.ErrNoPolicy):
		return grant{}, newError(kindUnavailable, err, "no policy loaded; try again")
	case err != nil && ctx.Err() != nil:
		return grant{}, newError(kindCancelled, err, "client went away while the policy decided")
	case err != nil:
		return grant{}, newError(kindInternal, err, "policy evaluation failed")
	}
	g.revision, g.cached = dec.Revision, dec.Cached
	g.scopes = dec.Grants(req.scopes)
	for _, sg := range g.scopes {
		if len(sg.Granted) > 0 {
			g.access = append(g.access, AccessEntry{Type: sg.Scope.Type, Name: sg.Scope.Name, Actions: sg.Granted})
		}
	}
	if dec.TokenTTL > 0 {
		// Whole seconds: expires_in and exp - iat must agree.
		g.ttl = min(max(dec.TokenTTL, minTokenTTL), req.svc.MaxTokenTTL).Truncate(time.Second)
	}
	return g, nil
}

// decision gathers what the decision log line says about one request.
type decision struct {
	addr          string // the client's address (behind trusted proxies, the proxies' client)
	req           *tokenRequest
	id            *identity.Identity
	grant         grant
	tokenID       string // the access token's jti
	reused        bool   // the access token was one signed moments ago for the same claims
	refreshIssued bool
}

// authzOutcome is what the policy's decision log learns after the decision:
// the token id when the client received the token, the login session.
func (d *decision) authzOutcome(err error) authz.Outcome {
	var o authz.Outcome
	if err == nil {
		o.TokenID = d.tokenID
	}
	if d.req != nil {
		o.SessionID = d.req.sessionID
	}
	return o
}

// log writes one line per token request. It never logs a password or token.
// outcome names what became of a request, for logs and metrics.
func (d *decision) outcome(status int, err error) string {
	switch {
	case err != nil:
		switch status {
		case http.StatusUnauthorized:
			return "unauthorized"
		case http.StatusTooManyRequests:
			return "throttled"
		case http.StatusServiceUnavailable:
			return "unavailable"
		case statusClientClosed:
			return "cancelled"
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusMethodNotAllowed:
			return "bad_request"
		}
		return "error"
	case d.req != nil && len(d.req.scopes) == 0:
		return "login"
	}
	return authz.Verdict(d.grant.scopes)
}

func (d *decision) log(l *slog.Logger, r *http.Request, status int, outcome string, err error, elapsed time.Duration) {
	attrs := make([]slog.Attr, 0, 16)
	attrs = append(attrs, slog.String("request_id", authz.RequestID(r.Context())), slog.String("method", r.Method), slog.String("client_ip", d.addr), slog.Int("status", status))
	if d.req != nil {
		attrs = append(attrs, slog.String("service", d.req.svc.Name))
		if d.req.grant != "" {
			attrs = append(attrs, slog.String("grant", d.req.grant))
		}
		if d.req.user != "" {
			attrs = append(attrs, slog.String("user", d.req.user))
		}
		if d.req.account != "" {
			attrs = append(attrs, slog.String("account", d.req.account))
		}
		requested := make([]string, len(d.req.scopes))
		for i, sc := range d.req.scopes {
			requested[i] = sc.String()
		}
		attrs = append(attrs, slog.Any("requested", requested))
	}
	if d.id != nil {
		attrs = append(attrs, slog.String("subject", d.id.Subject), slog.String("connector", d.id.Connector))
	}
	if d.req != nil && d.req.sessionID != "" {
		attrs = append(attrs, slog.String("session_id", d.req.sessionID))
	}
	if status == http.StatusOK {
		granted := make([]string, len(d.grant.access))
		for i, a := range d.grant.access {
			granted[i] = a.Type + ":" + a.Name + ":" + strings.Join(a.Actions, ",")
		}
		attrs = append(attrs, slog.Any("granted", granted), slog.String("token_id", d.tokenID), slog.Bool("token_reused", d.reused), slog.Bool("refresh_token_issued", d.refreshIssued))
	}
	if d.grant.revision != "" {
		attrs = append(attrs, slog.String("policy_revision", d.grant.revision), slog.Bool("decision_cached", d.grant.cached))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	attrs = append(attrs, slog.String("outcome", outcome), slog.Float64("latency_ms", float64(elapsed.Microseconds())/1000))
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	l.LogAttrs(r.Context(), level, "token", attrs...)
}
