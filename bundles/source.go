package bundles

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2" // jitter only; nothing secret
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/keys"

	"github.com/tollgate/tollgate/broker/atomicfile"
)

// Source is where a policy bundle comes from: a directory, an OPA bundle
// file (.tar.gz), or an http(s) URL serving one (any web server or an OPA
// bundle service). With Verify set, the bundle must carry a valid signature
// (.signatures.json, as `opa build --signing-key` writes it).
type Source struct {
	Location string
	Verify   *bundle.VerificationConfig
	// Client fetches URLs; its Timeout bounds each fetch.
	Client *http.Client
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
	return strings.HasPrefix(location, "http://") || strings.HasPrefix(location, "https://")
}

// ErrNotModified is returned by Fetch when the server answered 304.
var ErrNotModified = errors.New("bundle not modified")

// Fetch loads the bundle. For URLs, etag (may be empty) is sent as
// If-None-Match and the new ETag is returned; an unchanged bundle returns
// ErrNotModified.
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
		b, err := s.readTarball(s.Location, f)
		return b, "", err
	}
}

func (s *Source) loadDir() (*Bundle, error) {
	if s.Verify == nil {
		return LoadDir(s.Location)
	}
	// No test filter: a signature covers every file, tests included, and a
	// file missing from the read would fail verification. fromOPA drops tests.
	l := bundle.NewDirectoryLoader(s.Location).WithSizeLimitBytes(maxBundleBytes)
	return readVerified(s.Location, l, s.Verify)
}

func (s *Source) readTarball(name string, r io.Reader) (*Bundle, error) {
	l := bundle.NewTarballLoaderWithBaseURL(io.LimitReader(r, maxTarballBytes), name).WithSizeLimitBytes(maxBundleBytes)
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
	client := s.Client
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Location, nil)
	if err != nil {
		return nil, "", err
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("fetch bundle: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		return nil, etag, ErrNotModified
	default:
		return nil, "", fmt.Errorf("fetch bundle %s: %s", s.Location, resp.Status)
	}
	b, err := s.readTarball(s.Location, resp.Body)
	if err != nil {
		return nil, "", err
	}
	return b, resp.Header.Get("ETag"), nil
}

// Status is the state of a Poller, for /readyz and metrics.
type Status struct {
	Revision    string
	LastSuccess time.Time
	LastError   string
	LastErrorAt time.Time
	Failures    int // consecutive
}

// Poller loads a Source again and again and hands every new revision to
// Apply. A bundle that fails to fetch, verify or Apply (compile) is logged
// and counted; the last good one stays in force. URLs are polled with ETags
// at a jittered delay between MinDelay and MaxDelay, backing off to MaxDelay
// after failures; local sources are checked cheaply for changes every MinDelay.
type Poller struct {
	Source             *Source
	MinDelay, MaxDelay time.Duration
	Apply              func(context.Context, *Bundle) error
	Log                *slog.Logger

	mu     sync.Mutex
	status Status
	etag   string
	stamp  string
}

// Status returns the poller's state.
func (p *Poller) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// Once fetches and applies the bundle once, as at start.
func (p *Poller) Once(ctx context.Context) error {
	if !p.Source.IsURL() {
		stamp, err := p.localStamp()
		if err != nil {
			return p.fail(err)
		}
		if stamp == p.stamp && p.Status().Revision != "" {
			return nil
		}
		p.stamp = stamp // a broken version is not retried until it changes
	}
	b, etag, err := p.Source.Fetch(ctx, p.etag)
	if errors.Is(err, ErrNotModified) {
		return nil
	}
	if err != nil {
		return p.fail(err)
	}
	if err := p.Apply(ctx, b); err != nil {
		return p.fail(err)
	}
	p.mu.Lock()
	p.etag = etag
	p.status = Status{Revision: b.Revision, LastSuccess: time.Now(), LastError: p.status.LastError, LastErrorAt: p.status.LastErrorAt}
	p.mu.Unlock()
	return nil
}

func (p *Poller) fail(err error) error {
	p.mu.Lock()
	p.status.LastError, p.status.LastErrorAt = err.Error(), time.Now()
	p.status.Failures++
	p.mu.Unlock()
	return err
}

func (p *Poller) localStamp() (string, error) {
	if _, err := os.Stat(p.Source.Location); err != nil {
		return "", err
	}
	return atomicfile.Stamp(p.Source.Location), nil
}

// Run polls until ctx ends.
func (p *Poller) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(p.Delay()):
		}
		if err := p.Once(ctx); err != nil && ctx.Err() == nil && p.Log != nil {
			p.Log.Error("policy bundle not loaded; keeping the last good one",
				"source", p.Source.Location, "revision_in_force", p.Status().Revision, "failures", p.Status().Failures, "err", err)
		}
	}
}

// Delay is how long Run waits before the next poll: for a URL a uniformly
// jittered delay between MinDelay and MaxDelay, so replicas do not poll in
// step; after failures an exponential backoff from MinDelay, capped at
// MaxDelay and jittered over its upper half. Local sources are cheap to
// check and wait MinDelay.
func (p *Poller) Delay() time.Duration {
	if !p.Source.IsURL() || p.MaxDelay <= p.MinDelay {
		return p.MinDelay
	}
	if f := p.Status().Failures; f > 0 {
		d := p.MaxDelay
		if f < 30 && p.MinDelay<<f < p.MaxDelay {
			d = p.MinDelay << f
		}
		return max(p.MinDelay, d/2+rand.N(d/2+1))
	}
	return p.MinDelay + rand.N(p.MaxDelay-p.MinDelay+1)
}
