package oidc

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/internal/probe"
	"github.com/tollgate/tollgate/internal/secret"
	"github.com/tollgate/tollgate/internal/yamlconf"
)

// StringList is a YAML string or a list of strings (audience: registry, or
// audience: [registry, other]).
type StringList []string

// UnmarshalYAML reads one string or a list of them.
func (s *StringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*s = []string{n.Value}
		return nil
	}
	var many []string
	if n.Kind != yaml.SequenceNode || n.Decode(&many) != nil {
		return errors.New("want a string or a list of strings")
	}
	*s = many
	return nil
}

// Validate names every problem by its key (issuers[1].audience). It
// contacts no issuer and reads no file.
func (c *Config) Validate() error {
	if len(c.Issuers) == 0 {
		return yamlconf.Errorf("issuers", "at least one is required")
	}
	var errs []error
	seen := map[string]bool{}
	for i, ic := range c.Issuers {
		p := fmt.Sprintf("issuers[%d]", i)
		errs = append(errs, yamlconf.Prefix(p, ic.validate()))
		if ic.Issuer != "" && seen[ic.Issuer] {
			errs = append(errs, yamlconf.Errorf(p+".issuer", "%q is configured twice", ic.Issuer))
		}
		seen[ic.Issuer] = true
	}
	if c.DeviceLogin != nil {
		errs = append(errs, yamlconf.Prefix("device_login", c.DeviceLogin.validate(c.Issuers)))
	}
	return errors.Join(errs...)
}

func (c *IssuerConfig) validate() error {
	var errs []error
	bad := func(path, format string, args ...any) { errs = append(errs, yamlconf.Errorf(path, format, args...)) }
	if c.Issuer == "" {
		bad("issuer", "required")
	}
	if c.JWKSURL != "" {
		if err := checkFetchURL(c.JWKSURL); err != nil {
			bad("jwks_url", "%v", err)
		}
	} else if err := checkFetchURL(c.Issuer); c.Issuer != "" && err != nil {
		bad("issuer", "%v (or give jwks_url)", err)
	}
	if len(c.Audiences) == 0 || slices.Contains(c.Audiences, "") {
		bad("audience", "required, so tokens meant for other services are refused")
	}
	for _, a := range c.Algorithms {
		if !validAlgorithm(a) {
			bad("algorithms", "%q is not accepted (never none or HMAC); use some of %s", a, strings.Join(supportedAlgorithms, ", "))
		}
	}
	if _, empty := c.RequiredClaims[""]; empty {
		bad("required_claims", "a claim name is empty")
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"leeway", c.Leeway}, {"refresh_ttl", c.RefreshTTL}, {"timeout", c.Timeout}, {"jwks_refetch_interval", c.RefetchInterval}, {"jwks_max_age", c.KeysMaxAge}} {
		if d.v < 0 {
			bad(d.key, "must not be negative")
		}
	}
	if c.Leeway > MaxLeeway {
		bad("leeway", "at most %s", MaxLeeway)
	}
	return errors.Join(errs...)
}

// Open builds the verifier, with an HTTP client that trusts each issuer's
// ca_file, and fetches the keys in the background until ctx ends, so the
// first token does not wait; an issuer that is down only makes its own
// tokens answer 503 until it is back.
func (c *Config) Open(ctx context.Context, env identity.Env) (*Verifier, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	cfg := *c
	cfg.Issuers = slices.Clone(c.Issuers)
	for i := range cfg.Issuers {
		ic := &cfg.Issuers[i]
		if ic.Probe == nil {
			ic.Probe = env.Probe.For(ic.Issuer)
		}
		if ic.CAFile == "" || ic.HTTPClient != nil {
			continue
		}
		client, err := caClient(env.Path(ic.CAFile), cmp.Or(ic.Timeout, DefaultTimeout))
		if err != nil {
			return nil, yamlconf.Prefix(fmt.Sprintf("issuers[%d].ca_file", i), err)
		}
		ic.HTTPClient = client
	}
	v, err := New(cfg, env.Logger())
	if err != nil {
		return nil, err
	}
	if d := c.DeviceLogin; d != nil {
		clientSecret, err := secret.Resolve(d.ClientSecret, d.ClientSecretEnv, d.ClientSecretFile, env.BaseDir)
		if err != nil {
			return nil, yamlconf.Prefix("device_login.client_secret", err)
		}
		i, _ := d.issuerIndex(c.Issuers) // validated
		v.device = newDeviceClient(d, v.issuers[c.Issuers[i].Issuer], clientSecret)
	}
	if !env.Check {
		go v.Warm(ctx) // fetch the keys before the first token arrives
		for _, is := range v.issuers {
			probe.Watch(ctx, is.cfg.Probe, is.check)
		}
	}
	return v, nil
}

// caClient is an HTTP client that trusts the CA certificates in file.
func caClient(file string, timeout time.Duration) (*http.Client, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", file)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Timeout: timeout, Transport: tr}, nil
}
