package bundles

import (
	"bytes"
	"context"
	"errors"
	"fmt" // jitter only; nothing secret
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/keys"

	"github.com/tollgate/tollgate/internal/probe"
)

// Source is where a policy bundle comes from: a directory, an OPA bundle
// file (.tar.gz), or an http(s) URL serving one (any web server or an OPA
// bundle service). With Verify set, the bundle must carry a valid signature
// (.signatures.json, as `opa build --signing-key` writes it).
type Source struct {
	Location string
	Verify   *bundle.VerificationConfig
	// Client fetches URLs; its Timeout bounds each fetch. Its CheckRedirect
	// is replaced by the Source's own (see CheckRedirect).
	Client *http.Client
	// BearerToken, when set, is sent to the origin of Location only.
	BearerToken string
	// Limits bound a tarball (a file or a URL); zero fields take defaults.
	Limits Limits
	// Probe records each download from a URL: its latency, and whether the
	// server answered with the bundle (200, or 304 not modified). A bundle
	// too large, unsigned or invalid is the bundle's failure, not the
	// server's.
	Probe probe.Recorder
}

// VerificationConfig builds the verification of signed bundles from a public
// key (PEM file or content), its algorithm (RS256, ES256, ...), the key id the
// signatures name, and an optional scope.
func VerificationConfig(publicKey, algorithm, keyID, scope string) (*bundle.VerificationConfig, error) {
	if keyID == "" {
		keyID = "default"
	}
	kc, err := keys.NewKeyConfig(publicKey, algorithm, scope)
	if err != nil {
		return nil, fmt.Errorf("bundle verification key: %w", err)
	}
	return bundle.NewVerificationConfig(map[string]*bundle.KeyConfig{keyID: kc}, keyID, scope, nil), nil
}

// IsURL reports whether the location is fetched over HTTP.
func (s *Source) IsURL() bool { return IsURL(s.Location) }

// IsURL reports whether a policy location is an http(s) URL.
func IsURL(location string) bool {
	scheme, _, ok := strings.Cut(location, "://")
	return ok && (strings.EqualFold(scheme, "http") || strings.EqualFold(scheme, "https"))
}

