package oidc

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/internal/probe"
)

// maxDocumentBytes bounds a discovery document or JWKS.
const maxDocumentBytes = 1 << 20

// issuer is one trusted issuer: its settings, its cached keys and the state
// of fetching them.
type issuer struct {
	cfg       IssuerConfig
	algs      map[string]bool
	required  []string // the names of cfg.RequiredClaims, sorted
	validator *jwt.Validator
	client    *http.Client
	now       func() time.Time
	log       *slog.Logger

	// keys is read without a lock on every token; nil until a first fetch.
	keys atomic.Pointer[keySet]
	// sem lets one fetch run at a time (the others wait for its result,
	// or their context) and guards the fields below.
	sem       chan struct{}
	jwksURL   string    // configured, or learned from discovery
	lastFetch time.Time // the last attempt, successful or not
	lastErr   error     // its error, answered until the next attempt
}

// keySet is one fetched JWKS.
type keySet struct {
	byKID   map[string][]publicKey
	all     []publicKey
	fetched time.Time
}

// publicKey is one usable JWK: the key and the algorithm it names, if any.
type publicKey struct {
	key any // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
	alg string
}

// newIssuer builds an issuer of a validated c, its zero values defaulted.
func newIssuer(c IssuerConfig, now func() time.Time, log *slog.Logger) *issuer {
	if len(c.Algorithms) == 0 {
		c.Algorithms = DefaultAlgorithms
	}
	algs := map[string]bool{}
	for _, a := range c.Algorithms {
		algs[a] = true
	}
	c.SubjectClaim = cmp.Or(c.SubjectClaim, "sub")
	c.NameClaim = cmp.Or(c.NameClaim, "name")
	c.GroupsClaim = cmp.Or(c.GroupsClaim, "groups")
	required := slices.Sorted(maps.Keys(c.RequiredClaims))
	c.Leeway = cmp.Or(c.Leeway, DefaultLeeway)
	c.Timeout = cmp.Or(c.Timeout, DefaultTimeout)
	c.RefetchInterval = cmp.Or(c.RefetchInterval, DefaultRefetchInterval)
	c.KeysMaxAge = cmp.Or(c.KeysMaxAge, DefaultKeysMaxAge)
	client := &http.Client{Timeout: c.Timeout}
	if c.HTTPClient != nil {
		copied := *c.HTTPClient
		client = &copied
	}
	client.CheckRedirect = checkRedirect
	return &issuer{
		cfg: c, algs: algs, required: required, client: client, now: now, log: log,
		validator: jwt.NewValidator(
			jwt.WithIssuer(c.Issuer),
			jwt.WithAudience(c.Audiences...),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(c.Leeway),
			jwt.WithTimeFunc(now),
		),
		sem:     make(chan struct{}, 1),
		jwksURL: c.JWKSURL,
	}
}

// checkFetchURL allows https, and plain http only to a loopback host (tests,
// a sidecar): keys fetched in clear text could be replaced on the way.
func checkFetchURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); h == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
	}
	return fmt.Errorf("%q: keys are fetched over https only (plain http to loopback hosts only)", raw)
}

// checkRedirect holds every hop of a discovery or JWKS fetch to the rule
// for the URLs themselves (checkFetchURL) and refuses a hop from https down
// to plain http: keys fetched over such a hop could be anyone's.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return fmt.Errorf("refused a redirect from https to %s", req.URL.Scheme)
	}
	if err := checkFetchURL(req.URL.String()); err != nil {
		return fmt.Errorf("refused a redirect: %w", err)
	}
	return nil
}

// errRateLimited means the keys were fetched too recently to fetch them again.
var errRateLimited = errors.New("keys fetched too recently")

