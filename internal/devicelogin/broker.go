// Package devicelogin is `tollgate login` and `tollgate logout`: it finds a
// registry's tollgate broker from its token challenge, runs the OAuth 2.0
// device authorization grant (RFC 8628) through it, and keeps the session's
// refresh token in the credential helper's store.
package devicelogin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Broker is a registry's token realm and what is derived from it.
type Broker struct {
	Realm   *url.URL // <base>/token
	Service string
	// Base is the realm without its last segment: the device-login and
	// logout endpoints are its siblings.
	Base *url.URL
}

// endpoint is base + name ("login/device", "logout").
func (b Broker) endpoint(name string) string {
	u := *b.Base
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + name
	u.RawPath = ""
	return u.String()
}

// BrokerFromRealm derives the broker's base from a realm <base>/token. An
// http realm is refused unless insecure is set or it is on the loopback:
// the refresh token would cross the network in clear.
func BrokerFromRealm(realm, service string, insecure bool) (Broker, error) {
	u, err := url.Parse(realm)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return Broker{}, fmt.Errorf("the realm %q is not an http(s) URL", Redact(realm))
	}
	if u.Scheme == "http" && !insecure && !isLoopback(u.Hostname()) {
		return Broker{}, fmt.Errorf("the realm %s is plain http: refusing to send a credential to it (--insecure to allow)", Redact(realm))
	}
	base, ok := strings.CutSuffix(u.Path, "/token")
	if !ok {
		return Broker{}, fmt.Errorf("the realm %s does not end in /token: is it a tollgate broker?", Redact(realm))
	}
	b := *u
	b.Path, b.RawPath, b.RawQuery, b.Fragment, b.User = base+"/", "", "", "", nil
	return Broker{Realm: u, Service: service, Base: &b}, nil
}

// Discover asks REGISTRY's /v2/ for its token challenge. registry is a host
// (https, or http on the loopback or with insecure after https failed, as
// docker does) or a URL with its scheme.
func Discover(ctx context.Context, hc *http.Client, registry string, insecure bool) (Broker, error) {
	var urls []string
	switch {
	case strings.Contains(registry, "://"):
		urls = []string{strings.TrimSuffix(registry, "/") + "/v2/"}
	case insecure || isLoopback(hostOnly(registry)):
		urls = []string{"https://" + registry + "/v2/", "http://" + registry + "/v2/"}
	default:
		urls = []string{"https://" + registry + "/v2/"}
	}
	var errs []error
	for _, u := range urls {
		b, err := discoverAt(ctx, hc, u, insecure)
		var transport *transportError
		if err == nil || !errors.As(err, &transport) {
			return b, err
		}
		errs = append(errs, err)
	}
	return Broker{}, errors.Join(errs...)
}

type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

func discoverAt(ctx context.Context, hc *http.Client, u string, insecure bool) (Broker, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Broker{}, fmt.Errorf("ask %s for its token realm: %w", Redact(u), err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Broker{}, &transportError{fmt.Errorf("ask %s for its token realm: %w", Redact(u), redactURLError(err))}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusUnauthorized {
		return Broker{}, fmt.Errorf("%s answered %s, not 401 with a token challenge: the registry does not ask for a login", Redact(u), resp.Status)
	}
	var schemes []string
	for _, h := range resp.Header.Values("WWW-Authenticate") {
		cs, err := ParseChallenges(h)
		if err != nil {
			return Broker{}, fmt.Errorf("%s: %w", Redact(u), err)
		}
		for _, c := range cs {
			if strings.EqualFold(c.Scheme, "Bearer") {
				if c.Params["realm"] == "" {
					return Broker{}, fmt.Errorf("%s: the Bearer challenge has no realm", Redact(u))
				}
				return BrokerFromRealm(c.Params["realm"], c.Params["service"], insecure)
			}
			schemes = append(schemes, c.Scheme)
		}
	}
	if len(schemes) == 0 {
		return Broker{}, fmt.Errorf("%s answered 401 without a WWW-Authenticate challenge", Redact(u))
	}
	return Broker{}, fmt.Errorf("%s asks for %s authentication, not a token (Bearer): tollgate login needs a registry whose auth is a tollgate token realm", Redact(u), strings.Join(schemes, ", "))
}

// NewHTTPClient is the client for the broker: it never follows a redirect
// to another origin, since the requests carry a refresh token or a device
// handle in their body and a 307 or 308 would resend it there.
func NewHTTPClient() *http.Client {
	return &http.Client{
		Timeout: 60 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("stopped after 5 redirects")
			}
			if origin(req.URL) != origin(via[0].URL) {
				return fmt.Errorf("refusing to follow a redirect from %s to another origin (%s) with a credential", Redact(via[0].URL.String()), Redact(req.URL.String()))
			}
			return nil
		},
	}
}

func origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return u.Scheme + "://" + strings.ToLower(u.Hostname()) + ":" + port
}

// Redact keeps a URL's scheme, host and path: user information and the
// query may hold credentials.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "REDACTED"
	}
	u.Fragment = ""
	return u.String()
}

// redactURLError replaces the URL of a *url.Error, which net/http prints
// whole, by its redacted form.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return &url.Error{Op: ue.Op, URL: Redact(ue.URL), Err: ue.Err}
	}
	return err
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// brokerError is the broker's JSON error (the contract's shape, as /token).
type brokerError struct {
	Status      int
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

func (e *brokerError) Error() string {
	switch {
	case e.Code == "" && e.Description == "":
		return fmt.Sprintf("HTTP %d", e.Status)
	case e.Description == "":
		return e.Code
	}
	return e.Code + ": " + e.Description
}

// post sends form to url and decodes a 200's JSON into out; any other
// answer is a *brokerError.
func post(ctx context.Context, hc *http.Client, endpoint string, form url.Values, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return redactURLError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		e := &brokerError{Status: resp.StatusCode}
		_ = json.Unmarshal(body, e)
		return e
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("the broker's answer is not the expected JSON: %w", err)
	}
	return nil
}
