package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tollgate/tollgate/identity/oidc"
)

// oidcConfig is the configuration of an oidc connector: bearer JWTs from
// one or more issuers (an IdP, a Kubernetes cluster, a CI system).
type oidcConfig struct {
	Name    string             `yaml:"name"`
	Type    string             `yaml:"type"`
	Issuers []oidcIssuerConfig `yaml:"issuers"`
}

type oidcIssuerConfig struct {
	Issuer         string            `yaml:"issuer"`
	Audience       stringOrList      `yaml:"audience"`
	Algorithms     []string          `yaml:"algorithms"`
	SubjectClaim   string            `yaml:"subject_claim"`
	NameClaim      string            `yaml:"name_claim"`
	GroupsClaim    string            `yaml:"groups_claim"`
	GroupsPrefix   string            `yaml:"groups_prefix"`
	RequiredClaims map[string]string `yaml:"required_claims"`
	Leeway         time.Duration     `yaml:"leeway"`
	RefreshTTL     time.Duration     `yaml:"refresh_ttl"`
	JWKSURL        string            `yaml:"jwks_url"`
	CAFile         string            `yaml:"ca_file"`
	Timeout        time.Duration     `yaml:"timeout"`
	RefetchEvery   time.Duration     `yaml:"jwks_refetch_interval"`
	KeysMaxAge     time.Duration     `yaml:"jwks_max_age"`
}

// stringOrList is a YAML string or a list of strings.
type stringOrList []string

func (s *stringOrList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var one string
		if err := n.Decode(&one); err != nil {
			return err
		}
		*s = []string{one}
		return nil
	}
	var many []string
	if err := n.Decode(&many); err != nil {
		return err
	}
	*s = many
	return nil
}

func newOIDCConnector(env connectorEnv, c *ConnectorConfig) (any, error) {
	var cfg oidcConfig
	if err := c.decodeStrict(&cfg); err != nil {
		return nil, err
	}
	if len(cfg.Issuers) == 0 {
		return nil, errors.New("issuers: at least one is required")
	}
	out := oidc.Config{Issuers: make([]oidc.IssuerConfig, len(cfg.Issuers))}
	for i, ic := range cfg.Issuers {
		client, err := oidcHTTPClient(ic, env.baseDir)
		if err != nil {
			return nil, fmt.Errorf("issuers[%d].ca_file: %w", i, err)
		}
		out.Issuers[i] = oidc.IssuerConfig{
			Issuer: ic.Issuer, Audiences: ic.Audience, Algorithms: ic.Algorithms,
			SubjectClaim: ic.SubjectClaim, NameClaim: ic.NameClaim,
			GroupsClaim: ic.GroupsClaim, GroupsPrefix: ic.GroupsPrefix, RequiredClaims: ic.RequiredClaims,
			Leeway: ic.Leeway, RefreshTTL: ic.RefreshTTL,
			JWKSURL: ic.JWKSURL, HTTPClient: client, Timeout: ic.Timeout,
			RefetchInterval: ic.RefetchEvery, KeysMaxAge: ic.KeysMaxAge,
		}
	}
	v, err := oidc.New(out, env.log.With("connector", c.Name))
	if err != nil {
		return nil, err
	}
	// Fetch the keys now, so the first token does not wait; an issuer that
	// is down only makes its own tokens answer 503 until it is back.
	go v.Warm(env.ctx)
	return v, nil
}

// oidcHTTPClient trusts ca_file for an issuer behind a private CA (a
// cluster's API server); nil means the verifier's default client.
func oidcHTTPClient(ic oidcIssuerConfig, baseDir string) (*http.Client, error) {
	if ic.CAFile == "" {
		return nil, nil
	}
	file := ic.CAFile
	if !filepath.IsAbs(file) {
		file = filepath.Join(baseDir, file)
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", file)
	}
	timeout := ic.Timeout
	if timeout == 0 {
		timeout = oidc.DefaultTimeout
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Timeout: timeout, Transport: tr}, nil
}
