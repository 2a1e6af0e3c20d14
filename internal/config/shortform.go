package config

import (
	"encoding/json"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/open-policy-agent/opa/v1/keys"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/internal/secret"
	"github.com/tollgate/tollgate/internal/yamlconf"
)

// ShortFormName names the service and the bundle that a URL policy.source
// becomes in OPA's configuration.
const ShortFormName = "tollgate"

// ShortFormOPA is policy.source written as OPA's configuration document
// (JSON), as docs/opa.md maps it: one bundle named tollgate, with
// policy.signing as keys and the bundle's signing. A URL becomes a service
// named tollgate too, the bearer token its credentials, polling in seconds
// (OPA's unit, rounded up). A directory or a tarball becomes a file://
// resource with trigger: manual: OPA's file loader reads it only when
// triggered, which tollgate does when it changes (LocalResource).
func (c *Config) ShortFormOPA() ([]byte, error) {
	pc := c.Policy
	var doc map[string]any
	var bundle map[string]any
	if bundles.IsURL(pc.Source) {
		var err error
		if doc, bundle, err = c.shortFormURL(); err != nil {
			return nil, err
		}
	} else {
		bundle = map[string]any{"resource": LocalResource(pc.Source), "trigger": "manual"}
		doc = map[string]any{"bundles": map[string]any{ShortFormName: bundle}}
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

// LocalResource is the file:// resource of a local policy.source. A
// Kubernetes ConfigMap or Secret mount holds its files as symlinks into
// ..data, a symlink to a hidden directory each update swaps; OPA's loader
// skips symlinks and would read the hidden directory as a subtree (its
// data.json under data["..2026_..."]). Through "..data/" (the slash makes
// the walk follow the symlink) it sees each file once, all of one version.
func LocalResource(source string) string {
	// Absolute: in file://etc/policy, etc would be the host.
	if abs, err := filepath.Abs(source); err == nil {
		source = abs
	}
	if st, err := os.Lstat(filepath.Join(source, "..data")); err == nil && st.Mode()&fs.ModeSymlink != 0 {
		return "file://" + filepath.Join(source, "..data") + "/"
	}
	return "file://" + source
}

// shortFormURL is the document of a URL source and its bundle.
func (c *Config) shortFormURL() (doc, bundle map[string]any, err error) {
	pc := c.Policy
	u, err := url.Parse(pc.Source)
	if err != nil {
		return nil, nil, yamlconf.Errorf("policy.source", "%s: %v", bundles.RedactURL(pc.Source), err)
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
		return nil, nil, yamlconf.Prefix("policy.bearer_token", err)
	}
	if token != "" {
		service["credentials"] = map[string]any{"bearer": map[string]any{"token": string(token)}}
	}
	bundle = map[string]any{
		"service":  ShortFormName,
		"resource": resource,
		"polling": map[string]any{
			"min_delay_seconds": seconds(pc.Polling.MinDelay),
			"max_delay_seconds": seconds(max(pc.Polling.MaxDelay, pc.Polling.MinDelay)),
		},
	}
	doc = map[string]any{
		"services": map[string]any{ShortFormName: service},
		"bundles":  map[string]any{ShortFormName: bundle},
	}
	return doc, bundle, nil
}

// seconds is d in whole seconds, rounded up, at least 1: OPA's unit.
func seconds(d time.Duration) int64 {
	return max(1, int64((d+time.Second-1)/time.Second))
}
