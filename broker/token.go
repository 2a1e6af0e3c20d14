package broker

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/identity"
)

// AccessEntry is one element of the `access` claim of a registry token.
type AccessEntry struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// accessClaims are the claims of a registry token. `aud` is a plain string:
// distribution 2.8 rejects an array.
type accessClaims struct {
	Issuer    string        `json:"iss"`
	Subject   string        `json:"sub"`
	Audience  string        `json:"aud"`
	ExpiresAt int64         `json:"exp"`
	NotBefore int64         `json:"nbf"`
	IssuedAt  int64         `json:"iat"`
	ID        string        `json:"jti"`
	Access    []AccessEntry `json:"access"`
}

// clockSkew is how far in the past `nbf` is put, for registries whose clock
// runs a little behind the broker's.
const clockSkew = 5 * time.Second

// sign encodes claims under the key's precomputed header and signs them with
// jwt/v5's implementation of the key's algorithm.
func (k *Key) sign(claims any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	return k.signPayload(k.header, payload)
}

// signPayload signs a JSON payload under an encoded header.
func (k *Key) signPayload(header string, payload []byte) (string, error) {
	buf := make([]byte, 0, len(header)+1+base64.RawURLEncoding.EncodedLen(len(payload))+1+200)
	buf = append(buf, header...)
	buf = append(buf, '.')
	buf = base64.RawURLEncoding.AppendEncode(buf, payload)
	sig, err := k.method.Sign(string(buf), k.signer)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	buf = append(buf, '.')
	buf = base64.RawURLEncoding.AppendEncode(buf, sig)
	return string(buf), nil
}

// signAccess makes a registry access token and returns it with its `jti`.
func (svc *Service) signAccess(k *Key, subject string, access []AccessEntry, now time.Time, ttl time.Duration) (tok, id string, err error) {
	if access == nil {
		access = []AccessEntry{}
	}
	id = rand.Text()
	tok, err = k.sign(accessClaims{
		Issuer:    svc.Issuer,
		Subject:   subject,
		Audience:  svc.Name,
		ExpiresAt: now.Add(ttl).Unix(),
		NotBefore: now.Add(-clockSkew).Unix(),
		IssuedAt:  now.Unix(),
		ID:        id,
		Access:    access,
	})
	return tok, id, err
}

// writeTokenResponse answers 200 with resp as JSON, byte for byte what
// encoding/json's Encoder writes, with a Content-Length. Reflection and a
// chunked body (two tokens with their x5c header pass net/http's 2 KiB
// buffer) showed up in profiles of the token path. The tokens are what
// Key.sign makes, base64url and dots, which JSON never escapes (scanning
// them showed in profiles too); the time is checked, and anything unusual
// goes through encoding/json.
func writeTokenResponse(w http.ResponseWriter, resp *tokenResponse) {
	var buf [11]string
	parts := buf[:0]
	if jsonPlain(resp.IssuedAt) {
		parts = append(parts, `{"token":"`, resp.Token, `","access_token":"`, resp.AccessToken,
			`","expires_in":`, strconv.Itoa(resp.ExpiresIn), `,"issued_at":"`, resp.IssuedAt)
		if resp.RefreshToken != "" {
			parts = append(parts, `","refresh_token":"`, resp.RefreshToken)
		}
		parts = append(parts, "\"}\n")
	} else {
		b, _ := json.Marshal(resp) // strings and an int: cannot fail
		parts = append(parts, string(b), "\n")
	}
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(n))
	w.WriteHeader(http.StatusOK)
	for _, p := range parts {
		_, _ = io.WriteString(w, p)
	}
}

