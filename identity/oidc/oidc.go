// Package oidc is the identity adapter for OpenID Connect bearer tokens and
// workload identity: JWTs verified against their issuer's discovery document and JWKS.
package oidc

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/internal/probe"
)

// Defaults for an IssuerConfig's zero values.
const (
	DefaultLeeway          = 30 * time.Second
	MaxLeeway              = 5 * time.Minute
	DefaultRefetchInterval = 10 * time.Second
	DefaultKeysMaxAge      = time.Hour
	DefaultTimeout         = 5 * time.Second
)

// DefaultAlgorithms are accepted when an issuer names none: what nearly every
// provider (Kubernetes, CI systems, corporate IdPs) signs with.
var DefaultAlgorithms = []string{"RS256", "ES256"}

// supportedAlgorithms are the asymmetric algorithms an issuer may allow.
// Never "none", never HMAC: a verifier that holds only public keys must not
// accept a MAC keyed with one of them.
var supportedAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// IssuerConfig is one trusted issuer and how its tokens become identities.
type IssuerConfig struct {
	// Issuer is the exact `iss` of its tokens and the base of its discovery
	// document (Issuer + "/.well-known/openid-configuration").
	Issuer string `yaml:"issuer"`
	// Audiences: a token's `aud` must hold at least one of them.
	Audiences StringList `yaml:"audience"`
	// Algorithms accepted from this issuer; DefaultAlgorithms when empty.
	Algorithms []string `yaml:"algorithms"`

	// SubjectClaim becomes Identity.Subject (default "sub"); NameClaim the
	// display name (default "name", the subject when absent); GroupsClaim
	// the groups (default "groups"), each prefixed with GroupsPrefix. A claim
	// is named literally, or by a dotted path into nested objects
	// ("kubernetes.io.namespace"); a literal name wins.
	SubjectClaim string `yaml:"subject_claim"`
	NameClaim    string `yaml:"name_claim"`
	GroupsClaim  string `yaml:"groups_claim"`
	GroupsPrefix string `yaml:"groups_prefix"`
	// RequiredClaims must be present with these values (a string, a number
	// or boolean in its JSON form, or one element of an array claim).
	RequiredClaims map[string]string `yaml:"required_claims"`

	// Leeway is the clock skew allowed on exp and nbf (DefaultLeeway when 0).
	Leeway time.Duration `yaml:"leeway"`
	// RefreshTTL lets a refresh token issued to this issuer's identities
	// outlive the OIDC token, up to this long after issue. 0 (the default)
	// means a refresh token expires no later than the OIDC token itself.
	RefreshTTL time.Duration `yaml:"refresh_ttl"`

	// JWKSURL skips discovery and reads the keys from here.
	JWKSURL string `yaml:"jwks_url"`
	// CAFile, read by Config.Open, is the CA that an issuer behind a private
	// CA (a cluster's API server) is verified with.
	CAFile string `yaml:"ca_file"`
	// HTTPClient fetches discovery and keys (for a private CA); a client
	// with Timeout otherwise.
	HTTPClient *http.Client `yaml:"-"`
	// Probe records each fetch of the keys (discovery and JWKS): its
	// latency, and whether the issuer answered with usable keys.
	// Config.Open sets it from identity.Env.Probe, named by the issuer.
	Probe probe.Recorder `yaml:"-"`
	// Timeout bounds one fetch (DefaultTimeout when 0).
	Timeout time.Duration `yaml:"timeout"`
	// RefetchInterval is the least time between two fetches of the keys, so
	// a flood of unknown key ids cannot become a flood of fetches, nor can a
	// provider outage (DefaultRefetchInterval when 0).
	RefetchInterval time.Duration `yaml:"jwks_refetch_interval"`
	// KeysMaxAge is how long fetched keys are used before they are fetched
	// again, dropping retired keys (DefaultKeysMaxAge when 0).
	KeysMaxAge time.Duration `yaml:"jwks_max_age"`
}

// Config configures a Verifier.
type Config struct {
	Issuers []IssuerConfig `yaml:"issuers"`
	// DeviceLogin, when set, offers single sign-on through the broker
	// with one of the issuers (POST /login/device).
	DeviceLogin *DeviceLoginConfig `yaml:"device_login"`
	// Now is the clock; time.Now when nil.
	Now func() time.Time `yaml:"-"`
}

