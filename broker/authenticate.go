package broker

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/identity"
)

// authenticate resolves the caller, by the kind of credential it sent.
func (s *Server) authenticate(ctx context.Context, req *tokenRequest) (identity.Identity, error) {
	switch {
	case req.refresh != "":
		return s.refreshLogin(ctx, req)
	case req.bearer != "":
		return s.bearerLogin(ctx, req.bearer)
	case req.basic:
		return s.basicLogin(ctx, req)
	case s.opts.Anonymous:
		return identity.Anonymous(), nil
	}
	return identity.Identity{}, newError(kindUnauthorized, nil, "authentication required")
}

// answerKind is what a connector's answer means for the request.
type answerKind int

const (
	accepted         answerKind = iota
	wrongCredentials            // a wrong secret, or a name nobody knows
	rejected                    // recognised but refused (*identity.RejectedError)
	unavailable                 // the backend could not answer
	cancelled                   // the caller went away before it answered
)

// answer is a connector's reply to one credential, classified.
type answer struct {
	kind answerKind
	err  error
}

// classify is the one place a connector's answer (ok, err) is read. An
// error while the caller's context has ended is the caller leaving, never a
// backend outage: it must not page anyone as one.
func classify(ctx context.Context, ok bool, err error) answer {
	switch {
	case ok:
		return answer{kind: accepted}
	case err == nil || errors.Is(err, identity.ErrUnknownUser):
		return answer{kind: wrongCredentials}
	case ctx.Err() != nil:
		return answer{kind: cancelled, err: err}
	case errors.As(err, new(*identity.RejectedError)):
		return answer{kind: rejected, err: err}
	}
	return answer{kind: unavailable, err: err}
}

// failure is the error a refusing answer is answered with; what names the
// side that answered ("identity backend", "token verifier").
func (a answer) failure(what string) error {
	var r *identity.RejectedError
	switch a.kind {
	case rejected:
		errors.As(a.err, &r)
		return newError(kindUnauthorized, nil, "%s", r.Reason)
	case wrongCredentials:
		return newError(kindUnauthorized, nil, "invalid credentials")
	case cancelled:
		return newError(kindCancelled, a.err, "client went away while the %s answered", what)
	}
	return newError(kindUnavailable, a.err, "%s unavailable; try again", what)
}

// refreshLogin re-checks the identity a refresh token carries with the
// connector that produced it, so a removed user loses access at once.
func (s *Server) refreshLogin(ctx context.Context, req *tokenRequest) (identity.Identity, error) {
	claims, err := req.svc.verifyRefresh(req.refresh, s.now())
	if err != nil {
		return identity.Identity{}, newError(kindUnauthorized, err, "invalid refresh token (expired, tampered, or for another service)")
	}
	if err := s.checkRevoked(ctx, claims); err != nil {
		return identity.Identity{}, err
	}
	if claims.SessionID != "" {
		req.sessionID = claims.SessionID
		return s.sessionLogin(ctx, req.svc, claims)
	}
	prev := identity.Identity{Subject: claims.Subject, Connector: claims.Connector, Claims: claims.Claims, Credential: claims.Credential}
	if claims.ExpiresAt != nil {
		prev.Expiry = claims.ExpiresAt.Time
	}
	id, ok, err := s.opts.Authenticator.Refresh(ctx, prev)
	switch a := classify(ctx, ok, err); a.kind {
	case accepted:
		return identity.Normalize(id), nil
	case wrongCredentials:
		return identity.Identity{}, newError(kindUnauthorized, nil, "refresh token no longer valid: the user is unknown or disabled; log in again")
	default:
		return identity.Identity{}, a.failure("identity backend")
	}
}

// bearerLogin verifies a bearer token with the token connectors, and words
// the refusal for the tokens clients send by mistake.
func (s *Server) bearerLogin(ctx context.Context, raw string) (identity.Identity, error) {
	a := answer{kind: wrongCredentials} // when no connector verifies tokens
	if s.opts.Authenticator.HasTokenConnectors() {
		id, ok, err := s.opts.Authenticator.VerifyToken(ctx, raw)
		if a = classify(ctx, ok, err); a.kind == accepted {
			return identity.Normalize(id), nil
		}
	}
	switch {
	case a.kind == unavailable || a.kind == cancelled:
		return identity.Identity{}, a.failure("token verifier")
	case s.isOwnToken(raw):
		return identity.Identity{}, newError(kindUnauthorized, nil,
			"this is a registry access token issued by this broker, not a credential: send a user name and password (Basic) instead")
	case a.kind == rejected:
		return identity.Identity{}, a.failure("token verifier")
	case !looksLikeJWT(raw):
		return identity.Identity{}, newError(kindUnauthorized, nil, "bearer token not accepted: it is not a JWT")
	}
	return identity.Identity{}, newError(kindUnauthorized, nil, "bearer token not accepted: no identity connector trusts its issuer")
}

