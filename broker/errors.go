package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
)

// errorKind is one row of the error table: the HTTP status, the registry-style
// code and the OAuth2 error name a failure is answered with.
type errorKind struct {
	status int
	code   string
	oauth  string
}

var (
	kindBadRequest       = &errorKind{http.StatusBadRequest, "INVALID_REQUEST", "invalid_request"}
	kindBadScope         = &errorKind{http.StatusBadRequest, "INVALID_SCOPE", "invalid_scope"}
	kindUnsupportedGrant = &errorKind{http.StatusBadRequest, "UNSUPPORTED", "unsupported_grant_type"}
	kindUnauthorized     = &errorKind{http.StatusUnauthorized, "UNAUTHORIZED", "invalid_grant"}
	kindTooLarge         = &errorKind{http.StatusRequestEntityTooLarge, "INVALID_REQUEST", "invalid_request"}
	kindMethod           = &errorKind{http.StatusMethodNotAllowed, "UNSUPPORTED", "invalid_request"}
	kindUnavailable      = &errorKind{http.StatusServiceUnavailable, "UNAVAILABLE", "temporarily_unavailable"}
	kindThrottled        = &errorKind{http.StatusTooManyRequests, "TOOMANYREQUESTS", "temporarily_unavailable"}
	kindInternal         = &errorKind{http.StatusInternalServerError, "INTERNAL", "server_error"}
	// The answers to a device-login poll (RFC 8628 §3.5).
	kindPending      = &errorKind{http.StatusBadRequest, "UNAUTHORIZED", "authorization_pending"}
	kindSlowDown     = &errorKind{http.StatusBadRequest, "TOOMANYREQUESTS", "slow_down"}
	kindExpiredToken = &errorKind{http.StatusBadRequest, "UNAUTHORIZED", "expired_token"}
	kindAccessDenied = &errorKind{http.StatusBadRequest, "DENIED", "access_denied"}
	kindBadGrant     = &errorKind{http.StatusBadRequest, "UNAUTHORIZED", "invalid_grant"}
	// kindCancelled is a request whose client went away before it was
	// answered: logged and counted as such, never written (nobody reads it).
	kindCancelled = &errorKind{statusClientClosed, "CANCELLED", ""}
)

// statusClientClosed is nginx's "client closed request": a status for the
// log and the metrics only.
const statusClientClosed = 499

// apiError is an error that knows how it is answered. message is shown to
// the client and must not hold secrets or internal detail; cause is only logged.
type apiError struct {
	kind    *errorKind
	message string
	cause   error
	// retryAfter, when set, is sent as Retry-After (429).
	retryAfter time.Duration
}

func (e *apiError) Error() string {
	if e.cause != nil {
		return e.message + ": " + e.cause.Error()
	}
	return e.message
}

func (e *apiError) Unwrap() error { return e.cause }

func newError(kind *errorKind, cause error, format string, args ...any) *apiError {
	return &apiError{kind: kind, message: fmt.Sprintf(format, args...), cause: cause}
}

type errorBody struct {
	Errors           []errorDetail `json:"errors"`
	Error            string        `json:"error,omitempty"`
	ErrorDescription string        `json:"error_description,omitempty"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// writeError is the one place an error becomes an HTTP answer. Errors that
// are not apiErrors are internal: the client learns nothing of them.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) int {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = newError(kindInternal, err, "internal error")
	}
	if ae.kind == kindCancelled {
		return ae.kind.status
	}
	body := errorBody{Errors: []errorDetail{{Code: ae.kind.code, Message: ae.message}}}
	if r.Method == http.MethodPost {
		body.Error, body.ErrorDescription = ae.kind.oauth, ae.message
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	switch ae.kind.status {
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Basic realm="tollgate"`)
	case http.StatusMethodNotAllowed:
		h.Set("Allow", "GET, POST")
	case http.StatusServiceUnavailable:
		h.Set("Retry-After", "5")
	case http.StatusTooManyRequests:
		h.Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(ae.retryAfter.Seconds())))))
	}
	w.WriteHeader(ae.kind.status)
	_ = json.NewEncoder(w).Encode(body)
	return ae.kind.status
}
