package config

import (
	"encoding/json"
	"errors"
	"net/url"
	"path"
	"time"

	"github.com/open-policy-agent/opa/v1/keys"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/internal/secret"
	"github.com/tollgate/tollgate/internal/yamlconf"
)

// ShortFormName names the service and the bundle that a URL policy.source
// becomes in OPA's configuration.
const ShortFormName = "tollgate"

// ShortFormOPA is a URL policy.source written as OPA's configuration
// document (JSON), as docs/opa.md maps it: one service and one bundle
// named tollgate, the bearer token as the service's credentials,
// policy.signing as keys and the bundle's signing, polling in seconds
// (OPA's unit, rounded up). A directory or a file has no such form here:
// OPA's file:// loader reads them once, tollgate's loader reloads them.
func (c *Config) ShortFormOPA() ([]byte, error) {
	pc := c.Policy
	if !bundles.IsURL(pc.Source) {
		return nil, errors.New("policy.source: only a URL maps onto OPA's services and bundles")
	}
	u, err := url.Parse(pc.Source)
	if err != nil {
		return nil, yamlconf.Errorf("policy.source", "%s: %v", bundles.RedactURL(pc.Source), err)
	}
	// OPA asks for <service url>/<resource>: the last path element, and
	// the query (a pre-signed URL's signature), go to the resource.
	dir, resource := path.Split(u.Path)
	if u.RawQuery != "" {
		resource += "?" + u.RawQuery
	}
	svcURL := *u
	svcURL.Path, svcURL.RawPath, svcURL.RawQuery, svcURL.Fragment = path.Clean("/"+dir), "", "", ""
	if svcURL.Path == "/" {
		svcURL.Path = ""
	}
	service := map[string]any{
		"url":                             svcURL.String(),
		"response_header_timeout_seconds": seconds(pc.Polling.Timeout),
	}
	token, err := secret.Resolve(pc.BearerToken, pc.BearerTokenEnv, pc.BearerTokenFile, c.baseDir)
	if err != nil {
		return nil, yamlconf.Prefix("policy.bearer_token", err)
	}
	if token != "" {
		service["credentials"] = map[string]any{"bearer": map[string]any{"token": string(token)}}
	}
	bundle := map[string]any{
		"service":  ShortFormName,
		"resource": resource,
		"polling": map[string]any{
			"min_delay_seconds": seconds(pc.Polling.MinDelay),
			"max_delay_seconds": seconds(max(pc.Polling.MaxDelay, pc.Polling.MinDelay)),
		},
	}
	doc := map[string]any{
		"services": map[string]any{ShortFormName: service},
		"bundles":  map[string]any{ShortFormName: bundle},
	}
	if sc := pc.Signing; sc != nil {
		kc, err := keys.NewKeyConfig(sc.PublicKey, sc.Algorithm, sc.Scope)
		if err != nil {
			return nil, yamlconf.Prefix("policy.signing.public_key", err)
		}
		id := sc.KeyID
		if id == "" {
			id = "default" // as bundles.VerificationConfig
		}
		key := map[string]any{"key": kc.Key, "algorithm": kc.Algorithm}
		signing := map[string]any{"keyid": id}
		if sc.Scope != "" {
			key["scope"], signing["scope"] = sc.Scope, sc.Scope
		}
		doc["keys"] = map[string]any{id: key}
		bundle["signing"] = signing
	}
	return json.Marshal(doc)
}

// seconds is d in whole seconds, rounded up, at least 1: OPA's unit.
func seconds(d time.Duration) int64 {
	return max(1, int64((d+time.Second-1)/time.Second))
}