// A changed signature fails the build here, not silently in the chain.
var (
	_ identity.TokenConnector   = (*Verifier)(nil)
	_ identity.RefreshConnector = (*Verifier)(nil)
)

// Verifier verifies bearer JWTs from its issuers. It implements
// identity.TokenConnector and identity.RefreshConnector.
type Verifier struct {
	issuers map[string]*issuer
	device  *deviceClient // nil without device_login
	now     func() time.Time
	log     *slog.Logger
}

// New checks the configuration and builds a Verifier. It does not contact
// any issuer: a provider that is down at start makes its tokens answer
// ErrUnavailable until it is back; Warm fetches keys ahead of the first token.
func New(cfg Config, log *slog.Logger) (*Verifier, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	v := &Verifier{issuers: map[string]*issuer{}, now: cfg.Now, log: log}
	if v.now == nil {
		v.now = time.Now
	}
	for _, ic := range cfg.Issuers {
		v.issuers[ic.Issuer] = newIssuer(ic, v.now, log.With("issuer", ic.Issuer))
	}
	return v, nil
}

// DeviceLogin is the device-login client of the connector; nil when it
// has no device_login.
func (v *Verifier) DeviceLogin() identity.DeviceConnector {
	if v.device == nil {
		return nil
	}
	return v.device
}

// Warm fetches every issuer's keys once, so the first token does not wait.
// A failure is only logged: the issuer is asked again when a token needs it.
func (v *Verifier) Warm(ctx context.Context) {
	for _, is := range v.issuers {
		if _, err := is.refresh(ctx, nil); err != nil {
			is.log.Warn("OIDC issuer not reachable yet; its tokens are answered 503 until it is", "err", err)
		}
	}
}

// errNotOurs marks a token this verifier has no opinion on (not a JWT, or
// from an issuer it does not trust), so a chain can ask another connector.
var errNotOurs = errors.New("not a token of a configured issuer")

// rejected is a token of a configured issuer that fails verification; the
// reason is shown to the client.
func rejected(format string, args ...any) error {
	return &identity.RejectedError{Reason: "OIDC token rejected: " + fmt.Sprintf(format, args...)}
}

// Verify implements identity.TokenConnector. A token that is not a JWT or
// whose issuer is not configured is ok=false with no error (another connector
// may know it); a token of a configured issuer that fails is an
// *identity.RejectedError saying why; an issuer that cannot be reached is an
// error wrapping identity.ErrUnavailable.
func (v *Verifier) Verify(ctx context.Context, raw string) (identity.Identity, bool, error) {
	if err := ctx.Err(); err != nil {
		return identity.Identity{}, false, err // nobody waits for the answer
	}
	claims := jwt.MapClaims{}
	var is *issuer
	_, err := jwt.NewParser(jwt.WithoutClaimsValidation()).ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		iss, _ := claims["iss"].(string)
		is = v.issuers[iss]
		if is == nil {
			return nil, errNotOurs
		}
		return is.keyFor(ctx, t)
	})
	if err != nil {
		return identity.Identity{}, false, classify(err, is)
	}
	if err := is.validator.Validate(claims); err != nil {
		return identity.Identity{}, false, classify(err, is)
	}
	id, err := is.mapClaims(claims, v.now())
	if err != nil {
		return identity.Identity{}, false, err
	}
	return id, true, nil
}

