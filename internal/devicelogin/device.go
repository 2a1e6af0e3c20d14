package devicelogin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
)

// Authorization is the broker's answer to POST <base>/login/device.
type Authorization struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

// Session is the broker's answer once the person approved the code.
type Session struct {
	RefreshToken string `json:"refresh_token"`
	SessionID    string `json:"session_id"`
	Subject      string `json:"subject"`
	ExpiresIn    int    `json:"expires_in"`
}

// Bounds on what the broker says, so a broken or hostile answer cannot
// make the command poll forever or hammer the broker.
const (
	defaultInterval = 5 * time.Second
	maxInterval     = 60 * time.Second
	slowDownStep    = 5 * time.Second // RFC 8628 §3.5
	defaultExpiry   = 10 * time.Minute
	maxExpiry       = 30 * time.Minute
	maxFailures     = 5 // consecutive 5xx or network errors while polling
)

// ErrDenied, ErrExpired: the person refused, or nobody approved in time.
var (
	ErrDenied  = errors.New("the login was denied at the identity provider")
	ErrExpired = errors.New("the code expired before it was approved: run tollgate login again")
)

// Client runs the device flow against a broker.
type Client struct {
	HTTP *http.Client
	// Wait sleeps d or until ctx ends; nil is a real timer. Tests replace it
	// to run the poll loop without waiting.
	Wait func(ctx context.Context, d time.Duration) error
}

// Start asks the broker for a device code (connector may be empty).
func (c *Client) Start(ctx context.Context, b Broker, connector string) (Authorization, error) {
	form := url.Values{"service": {b.Service}}
	if connector != "" {
		form.Set("connector", connector)
	}
	var a Authorization
	if err := post(ctx, c.HTTP, b.endpoint("login/device"), form, &a); err != nil {
		var be *brokerError
		if errors.As(err, &be) && be.Status == http.StatusNotFound {
			err = fmt.Errorf("%w: the broker offers no device login (a tollgate without it, or another token service)", err)
		}
		return a, fmt.Errorf("start a device login at %s: %w", Redact(b.endpoint("login/device")), err)
	}
	if a.DeviceCode == "" || a.UserCode == "" || a.VerificationURI == "" {
		return a, fmt.Errorf("start a device login at %s: the answer lacks device_code, user_code or verification_uri", Redact(b.endpoint("login/device")))
	}
	if err := checkPrintable(a); err != nil {
		return a, fmt.Errorf("start a device login at %s: %w", Redact(b.endpoint("login/device")), err)
	}
	return a, nil
}

// checkPrintable refuses what login would print to the terminal and could
// mislead there: control characters (escape sequences can hide a link's
// address or erase a line) and verification URIs that are not web pages.
func checkPrintable(a Authorization) error {
	for name, v := range map[string]string{"user_code": a.UserCode, "verification_uri": a.VerificationURI,
		"verification_uri_complete": a.VerificationURIComplete} {
		if strings.IndexFunc(v, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) }) >= 0 {
			return fmt.Errorf("the answer's %s holds control characters", name)
		}
		if name == "user_code" || v == "" {
			continue
		}
		if u, err := url.Parse(v); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return fmt.Errorf("the answer's %s is not an http(s) URL", name)
		}
	}
	return nil
}

// Poll asks the broker for the session until the person approves, denies,
// or the code expires, honouring the interval and slow_down.
func (c *Client) Poll(ctx context.Context, b Broker, a Authorization) (Session, error) {
	interval := clamp(time.Duration(a.Interval)*time.Second, defaultInterval, maxInterval)
	expiry := clamp(time.Duration(a.ExpiresIn)*time.Second, defaultExpiry, maxExpiry)
	endpoint := b.endpoint("login/device/token")
	form := url.Values{"device_code": {a.DeviceCode}, "service": {b.Service}}
	// The expiry bounds the whole loop, however slowly the broker answers;
	// waited bounds it too when Wait does not really wait (tests).
	pctx, cancel := context.WithTimeout(ctx, expiry)
	defer cancel()
	failures := 0
	for waited := time.Duration(0); ; {
		if waited >= expiry {
			return Session{}, ErrExpired
		}
		if err := c.wait(pctx, interval); err != nil {
			return Session{}, cmp.Or(ctx.Err(), ErrExpired)
		}
		waited += interval
		var s Session
		err := post(pctx, c.HTTP, endpoint, form, &s)
		var be *brokerError
		switch {
		case err == nil && s.RefreshToken == "":
			return s, fmt.Errorf("poll %s: the answer has no refresh_token", Redact(endpoint))
		case err == nil:
			return s, nil
		case ctx.Err() != nil:
			return s, ctx.Err()
		case pctx.Err() != nil:
			return s, ErrExpired
		case errors.As(err, &be) && be.Status == http.StatusBadRequest:
			failures = 0
			switch be.Code {
			case "authorization_pending":
				continue
			case "slow_down":
				interval = min(interval+slowDownStep, maxInterval)
				continue
			case "expired_token":
				return s, ErrExpired
			case "access_denied":
				return s, ErrDenied
			}
			return s, fmt.Errorf("poll %s: %w", Redact(endpoint), err)
		case errors.As(err, &be) && be.Status < 500:
			return s, fmt.Errorf("poll %s: %w", Redact(endpoint), err)
		}
		// A 5xx or a network error: the broker or the IdP may be back
		// at the next poll.
		if failures++; failures >= maxFailures {
			return s, fmt.Errorf("poll %s: %d failures in a row, the last: %w", Redact(endpoint), failures, err)
		}
	}
}

// EndSession ends the session of refreshToken at the broker.
func (c *Client) EndSession(ctx context.Context, b Broker, refreshToken string) error {
	var out struct{}
	if err := post(ctx, c.HTTP, b.endpoint("logout"), url.Values{"refresh_token": {refreshToken}}, &out); err != nil {
		return fmt.Errorf("end the session at %s: %w", Redact(b.endpoint("logout")), err)
	}
	return nil
}

func (c *Client) wait(ctx context.Context, d time.Duration) error {
	if c.Wait != nil {
		return c.Wait(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// clamp is d within (0, most], def when d is not positive.
func clamp(d, def, most time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return min(d, most)
}