// lookup returns the keys that may verify a token with this key id and
// algorithm, fetching the JWKS when the id is unknown (rate limited).
func (is *issuer) lookup(ctx context.Context, kid, alg string) ([]any, error) {
	ks := is.keys.Load()
	if ks != nil && is.now().Sub(ks.fetched) > is.cfg.KeysMaxAge {
		// Old keys: fetch again to drop retired ones, but keep serving
		// from the old set if the provider cannot answer right now.
		if fresh, err := is.refresh(ctx, ks); err == nil {
			ks = fresh
		}
	}
	if ks != nil {
		keys, known := ks.find(kid, alg)
		if len(keys) > 0 {
			return keys, nil
		}
		if known {
			return nil, rejected("key %q of issuer %s does not fit algorithm %s", kid, is.cfg.Issuer, alg)
		}
	}
	fresh, err := is.refresh(ctx, ks)
	if errors.Is(err, errRateLimited) {
		return nil, rejected("signing key %q is not one of issuer %s's keys", kid, is.cfg.Issuer)
	}
	if err != nil {
		return nil, err
	}
	if keys, _ := fresh.find(kid, alg); len(keys) > 0 {
		return keys, nil
	}
	return nil, rejected("signing key %q is not one of issuer %s's keys", kid, is.cfg.Issuer)
}

// find returns the keys with this id (every key when the token names none)
// that fit alg, and whether the id is known at all.
func (ks *keySet) find(kid, alg string) ([]any, bool) {
	cands, known := ks.all, true
	if kid != "" {
		cands, known = ks.byKID[kid]
	}
	var out []any
	for _, c := range cands {
		if (c.alg == "" || c.alg == alg) && algorithmFits(alg, c.key) {
			out = append(out, c.key)
		}
	}
	return out, known && kid != ""
}

// refresh fetches the keys again unless they changed since seen (another
// request fetched them meanwhile) or were fetched less than RefetchInterval
// ago (then errRateLimited, or the last fetch's error while it failed).
func (is *issuer) refresh(ctx context.Context, seen *keySet) (*keySet, error) {
	select {
	case is.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting for the keys of %s: %v", identity.ErrUnavailable, is.cfg.Issuer, ctx.Err())
	}
	defer func() { <-is.sem }()
	if cur := is.keys.Load(); cur != seen {
		return cur, nil
	}
	now := is.now()
	if !is.lastFetch.IsZero() && now.Sub(is.lastFetch) < is.cfg.RefetchInterval {
		if is.lastErr != nil {
			return nil, is.lastErr
		}
		return nil, errRateLimited
	}
	is.lastFetch = now
	// The fetch outlives a caller that gives up: others wait for it.
	ks, err := is.fetchRecorded(context.WithoutCancel(ctx))
	if err != nil {
		is.lastErr = fmt.Errorf("%w: OIDC issuer %s: %v", identity.ErrUnavailable, is.cfg.Issuer, err)
		is.log.Warn("fetching OIDC keys failed", "err", err)
		return nil, is.lastErr
	}
	is.log.Info("fetched OIDC keys", "keys", len(ks.all))
	return ks, nil
}

// check is the issuer's health check (see probe.Watch): discovery and
// JWKS fetched as for a token. Keys that come back are used, as any
// fetch's; a failure is only recorded, and the rate limit of fetches for
// tokens is left alone (the check's schedule bounds its own).
func (is *issuer) check(ctx context.Context) {
	select {
	case is.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-is.sem }()
	failing := is.lastErr != nil
	ks, err := is.fetchRecorded(ctx)
	switch {
	case err != nil:
		is.log.Debug("OIDC issuer check failed", "err", err)
	case failing:
		is.log.Info("OIDC issuer answers again", "keys", len(ks.all))
	}
}

// fetchRecorded fetches the keys within the issuer's timeout, records the
// call with the probe, and on success makes them the keys in use. The
// caller holds sem.
func (is *issuer) fetchRecorded(ctx context.Context) (*keySet, error) {
	fctx, cancel := context.WithTimeout(ctx, is.cfg.Timeout)
	defer cancel()
	done := probe.Start(is.cfg.Probe)
	ks, err := is.fetch(fctx)
	done(fctx, err)
	if err != nil {
		return nil, err
	}
	ks.fetched = is.now()
	is.lastErr = nil
	is.keys.Store(ks)
	return ks, nil
}