// jsonPlain reports whether encoding/json writes s unchanged between quotes
// (it escapes control characters, quote, backslash, and <, >, & for HTML).
func jsonPlain(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20, c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// Refresh tokens are signed JWTs that no registry accepts as an access token:
// their audience is not the service name, they carry no `access` claim, and
// their `token_use` is "refresh". They are bound to the service and subject.
const (
	refreshAudiencePrefix = "tollgate-refresh:"
	refreshUse            = "refresh"
)

type refreshClaims struct {
	jwt.RegisteredClaims
	TokenUse   string         `json:"token_use"`
	Connector  string         `json:"connector"`
	Credential string         `json:"cred"`
	Claims     map[string]any `json:"claims,omitempty"`
	SessionID  string         `json:"sid"`
}

type refreshClaimsOut struct {
	Issuer    string `json:"iss"`
	Subject   string `json:"sub"`
	Audience  string `json:"aud"`
	ExpiresAt int64  `json:"exp"`
	IssuedAt  int64  `json:"iat"`
	ID        string `json:"jti"`
	TokenUse  string `json:"token_use"`
	Connector string `json:"connector"`
	// Credential fingerprints the credential the identity was verified
	// with (identity.Identity.Credential), for its connector's Refresh.
	Credential string `json:"cred,omitempty"`
	// Claims are those of an identity that cannot be looked up again (one
	// with an Expiry, from an OIDC token), for its connector's Refresh.
	Claims map[string]any `json:"claims,omitempty"`
	// SessionID binds the token to a login session (device login): it is
	// good while the session lives. Never the provider's token itself.
	SessionID string `json:"sid,omitempty"`
}

// errRefreshTooLarge is a refresh token that would be longer than the
// broker accepts (maxRefreshBytes): it is not issued.
var errRefreshTooLarge = errors.New("refresh token longer than the broker accepts")

// signRefresh makes a refresh token under the key's kid-only header. Its
// claims are encoded without HTML escaping, which would make each <, > or
// & of a carried claim six bytes: the payload is base64 in a JWT, never
// read as HTML.
func (svc *Service) signRefresh(k *Key, id identity.Identity, sid string, now time.Time, ttl time.Duration) (string, error) {
	var claims map[string]any
	if !id.Expiry.IsZero() {
		claims = id.Claims
	}
	var payload bytes.Buffer
	enc := json.NewEncoder(&payload)
	enc.SetEscapeHTML(false)
	err := enc.Encode(refreshClaimsOut{
		Issuer:     svc.Issuer,
		Subject:    id.Subject,
		Audience:   refreshAudiencePrefix + svc.Name,
		ExpiresAt:  now.Add(ttl).Unix(),
		IssuedAt:   now.Unix(),
		ID:         rand.Text(),
		TokenUse:   refreshUse,
		Connector:  id.Connector,
		Credential: id.Credential,
		Claims:     claims,
		SessionID:  sid,
	})
	if err != nil {
		return "", err
	}
	tok, err := k.signPayload(k.refreshHeader, bytes.TrimSuffix(payload.Bytes(), []byte("\n")))
	if err == nil && len(tok) > maxRefreshBytes {
		return "", fmt.Errorf("%w: %d bytes, at most %d accepted", errRefreshTooLarge, len(tok), maxRefreshBytes)
	}
	return tok, err
}

var errBadRefresh = errors.New("invalid refresh token")

// verifyRefresh checks a refresh token's signature against the service's
// published keys, its audience, issuer, use and expiry.
func (svc *Service) verifyRefresh(raw string, now time.Time) (*refreshClaims, error) {
	var c refreshClaims
	_, err := jwt.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		k := svc.Keys.Lookup(kid, now)
		if k == nil {
			return nil, errors.New("unknown signing key")
		}
		if t.Method.Alg() != k.method.Alg() {
			return nil, errors.New("algorithm does not match the key")
		}
		return k.signer.Public(), nil
	},
		jwt.WithValidMethods([]string{"ES256", "ES384", "ES512", "RS256"}),
		jwt.WithAudience(refreshAudiencePrefix+svc.Name),
		jwt.WithIssuer(svc.Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadRefresh, err)
	}
	if c.TokenUse != refreshUse || c.Subject == "" {
		return nil, fmt.Errorf("%w: not a refresh token", errBadRefresh)
	}
	return &c, nil
}