// basicLogin checks a user name and password, where the password may be a
// token (`docker login -u anything -p $TOKEN`). Only guessable secrets
// (passwords) are throttled per user name: a robot's secret or a signed
// token cannot be guessed, so their failures count per address alone and
// nobody can lock them out by naming them. The attempt is counted before
// the credential is checked (see Attempt) and taken back unless it failed.
func (s *Server) basicLogin(ctx context.Context, req *tokenRequest) (identity.Identity, error) {
	auth := s.opts.Authenticator
	attempt, wait, err := s.opts.Throttle.Admit(ctx, req.addr)
	if err := s.throttled(wait, err); err != nil {
		return identity.Identity{}, err
	}
	token := answer{kind: wrongCredentials} // what the token connectors said of the password
	if looksLikeJWT(req.password) && auth.HasTokenConnectors() {
		id, ok, err := auth.VerifyToken(ctx, req.password)
		if token = classify(ctx, ok, err); token.kind == accepted {
			s.settle(ctx, attempt.Undo)
			return identity.Normalize(id), nil
		}
	}
	user := req.user // the name failures are counted under; "" for none
	if auth.Unguessable(user) {
		user = ""
	}
	wait, err = attempt.AdmitUser(ctx, user)
	if err := s.throttled(wait, err); err != nil {
		return identity.Identity{}, err
	}
	id, ok, err := auth.Login(ctx, req.user, req.password)
	switch login := classify(ctx, ok, err); {
	case login.kind == accepted:
		s.settle(ctx, attempt.Succeeded)
		return identity.Normalize(id), nil
	case login.kind != wrongCredentials:
		// A rejection (the secret was right), an outage or a caller gone
		// before the check: no guess to count.
		s.settle(ctx, attempt.Undo)
		return identity.Identity{}, login.failure("identity backend")
	case token.kind == unavailable || token.kind == cancelled:
		// The password is a token whose verifier could not answer: an
		// outage, not a wrong password, and no failure to count.
		s.settle(ctx, attempt.Undo)
		return identity.Identity{}, token.failure("token verifier")
	}
	return identity.Identity{}, loginFailed(req, token, auth.HasTokenConnectors())
}

// throttled answers 429 when the throttle says to wait. A throttle store
// that cannot answer lets the attempt through (logged).
func (s *Server) throttled(wait time.Duration, err error) error {
	if err != nil {
		s.log.Warn("throttle store unavailable; not throttling", "err", err)
		return nil
	}
	if wait > 0 {
		e := newError(kindThrottled, nil, "too many failed logins for this user or from this address; retry later")
		e.retryAfter = wait
		return e
	}
	return nil
}

// settle takes an attempt's count back (Undo or Succeeded), logging a
// store that cannot.
func (s *Server) settle(ctx context.Context, f func(context.Context) error) {
	if err := f(ctx); err != nil {
		s.log.Warn("throttle store unavailable; attempt not taken back", "err", err)
	}
}

// loginFailed words the 401 of a wrong credential (already counted).
func loginFailed(req *tokenRequest, token answer, tokenConnectors bool) error {
	if token.kind == rejected {
		return token.failure("token verifier")
	}
	if looksLikeJWT(req.password) && tokenConnectors {
		return newError(kindUnauthorized, nil, "invalid user name or password (the password is a JWT, but no identity connector trusts its issuer)")
	}
	return newError(kindUnauthorized, nil, "invalid user name or password")
}

// checkRevoked refuses a revoked refresh token. A store that cannot answer
// at all fails the refresh (503): the Redis store answers from its synced
// copy during an outage, so an error here is unexpected, and a revocation
// must never be skipped.
func (s *Server) checkRevoked(ctx context.Context, claims *refreshClaims) error {
	if s.opts.Revocations == nil {
		return nil
	}
	var issued time.Time
	if claims.IssuedAt != nil {
		issued = claims.IssuedAt.Time
	}
	revoked, err := s.opts.Revocations.Revoked(ctx, claims.ID, claims.Subject, issued)
	switch {
	case err != nil:
		return classify(ctx, false, err).failure("revocation list")
	case revoked:
		return newError(kindUnauthorized, nil, "refresh token revoked: log in again")
	}
	return nil
}

// isOwnToken tells whether raw looks like a token this broker issued, only to
// word the error for clients that replay a cached registry token.
func (s *Server) isOwnToken(raw string) bool {
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &c); err != nil {
		return false
	}
	for _, svc := range s.opts.Services {
		if c.Issuer == svc.Issuer {
			return true
		}
	}
	return false
}

func looksLikeJWT(s string) bool {
	return strings.Count(s, ".") == 2 && strings.HasPrefix(s, "eyJ")
}