// fetch reads the discovery document (once, unless jwks_url is configured)
// and the JWKS.
func (is *issuer) fetch(ctx context.Context) (*keySet, error) {
	jwksURL := is.jwksURL
	if jwksURL == "" {
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := is.getJSON(ctx, strings.TrimSuffix(is.cfg.Issuer, "/")+"/.well-known/openid-configuration", &doc); err != nil {
			return nil, fmt.Errorf("discovery: %w", err)
		}
		if doc.Issuer != is.cfg.Issuer {
			return nil, fmt.Errorf("discovery: the document names issuer %q, not %q", doc.Issuer, is.cfg.Issuer)
		}
		if err := checkFetchURL(doc.JWKSURI); err != nil {
			return nil, fmt.Errorf("discovery: jwks_uri: %w", err)
		}
		jwksURL = doc.JWKSURI
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := is.getJSON(ctx, jwksURL, &set); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	ks := &keySet{byKID: map[string][]publicKey{}}
	for _, raw := range set.Keys {
		k, kid, err := parseJWK(raw)
		if err != nil {
			is.log.Debug("skipping a JWK", "err", err)
			continue
		}
		ks.all = append(ks.all, k)
		if kid != "" {
			ks.byKID[kid] = append(ks.byKID[kid], k)
		}
	}
	if len(ks.all) == 0 {
		return nil, fmt.Errorf("jwks %s: no usable signing key", jwksURL)
	}
	is.jwksURL = jwksURL // learned: discovery is not asked again
	return ks, nil
}

func (is *issuer) getJSON(ctx context.Context, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := is.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if len(data) > maxDocumentBytes {
		return fmt.Errorf("GET %s: larger than %d bytes", u, maxDocumentBytes)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}

// jwk holds the members of a JSON Web Key (RFC 7517, 7518, 8037) that a
// signature check needs.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWK reads one public signing key. Keys for encryption, symmetric keys
// and unknown types are errors (the caller skips them).
func parseJWK(raw []byte) (publicKey, string, error) {
	var k jwk
	if err := json.Unmarshal(raw, &k); err != nil {
		return publicKey{}, "", err
	}
	if k.Use != "" && k.Use != "sig" {
		return publicKey{}, "", fmt.Errorf("kid %q: use %q is not sig", k.Kid, k.Use)
	}
	if k.Alg != "" && !validAlgorithm(k.Alg) {
		return publicKey{}, "", fmt.Errorf("kid %q: algorithm %q not supported", k.Kid, k.Alg)
	}
	var key any
	switch k.Kty {
	case "RSA":
		n, err1 := b64(k.N)
		e, err2 := b64(k.E)
		if err := errors.Join(err1, err2); err != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return publicKey{}, "", fmt.Errorf("kid %q: bad RSA key", k.Kid)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.N.BitLen() < 2048 || pub.E < 3 || pub.E%2 == 0 {
			return publicKey{}, "", fmt.Errorf("kid %q: RSA key too weak or malformed", k.Kid)
		}
		key = pub
	case "EC":
		curve := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}[k.Crv]
		if curve == nil {
			return publicKey{}, "", fmt.Errorf("kid %q: curve %q not supported", k.Kid, k.Crv)
		}
		size := (curve.Params().BitSize + 7) / 8
		x, err1 := b64(k.X)
		y, err2 := b64(k.Y)
		if err := errors.Join(err1, err2); err != nil || len(x) > size || len(y) > size {
			return publicKey{}, "", fmt.Errorf("kid %q: bad EC key", k.Kid)
		}
		point := make([]byte, 1+2*size)
		point[0] = 4 // uncompressed
		copy(point[1+size-len(x):1+size], x)
		copy(point[1+2*size-len(y):], y)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, point) // checks the point is on the curve
		if err != nil {
			return publicKey{}, "", fmt.Errorf("kid %q: %w", k.Kid, err)
		}
		key = pub
	case "OKP":
		x, err := b64(k.X)
		if k.Crv != "Ed25519" || err != nil || len(x) != ed25519.PublicKeySize {
			return publicKey{}, "", fmt.Errorf("kid %q: only Ed25519 OKP keys are supported", k.Kid)
		}
		key = ed25519.PublicKey(x)
	default:
		return publicKey{}, "", fmt.Errorf("kid %q: key type %q not supported", k.Kid, k.Kty)
	}
	return publicKey{key: key, alg: k.Alg}, k.Kid, nil
}

// b64 decodes base64url with or without padding.
func b64(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
