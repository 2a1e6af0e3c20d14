package oidc

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/internal/secret"
	"github.com/tollgate/tollgate/internal/yamlconf"
)

// Defaults of a DeviceLoginConfig.
const (
	DefaultDeviceScopes    = "openid offline_access"
	DefaultRevalidateAfter = 15 * time.Minute
)

// DeviceLoginConfig makes the broker an OAuth client of one of the
// connector's issuers, for single sign-on with the device authorization
// grant (RFC 8628): `POST /login/device`.
type DeviceLoginConfig struct {
	// Issuer is one of the connector's issuers; the only one when empty.
	Issuer           string        `yaml:"issuer"`
	ClientID         string        `yaml:"client_id"`
	ClientSecret     secret.Secret `yaml:"client_secret"`
	ClientSecretEnv  string        `yaml:"client_secret_env"`
	ClientSecretFile string        `yaml:"client_secret_file"`
	// Scopes asked for, space separated (DefaultDeviceScopes when empty):
	// offline_access brings the refresh token sessions are checked with.
	Scopes string `yaml:"scopes"`
	// RevalidateAfter: a refresh asks the provider again when the last
	// check is older (DefaultRevalidateAfter when 0).
	RevalidateAfter time.Duration `yaml:"revalidate_after"`
	// Grace serves the last checked identity this long past
	// RevalidateAfter while the provider cannot be reached (0: 503).
	Grace time.Duration `yaml:"grace"`
}

func (d *DeviceLoginConfig) validate(issuers []IssuerConfig) error {
	var errs []error
	bad := func(path, format string, args ...any) { errs = append(errs, yamlconf.Errorf(path, format, args...)) }
	if _, err := d.issuerIndex(issuers); err != nil {
		bad("issuer", "%v", err)
	}
	if d.ClientID == "" {
		bad("client_id", "required: the broker's client id at the provider")
	}
	if err := secret.Check(d.ClientSecret, d.ClientSecretEnv, d.ClientSecretFile); err != nil {
		bad("client_secret", "%v", err)
	} else if !secret.Given(d.ClientSecret, d.ClientSecretEnv, d.ClientSecretFile) {
		bad("client_secret", "required (client_secret, client_secret_env or client_secret_file)")
	}
	if d.RevalidateAfter < 0 {
		bad("revalidate_after", "must not be negative")
	}
	if d.Grace < 0 {
		bad("grace", "must not be negative")
	}
	return errors.Join(errs...)
}

// issuerIndex is the issuer device logins go to.
func (d *DeviceLoginConfig) issuerIndex(issuers []IssuerConfig) (int, error) {
	if d.Issuer == "" {
		if len(issuers) != 1 {
			return 0, errors.New("required when the connector has several issuers")
		}
		return 0, nil
	}
	for i, ic := range issuers {
		if ic.Issuer == d.Issuer {
			return i, nil
		}
	}
	return 0, fmt.Errorf("%q is not one of the connector's issuers", d.Issuer)
}

// deviceClient is the broker as the provider's OAuth client.
type deviceClient struct {
	is *issuer
	// client is the issuer's, refusing redirects: net/http would send the
	// form, client secret and refresh token included, again to wherever a
	// 307 or 308 points.
	client   *http.Client
	id       string
	secret   secret.Secret
	scopes   string
	settings identity.DeviceSettings
	// idTokens checks the ID tokens the provider sends the broker: their
	// audience is the broker's client id, not the configured audiences.
	idTokens *jwt.Validator

	mu        sync.Mutex
	endpoints *deviceEndpoints // from discovery, once it answered
}

type deviceEndpoints struct {
	Issuer        string `json:"issuer"`
	DeviceAuth    string `json:"device_authorization_endpoint"`
	TokenEndpoint string `json:"token_endpoint"`
}

var _ identity.DeviceConnector = (*deviceClient)(nil)

func newDeviceClient(d *DeviceLoginConfig, is *issuer, clientSecret secret.Secret) *deviceClient {
	client := *is.client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &deviceClient{
		is: is, client: &client, id: d.ClientID, secret: clientSecret,
		scopes: cmp.Or(d.Scopes, DefaultDeviceScopes),
		settings: identity.DeviceSettings{
			RevalidateAfter: cmp.Or(d.RevalidateAfter, DefaultRevalidateAfter),
			Grace:           d.Grace,
		},
		idTokens: jwt.NewValidator(
			jwt.WithIssuer(is.cfg.Issuer),
			jwt.WithAudience(d.ClientID),
			jwt.WithExpirationRequired(),
			jwt.WithLeeway(is.cfg.Leeway),
			jwt.WithTimeFunc(is.now),
		),
	}
}

// DeviceSettings implements identity.DeviceConnector.
func (c *deviceClient) DeviceSettings() identity.DeviceSettings { return c.settings }

// discover reads the provider's endpoints, once it has answered.
func (c *deviceClient) discover(ctx context.Context) (*deviceEndpoints, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.endpoints != nil {
		return c.endpoints, nil
	}
	var doc deviceEndpoints
	if err := c.is.getJSON(ctx, strings.TrimSuffix(c.is.cfg.Issuer, "/")+"/.well-known/openid-configuration", &doc); err != nil {
		return nil, fmt.Errorf("%w: discovery: %v", identity.ErrUnavailable, err)
	}
	if doc.Issuer != c.is.cfg.Issuer {
		return nil, fmt.Errorf("%w: discovery names issuer %q, not %q", identity.ErrUnavailable, doc.Issuer, c.is.cfg.Issuer)
	}
	for name, u := range map[string]string{"device_authorization_endpoint": doc.DeviceAuth, "token_endpoint": doc.TokenEndpoint} {
		if err := checkFetchURL(u); err != nil {
			return nil, fmt.Errorf("%w: discovery: %s: %v", identity.ErrUnavailable, name, err)
		}
	}
	c.endpoints = &doc
	return c.endpoints, nil
}

