package broker

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/identity"
)

// revalidateTimeout bounds one re-validation with the provider, whoever
// waits for it: it runs detached from the request that started it, since
// other requests (and replicas) wait for its result.
const revalidateTimeout = 30 * time.Second

// touchEvery is how stale a session's last use may be recorded: a refresh
// writes the store at most this often per session.
const touchEvery = time.Minute

// sessionLogin is a refresh grant on a session-bound token: the session
// must live (not ended, not past its maximum lifetime or idle time), and is
// re-validated with its provider when the last check is too old.
func (s *Server) sessionLogin(ctx context.Context, svc *Service, claims *refreshClaims) (identity.Identity, error) {
	so := s.opts.Sessions
	if so == nil {
		return identity.Identity{}, newError(kindUnauthorized, nil, "refresh token of a login session, but device login is not configured: log in again")
	}
	sess, err := so.Store.Get(ctx, claims.SessionID)
	switch {
	case err != nil:
		return identity.Identity{}, newError(kindUnavailable, err, "session store unavailable; try again")
	case sess == nil || sess.Service != svc.Name || sess.Subject != claims.Subject:
		return identity.Identity{}, newError(kindUnauthorized, nil, "login session ended: log in again")
	}
	now := s.now()
	if now.After(sess.Created.Add(so.MaxLifetime)) || now.After(sess.LastUsed.Add(so.Idle)) {
		s.endSession(ctx, sess.ID, "expired")
		return identity.Identity{}, newError(kindUnauthorized, nil, "login session expired: log in again")
	}
	dev := so.Devices[sess.Connector]
	if dev == nil {
		return identity.Identity{}, newError(kindUnauthorized, nil, "connector %q no longer offers device login: log in again", sess.Connector)
	}
	if now.Sub(sess.LastValidated) >= dev.DeviceSettings().RevalidateAfter {
		if sess, err = s.revalidate(ctx, sess.ID, dev); err != nil {
			return identity.Identity{}, err
		}
	}
	if now.Sub(sess.LastUsed) >= touchEvery {
		if err := so.Store.Touch(ctx, sess.ID, now); err != nil {
			s.log.Warn("session store: last use not recorded", "session_id", sess.ID, "err", err)
		}
	}
	return identity.Normalize(sess.Identity()), nil
}

// revalidate checks a session with its provider, once at a time per
// session: concurrent requests here share one check (singleflight), other
// replicas wait on the store's lock and then find the session fresh. Never
// are two checks made with the same provider refresh token, which a
// provider that rotates them would take for theft and end the grant.
func (s *Server) revalidate(ctx context.Context, id string, dev identity.DeviceConnector) (*Session, error) {
	v, err, _ := s.revalidating.Do(id, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), revalidateTimeout)
		defer cancel()
		return s.revalidateLocked(ctx, id, dev)
	})
	if err != nil {
		return nil, err
	}
	return v.(*Session), nil
}

func (s *Server) revalidateLocked(ctx context.Context, id string, dev identity.DeviceConnector) (*Session, error) {
	so := s.opts.Sessions
	unlock, err := so.Store.Lock(ctx, id)
	if err != nil {
		return nil, newError(kindUnavailable, err, "session store unavailable; try again")
	}
	defer unlock()
	sess, err := so.Store.Get(ctx, id)
	if err != nil {
		return nil, newError(kindUnavailable, err, "session store unavailable; try again")
	}
	if sess == nil {
		return nil, newError(kindUnauthorized, nil, "login session ended: log in again")
	}
	set, now := dev.DeviceSettings(), s.now()
	if now.Sub(sess.LastValidated) < set.RevalidateAfter {
		return sess, nil // validated by whoever held the lock before
	}
	rt, err := so.Sealer.Open(sess.Refresh, sessionPurpose+id)
	if err != nil {
		s.endSession(ctx, id, "unreadable with the current key")
		return nil, newError(kindUnauthorized, err, "login session unreadable: log in again")
	}
	login, err := dev.RefreshDevice(ctx, string(rt))
	var oe *identity.OAuthError
	var rej *identity.RejectedError
	switch {
	case errors.As(err, &oe) || errors.As(err, &rej):
		s.endSession(ctx, id, "refused by the identity provider: "+err.Error())
		return nil, newError(kindUnauthorized, nil, "the identity provider ended the login: log in again")
	case err != nil && set.Grace > 0 && now.Before(sess.LastValidated.Add(set.RevalidateAfter+set.Grace)):
		s.log.Warn("identity provider unreachable: serving the last validated identity (grace)",
			"session_id", id, "subject", sess.Subject, "last_validated", sess.LastValidated, "err", err)
		return sess, nil
	case err != nil:
		return nil, newError(kindUnavailable, err, "identity provider unavailable; try again")
	case login.Identity.Subject != sess.Subject:
		s.endSession(ctx, id, "the provider names another subject")
		return nil, newError(kindUnauthorized, nil, "the identity provider ended the login: log in again")
	}
	sess.setIdentity(identity.Normalize(login.Identity))
	sess.Refresh = so.Sealer.Seal([]byte(login.RefreshToken), sessionPurpose+id)
	sess.LastValidated = now
	ok, err := so.Store.Update(ctx, sess)
	switch {
	case err != nil:
		// The provider rotated the token and the new one is lost: the
		// session cannot be validated again.
		s.log.Error("session store: re-validated session not saved; it will end at its next check", "session_id", id, "err", err)
		return nil, newError(kindUnavailable, err, "session store unavailable; try again")
	case !ok:
		return nil, newError(kindUnauthorized, nil, "login session ended: log in again")
	}
	s.log.Info("session re-validated", "session_id", id, "subject", sess.Subject, "groups", sess.Groups)
	return sess, nil
}

// endSession deletes a session, logging why.
func (s *Server) endSession(ctx context.Context, id, why string) {
	if err := s.opts.Sessions.Store.Delete(ctx, id); err != nil {
		s.log.Error("session store: session not ended", "session_id", id, "why", why, "err", err)
		return
	}
	s.log.Info("session ended", "session_id", id, "why", why)
}

// handleLogout is POST /logout: the session of a refresh token ends. A
// token of an ended (or expired) session is answered 200 too.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	s.serveJSON(w, r, "logout", func() (any, []any, error) {
		form, err := parseForm(w, r)
		if err != nil {
			return nil, nil, err
		}
		raw := single(form, "refresh_token")
		if !looksLikeJWT(raw) || len(raw) > maxRefreshBytes {
			return nil, nil, newError(kindBadRequest, nil, "refresh_token missing or malformed")
		}
		now := s.now()
		for _, svc := range s.opts.Services {
			claims, err := svc.verifyRefresh(raw, now)
			if errors.Is(err, jwt.ErrTokenExpired) {
				return struct{}{}, nil, nil // its session is past its lifetime
			}
			if err != nil {
				continue
			}
			if claims.SessionID == "" {
				return nil, nil, newError(kindBadRequest, nil, "not the refresh token of a login session")
			}
			s.endSession(r.Context(), claims.SessionID, "logout")
			return struct{}{}, []any{"session_id", claims.SessionID, "subject", claims.Subject}, nil
		}
		return nil, nil, newError(kindUnauthorized, nil, "refresh token not issued by this broker")
	})
}