// RedactURL returns a location fit to show in logs, errors and /readyz: a
// URL's user information and query string, where passwords, tokens and
// pre-signed signatures travel, become "xxxxx" and its fragment is dropped
// (url.URL.Redacted hides only the password). A location without a scheme
// (a path) is returned as it is.
func RedactURL(location string) string {
	u, err := url.Parse(location)
	switch {
	case err != nil && strings.Contains(location, "://"):
		return "(a URL that does not parse)"
	case err != nil || u.Scheme == "":
		return location
	}
	if u.User != nil {
		u.User = url.User("xxxxx")
	}
	if u.RawQuery != "" {
		u.RawQuery = "xxxxx"
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// urlInText finds the URLs that error messages quote.
var urlInText = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>]+`)

// RedactURLs is text with every URL in it redacted by RedactURL: the
// messages of OPA's plugins and of net/http quote whole URLs.
func RedactURLs(text string) string {
	return urlInText.ReplaceAllStringFunc(text, RedactURL)
}

// ErrNotModified is returned by Fetch when the server answered 304.
var ErrNotModified = errors.New("bundle not modified")

// Fetch loads the bundle. For URLs, etag (may be empty) is sent as
// If-None-Match and the new ETag is returned; an unchanged bundle returns
// ErrNotModified. An error with an ETag means the server sent that version
// and it was refused (too large, not a valid or signed bundle): asking with
// that ETag again need not download it again.
func (s *Source) Fetch(ctx context.Context, etag string) (*Bundle, string, error) {
	switch {
	case s.IsURL():
		return s.fetchURL(ctx, etag)
	default:
		st, err := os.Stat(s.Location)
		if err != nil {
			return nil, "", fmt.Errorf("policy source: %w", err)
		}
		if st.IsDir() {
			b, err := s.loadDir()
			return b, "", err
		}
		f, err := os.Open(s.Location)
		if err != nil {
			return nil, "", err
		}
		defer f.Close()
		data, err := readAtMost(f, st.Size(), s.Limits.orDefaults().MaxBytes)
		if err != nil {
			return nil, "", fmt.Errorf("policy source %s: %w", s.Location, err)
		}
		b, err := s.readTarball(s.Location, data)
		return b, "", err
	}
}

func (s *Source) loadDir() (*Bundle, error) {
	if s.Verify == nil {
		return LoadDir(s.Location)
	}
	// No test filter: a signature covers every file, tests included, and a
	// file missing from the read would fail verification. fromOPA drops tests.
	l := bundle.NewDirectoryLoader(currentVersion(s.Location)).WithSizeLimitBytes(maxBundleBytes)
	return readVerified(s.Location, l, s.Verify)
}

// readTarball reads a gzipped bundle tarball (name is what errors show).
// The limits are checked first, on a pass that keeps nothing: OPA's reader
// reads every file into memory, and only then verifies the signature.
func (s *Source) readTarball(name string, data []byte) (*Bundle, error) {
	limits := s.Limits.orDefaults()
	if err := limits.check(data); err != nil {
		return nil, fmt.Errorf("policy source %s: %w", name, err)
	}
	l := bundle.NewTarballLoaderWithBaseURL(bytes.NewReader(data), name).WithSizeLimitBytes(limits.MaxBytes)
	if s.Verify == nil {
		return read(name, l.WithFilter(skipTests))
	}
	return readVerified(name, l, s.Verify)
}

func readVerified(name string, l bundle.DirectoryLoader, vc *bundle.VerificationConfig) (*Bundle, error) {
	b, err := bundle.NewCustomReader(l).WithRegoVersion(ast.RegoV1).WithBundleVerificationConfig(vc).Read()
	if err != nil {
		return nil, fmt.Errorf("policy source %s: %w", name, err)
	}
	return fromOPA(name, b)
}

func (s *Source) fetchURL(ctx context.Context, etag string) (*Bundle, string, error) {
	done := probe.Start(s.Probe)
	data, etag, err := s.download(ctx, etag)
	if err == nil || errors.Is(err, ErrNotModified) || isLimit(err) {
		done(ctx, nil)
	} else {
		done(ctx, err)
	}
	if err != nil {
		return nil, etag, err
	}
	b, err := s.readTarball(RedactURL(s.Location), data)
	return b, etag, err
}

// download gets the bundle's bytes and ETag (see Fetch).
func (s *Source) download(ctx context.Context, etag string) ([]byte, string, error) {
	shown := RedactURL(s.Location)
	client := &http.Client{Timeout: 30 * time.Second}
	if s.Client != nil {
		c := *s.Client
		client = &c
	}
	client.CheckRedirect = CheckRedirect
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Location, nil)
	if err != nil {
		return nil, "", fmt.Errorf("fetch bundle: %w", redactURLError(err))
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	if s.BearerToken != "" {
		req.Header.Set("Authorization", "Bearer "+s.BearerToken)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("fetch bundle: %w", redactURLError(err))
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		return nil, etag, ErrNotModified
	default:
		return nil, "", fmt.Errorf("fetch bundle %s: %s", shown, resp.Status)
	}
	etag = resp.Header.Get("ETag")
	data, err := readAtMost(resp.Body, resp.ContentLength, s.Limits.orDefaults().MaxBytes)
	if err != nil {
		if !isLimit(err) {
			etag = "" // a broken transfer says nothing of the bundle
		}
		return nil, etag, fmt.Errorf("fetch bundle %s: %w", shown, err)
	}
	return data, etag, nil
}

// redactURLError redacts the URL that net/url and net/http errors show
// (net/http hides the password only).
func redactURLError(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		ue.URL = RedactURL(ue.URL)
	}
	return err
}

// CheckRedirect, an http.Client's, keeps a fetch where the configuration
// sent it (a bundle, or a service of OPA's configuration). A redirect
// from https to http is refused: the policy would travel in clear, for
// anyone on the path to change. The Authorization header (the bearer
// token) goes to the origin of the first request only, scheme, host and
// port exactly, and not again once a redirect has left that origin; the
// Referer, which would carry the query string (a pre-signed signature), is
// never sent.
//
// What this relies on in net/http (Go 1.26, client.go Client.do and
// makeHeadersCopier): each hop is a new request that gets the first
// request's headers copied before CheckRedirect is called with it, and
// CheckRedirect may edit them. net/http drops Authorization by itself only
// when the new host name is neither the first one nor a subdomain of it:
// another port, another scheme or a subdomain would still get it.
func CheckRedirect(req *http.Request, via []*http.Request) error {
	return checkRedirect(req, via, nil)
}

// CheckRedirectDropping is CheckRedirect that also drops these headers
// once a redirect has left the origin: a service's own headers (OPA's
// services.<name>.headers), where an API key may travel, which net/http
// copies to every host.
func CheckRedirectDropping(headers ...string) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error { return checkRedirect(req, via, headers) }
}

func checkRedirect(req *http.Request, via []*http.Request, headers []string) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if via[len(via)-1].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return fmt.Errorf("refused a redirect from https to %s", req.URL.Scheme)
	}
	req.Header.Del("Referer")
	first := Origin(via[0].URL)
	away := func(r *http.Request) bool { return Origin(r.URL) != first }
	if away(req) || slices.ContainsFunc(via, away) {
		req.Header.Del("Authorization")
		for _, h := range headers {
			req.Header.Del(h)
		}
	}
	return nil
}

// Origin is a URL's scheme, host and port, the port made explicit.
func Origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return u.Scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}