// StartDevice implements identity.DeviceConnector.
func (c *deviceClient) StartDevice(ctx context.Context) (identity.DeviceAuthorization, error) {
	ep, err := c.discover(ctx)
	if err != nil {
		return identity.DeviceAuthorization{}, err
	}
	var out struct {
		DeviceCode              string `json:"device_code"`
		UserCode                string `json:"user_code"`
		VerificationURI         string `json:"verification_uri"`
		VerificationURIComplete string `json:"verification_uri_complete"`
		ExpiresIn               int    `json:"expires_in"`
		Interval                int    `json:"interval"`
	}
	if err := c.post(ctx, ep.DeviceAuth, url.Values{"scope": {c.scopes}}, &out); err != nil {
		return identity.DeviceAuthorization{}, err
	}
	if out.DeviceCode == "" || out.UserCode == "" || out.VerificationURI == "" || out.ExpiresIn <= 0 {
		return identity.DeviceAuthorization{}, fmt.Errorf("%w: device authorization answer lacks device_code, user_code, verification_uri or expires_in", identity.ErrUnavailable)
	}
	return identity.DeviceAuthorization{
		DeviceCode: out.DeviceCode, UserCode: out.UserCode,
		VerificationURI: out.VerificationURI, VerificationURIComplete: out.VerificationURIComplete,
		ExpiresIn: time.Duration(out.ExpiresIn) * time.Second, Interval: time.Duration(out.Interval) * time.Second,
	}, nil
}

// PollDevice implements identity.DeviceConnector.
func (c *deviceClient) PollDevice(ctx context.Context, deviceCode string) (identity.DeviceLogin, error) {
	return c.token(ctx, url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {deviceCode}}, "")
}

// RefreshDevice implements identity.DeviceConnector.
func (c *deviceClient) RefreshDevice(ctx context.Context, refreshToken string) (identity.DeviceLogin, error) {
	return c.token(ctx, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}, refreshToken)
}

// token asks the token endpoint and maps the ID token it answers with
// through the issuer's claim mapping, as a bearer token would be.
func (c *deviceClient) token(ctx context.Context, form url.Values, prevRefresh string) (identity.DeviceLogin, error) {
	ep, err := c.discover(ctx)
	if err != nil {
		return identity.DeviceLogin{}, err
	}
	var out struct {
		IDToken      string `json:"id_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := c.post(ctx, ep.TokenEndpoint, form, &out); err != nil {
		return identity.DeviceLogin{}, err
	}
	if out.IDToken == "" {
		return identity.DeviceLogin{}, fmt.Errorf("%w: the token endpoint sent no id_token (is scope openid asked for?)", identity.ErrUnavailable)
	}
	id, err := c.verifyIDToken(ctx, out.IDToken)
	if err != nil {
		return identity.DeviceLogin{}, err
	}
	return identity.DeviceLogin{Identity: id, RefreshToken: cmp.Or(out.RefreshToken, prevRefresh)}, nil
}

// verifyIDToken checks an ID token's signature with the issuer's keys, its
// issuer, audience (the broker's client id) and expiry, and maps its claims.
func (c *deviceClient) verifyIDToken(ctx context.Context, raw string) (identity.Identity, error) {
	claims := jwt.MapClaims{}
	_, err := jwt.NewParser(jwt.WithoutClaimsValidation()).ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		return c.is.keyFor(ctx, t)
	})
	if err == nil {
		err = c.idTokens.Validate(claims)
	}
	if err != nil {
		if errors.Is(err, identity.ErrUnavailable) {
			return identity.Identity{}, err
		}
		return identity.Identity{}, classify(err, c.is)
	}
	id, err := c.is.mapClaims(claims, c.is.now())
	if err != nil {
		return identity.Identity{}, err
	}
	id.Expiry = time.Time{} // the session, not the ID token, bounds the login
	return id, nil
}

// post sends a form, authenticated as the client, and decodes a 200 JSON
// answer into out; an OAuth error answer is an *identity.OAuthError, any
// other failure wraps identity.ErrUnavailable.
func (c *deviceClient) post(ctx context.Context, endpoint string, form url.Values, out any) error {
	form.Set("client_id", c.id)
	form.Set("client_secret", string(c.secret))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: POST %s: %v", identity.ErrUnavailable, endpoint, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes))
	if err != nil {
		return fmt.Errorf("%w: POST %s: %v", identity.ErrUnavailable, endpoint, err)
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%w: POST %s: %v", identity.ErrUnavailable, endpoint, err)
		}
		return nil
	}
	var oe struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if resp.StatusCode < 500 && json.Unmarshal(data, &oe) == nil && oe.Error != "" {
		return &identity.OAuthError{Code: oe.Error, Description: oe.Description}
	}
	return fmt.Errorf("%w: POST %s: %s", identity.ErrUnavailable, endpoint, resp.Status)
}