// classify turns a parse or validation failure into Verify's answer.
func classify(err error, is *issuer) error {
	var rej *identity.RejectedError
	switch {
	case errors.Is(err, errNotOurs):
		return nil
	case errors.Is(err, identity.ErrUnavailable):
		return err
	case errors.As(err, &rej):
		return rej
	case is == nil: // failed before its issuer was known: not a JWT at all
		return nil
	case errors.Is(err, jwt.ErrTokenExpired):
		return rejected("token is expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return rejected("token is not valid yet")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return rejected("audience not accepted for issuer %s", is.cfg.Issuer)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return rejected("a required registered claim is missing (%v)", unwrapLast(err))
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return rejected("signature is invalid")
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		return rejected("invalid claims (%v)", unwrapLast(err))
	}
	return rejected("malformed token")
}

// unwrapLast is the innermost message of a jwt error chain, which names the
// claim; the outer ones only repeat "token has invalid claims".
func unwrapLast(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}

// keyFor picks the verification key for a token: its algorithm must be one
// the issuer allows and match the key's type and curve, and its key id must
// be in the issuer's JWKS (fetched again, at most once per RefetchInterval,
// when it is not).
func (is *issuer) keyFor(ctx context.Context, t *jwt.Token) (any, error) {
	alg, _ := t.Header["alg"].(string)
	if !is.algs[alg] {
		return nil, rejected("algorithm %q is not accepted for issuer %s (accepted: %s)", alg, is.cfg.Issuer, strings.Join(is.cfg.Algorithms, ", "))
	}
	kid, _ := t.Header["kid"].(string)
	keys, err := is.lookup(ctx, kid, alg)
	if err != nil {
		return nil, err
	}
	if len(keys) == 1 {
		return keys[0], nil
	}
	set := jwt.VerificationKeySet{Keys: make([]jwt.VerificationKey, len(keys))}
	for i, k := range keys {
		set.Keys[i] = k
	}
	return set, nil
}

// mapClaims makes the identity from verified claims with the issuer's mapping.
func (is *issuer) mapClaims(claims map[string]any, now time.Time) (identity.Identity, error) {
	c := &is.cfg
	sub, ok := lookupClaim(claims, c.SubjectClaim).(string)
	if !ok || sub == "" {
		return identity.Identity{}, rejected("no subject: claim %q is missing or not a string", c.SubjectClaim)
	}
	for _, name := range is.required {
		if !claimMatches(lookupClaim(claims, name), c.RequiredClaims[name]) {
			return identity.Identity{}, rejected("required claim %q is missing or does not have the expected value", name)
		}
	}
	name, _ := lookupClaim(claims, c.NameClaim).(string)
	if name == "" {
		name = sub
	}
	var groups []string
	switch g := lookupClaim(claims, c.GroupsClaim).(type) {
	case string: // some providers send a single group as a string
		groups = []string{c.GroupsPrefix + g}
	case []any:
		groups = make([]string, 0, len(g))
		for _, e := range g {
			if s, ok := e.(string); ok && s != "" { // other shapes grant nothing
				groups = append(groups, c.GroupsPrefix+s)
			}
		}
	}
	id := identity.Normalize(identity.Identity{Subject: sub, Name: name, Groups: groups, Claims: claims})
	if exp, err := jwt.MapClaims(claims).GetExpirationTime(); err == nil && exp != nil {
		id.Expiry = exp.Time
	}
	if c.RefreshTTL > 0 {
		id.Expiry = later(id.Expiry, now.Add(c.RefreshTTL))
	}
	return id, nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Refresh implements identity.RefreshConnector. An OIDC identity cannot be
// looked up again: the broker keeps the token's claims in the refresh token,
// whose lifetime is capped at the OIDC token's expiry (identity.Expiry), and
// here they are mapped again under the current configuration, so an issuer
// that is no longer trusted, or a required claim that changed, ends access
// at the next refresh.
func (v *Verifier) Refresh(ctx context.Context, prev identity.Identity) (identity.Identity, bool, error) {
	if err := ctx.Err(); err != nil {
		return identity.Identity{}, false, err
	}
	iss, _ := prev.Claims["iss"].(string)
	is := v.issuers[iss]
	if is == nil {
		return identity.Identity{}, false, nil
	}
	id, err := is.mapClaims(prev.Claims, v.now())
	if err != nil || id.Subject != prev.Subject {
		return identity.Identity{}, false, nil
	}
	id.Expiry = prev.Expiry
	return id, true, nil
}

// algorithmFits reports whether a key may verify alg: RSA keys for RS/PS
// (2048 bits or more), the matching curve for each ES, Ed25519 for EdDSA.
func algorithmFits(alg string, key any) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return (strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")) && k.N.BitLen() >= 2048
	case ed25519.PublicKey:
		return alg == "EdDSA"
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return k.Curve == elliptic.P256()
		case "ES384":
			return k.Curve == elliptic.P384()
		case "ES512":
			return k.Curve == elliptic.P521()
		}
	}
	return false
}

func validAlgorithm(alg string) bool { return slices.Contains(supportedAlgorithms, alg) }
