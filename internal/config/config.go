// Package config is tollgate's configuration file: its types, defaults and
// validation, each problem named by its YAML path and line.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/internal/probe"
	"github.com/tollgate/tollgate/internal/secret"
	"github.com/tollgate/tollgate/internal/yamlconf"
	"github.com/tollgate/tollgate/policies"
)

// Config is the broker's YAML configuration file.
type Config struct {
	Listen        string          `yaml:"listen"`
	TLS           *TLSConfig      `yaml:"tls"`
	StateDir      string          `yaml:"state_dir"`
	Services      []ServiceConfig `yaml:"services"`
	RefreshTokens RefreshConfig   `yaml:"refresh_tokens"`
	Anonymous     *bool           `yaml:"anonymous"`
	// TrustedProxies are the reverse proxies (CIDR ranges or addresses)
	// whose ClientIPHeader names the client (broker.ClientAddress).
	TrustedProxies []string          `yaml:"trusted_proxies"`
	ClientIPHeader string            `yaml:"client_ip_header"`
	Identity       []ConnectorConfig `yaml:"identity"`
	Policy         PolicyConfig      `yaml:"policy"`
	// OPA is an OPA configuration document (services, bundles, keys,
	// persistence_directory, ...), kept as written: OPA's own parser
	// validates it (decision 0014). It replaces policy.source.
	OPA             *yaml.Node     `yaml:"opa"`
	Throttle        ThrottleConfig `yaml:"throttle"`
	Metrics         MetricsConfig  `yaml:"metrics"`
	Redis           *RedisConfig   `yaml:"redis"`
	CredentialCache CacheConfig    `yaml:"credential_cache"`
	Log             LogConfig      `yaml:"log"`
	Sessions        SessionsConfig `yaml:"sessions"`

	baseDir string    // directory of the config file, for relative paths
	path    string    // the config file, read again on SIGHUP
	root    yaml.Node // the file's document, to name the line of a later problem
}

// Path is the file the configuration was read from ("" when built in code).
func (c *Config) Path() string { return c.path }

// BaseDir is the directory relative paths in the file are taken from.
func (c *Config) BaseDir() string { return c.baseDir }

// Invalid names the file and the line of every path-named problem in err
// (yamlconf errors), as loading does: a problem found when the parts are
// opened reads like one found when the file was read.
func (c *Config) Invalid(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: invalid configuration:\n%w", c.path, yamlconf.Locate(&c.root, err))
}

// ServiceConfig is one audience tokens are issued for.
type ServiceConfig struct {
	Name        string        `yaml:"name"`
	Default     bool          `yaml:"default"`
	Issuer      string        `yaml:"issuer"`
	Realm       string        `yaml:"realm"`
	TokenTTL    time.Duration `yaml:"token_ttl"`
	MaxTokenTTL time.Duration `yaml:"max_token_ttl"`
	// TokenReuse: how long the same access token is served again for the
	// same subject and grant instead of signing anew (default 1s, 0s off).
	TokenReuse *time.Duration `yaml:"token_reuse"`
	Keys       string         `yaml:"keys"`
}

// RefreshConfig controls refresh tokens (offline_token / access_type=offline).
type RefreshConfig struct {
	Enabled *bool         `yaml:"enabled"`
	TTL     time.Duration `yaml:"ttl"`
}

// PolicyConfig says where the policy comes from and how decisions are cached.
type PolicyConfig struct {
	// Source is a directory, an OPA bundle file (.tar.gz) or an http(s) URL
	// serving one.
	Source  string         `yaml:"source"`
	Query   string         `yaml:"query"`
	Polling PollingConfig  `yaml:"polling"`
	Signing *SigningConfig `yaml:"signing"`
	// BearerToken authenticates to a bundle server (from the value, an
	// environment variable or a file).
	BearerToken     secret.Secret       `yaml:"bearer_token"`
	BearerTokenEnv  string              `yaml:"bearer_token_env"`
	BearerTokenFile string              `yaml:"bearer_token_file"`
	DecisionCache   DecisionCacheConfig `yaml:"decision_cache"`
	DecisionLog     DecisionLogConfig   `yaml:"decision_log"`
	// MaxBundleBytes and MaxBundleFiles bound a bundle tarball (file or
	// URL): its download and uncompressed size, and its number of files.
	MaxBundleBytes ByteSize `yaml:"max_bundle_bytes"`
	MaxBundleFiles int      `yaml:"max_bundle_files"`
}

// BundleLimits bounds a bundle tarball of this policy source.
func (pc PolicyConfig) BundleLimits() bundles.Limits {
	return bundles.Limits{MaxBytes: int64(pc.MaxBundleBytes), MaxFiles: pc.MaxBundleFiles}
}

// PolicySource is where the policy comes from, as configured: its limits,
// the signature it must carry and the bearer token for its server.
func (c *Config) PolicySource() (*bundles.Source, error) {
	pc := c.Policy
	src := &bundles.Source{Location: pc.Source, Client: &http.Client{Timeout: pc.Polling.Timeout}, Limits: pc.BundleLimits()}
	if sc := pc.Signing; sc != nil {
		vc, err := bundles.VerificationConfig(sc.PublicKey, sc.Algorithm, sc.KeyID, sc.Scope)
		if err != nil {
			return nil, yamlconf.Prefix("policy.signing", err)
		}
		src.Verify = vc
	}
	token, err := secret.Resolve(pc.BearerToken, pc.BearerTokenEnv, pc.BearerTokenFile, c.baseDir)
	if err != nil {
		return nil, yamlconf.Prefix("policy.bearer_token", err)
	}
	src.BearerToken = string(token) // sent to the origin of the source only
	return src, nil
}

// OPADocument is the opa section as a document for OPA's parser, with
// ${VAR} replaced as `opa run` does (expandOPAEnv); nil without one.
func (c *Config) OPADocument() ([]byte, error) {
	if c.OPA == nil {
		return nil, nil
	}
	doc, err := yaml.Marshal(c.OPA)
	if err != nil {
		return nil, yamlconf.Prefix("opa", err)
	}
	var n yaml.Node // a copy: c.OPA names lines in later errors
	if err := yaml.Unmarshal(doc, &n); err != nil {
		return nil, yamlconf.Prefix("opa", err)
	}
	expandOPAEnv(&n)
	if doc, err = yaml.Marshal(&n); err != nil {
		return nil, yamlconf.Prefix("opa", err)
	}
	return doc, nil
}

// SessionsConfig is how long device-login sessions live and the key that
// seals what the broker keeps of the identity provider.
type SessionsConfig struct {
	// MaxLifetime ends a session this long after its login (default 720h).
	MaxLifetime time.Duration `yaml:"max_lifetime"`
	// Idle ends a session not refreshed for this long (default 168h).
	Idle time.Duration `yaml:"idle"`
	// Key is 32 bytes in base64, from the value, an environment variable
	// or a file; every replica needs the same. Without one, a key is
	// generated into state_dir/session.key.
	Key     secret.Secret `yaml:"key"`
	KeyEnv  string        `yaml:"key_env"`
	KeyFile string        `yaml:"key_file"`
}

// SessionsFile is where login sessions live without Redis.
func (c *Config) SessionsFile() string { return filepath.Join(c.StateDir, "sessions.json") }

// SessionKeyFile is where a generated session key is kept.
func (c *Config) SessionKeyFile() string { return filepath.Join(c.StateDir, "session.key") }

// TLSConfig serves the broker over HTTPS (TLS 1.2 or later).
type TLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// RedisConfig shares the throttle's counters and the refresh-token
// revocations between replicas.
type RedisConfig struct {
	Addr         string        `yaml:"addr"`
	Password     secret.Secret `yaml:"password"`
	PasswordEnv  string        `yaml:"password_env"`
	PasswordFile string        `yaml:"password_file"`
	DB           int           `yaml:"db"`
	Prefix       string        `yaml:"prefix"`
	Timeout      time.Duration `yaml:"timeout"`
}

// MetricsConfig serves Prometheus metrics at /metrics.
type MetricsConfig struct {
	Enabled *bool `yaml:"enabled"`
	// Listen, when set, serves /metrics on its own address only (for
	// example 127.0.0.1:9101) instead of on the token listener.
	Listen string `yaml:"listen"`
	// BackendCheckInterval is how often the broker checks an LDAP
	// directory or OIDC issuer on its own while its last call failed, so
	// tollgate_backend_up reads 1 again once it is back, with no login;
	// one that answers is checked after 4 intervals without a call, so an
	// outage with no traffic is seen too (15s by default, at least 1s).
	BackendCheckInterval time.Duration `yaml:"backend_check_interval"`
}

// MinBackendCheckInterval bounds how often a backend is checked on its own.
const MinBackendCheckInterval = time.Second

// BackendChecks is the schedule metrics.backend_check_interval sets.
func (m MetricsConfig) BackendChecks() probe.Schedule {
	return probe.Schedule{Interval: m.BackendCheckInterval, Idle: 4 * m.BackendCheckInterval}
}

// ThrottleConfig limits failed logins per user name and per client address.
type ThrottleConfig struct {
	Enabled               *bool         `yaml:"enabled"`
	Window                time.Duration `yaml:"window"`
	MaxFailuresPerUser    int           `yaml:"max_failures_per_user"`
	MaxFailuresPerAddress int           `yaml:"max_failures_per_address"`
	KnownAddressTTL       time.Duration `yaml:"known_address_ttl"`
	// MaxDeviceStartsPerAddress bounds the device logins one address may
	// start in a window: each makes the broker ask the identity provider.
	MaxDeviceStartsPerAddress int `yaml:"max_device_starts_per_address"`
}

// PollingConfig paces the reloading of a policy source. A URL is polled by
// OPA's bundle plugin (ShortFormOPA) at a random delay between min_delay
// and max_delay in whole seconds, backing off to max_delay after failures;
// a local source is checked every min_delay.
type PollingConfig struct {
	MinDelay time.Duration `yaml:"min_delay"`
	MaxDelay time.Duration `yaml:"max_delay"`
	Timeout  time.Duration `yaml:"timeout"`
}

// SigningConfig makes bundle signatures mandatory and says how to verify them.
type SigningConfig struct {
	PublicKey string `yaml:"public_key"` // PEM file or content
	Algorithm string `yaml:"algorithm"`
	KeyID     string `yaml:"key_id"`
	Scope     string `yaml:"scope"`
}

// DecisionLogConfig turns on OPA-shaped decision logs.
type DecisionLogConfig struct {
	Enabled bool `yaml:"enabled"`
	// Path is "stdout" (the default) or a file, appended to.
	Path string `yaml:"path"`
}

// CacheConfig sizes a cache. size 0 turns it off.
type CacheConfig struct {
	Size *int          `yaml:"size"`
	TTL  time.Duration `yaml:"ttl"`
}

// DecisionCacheConfig sizes the policy decision cache: entries, their
// lifetime, and the memory they may hold, whichever bound is met first.
type DecisionCacheConfig struct {
	CacheConfig `yaml:",inline"`
	MaxBytes    ByteSize `yaml:"max_bytes"`
}

// minDecisionCacheBytes is the smallest useful budget: a few hundred
// decisions. Below it, turn the cache off (size: 0) instead.
const minDecisionCacheBytes = 64 << 10

// ByteSize is a number of bytes, written as an integer or with a binary
// unit: 512KiB, 64MiB, 1GiB.
type ByteSize int64

// UnmarshalYAML reads an integer or an integer with KiB, MiB or GiB.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	s := strings.TrimSpace(n.Value)
	unit := int64(1)
	for suffix, u := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if num, ok := strings.CutSuffix(s, suffix); ok {
			s, unit = strings.TrimSpace(num), u
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if n.Kind != yaml.ScalarNode || err != nil || v < 0 || v > math.MaxInt64/unit {
		return fmt.Errorf("%q is not a size: want bytes, or a number with KiB, MiB or GiB", n.Value)
	}
	*b = ByteSize(v * unit)
	return nil
}

// LogConfig sets the log level and format.
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Load reads, defaults and validates the file at path. Relative paths
// in it are taken relative to the file's directory. Every key is decoded
// strictly, each connector's by its adapter's Config; every problem is named
// by its YAML path and line.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var c Config
	if root.Kind != 0 { // an empty file is an empty configuration
		if err := yamlconf.Decode(&root, &c); err != nil {
			return nil, fmt.Errorf("%s: invalid configuration:\n%w", path, err)
		}
	}
	c.resolvePaths(filepath.Dir(path))
	c.path, c.root = path, root
	c.setDefaults()
	if err := c.Validate(); err != nil {
		return nil, c.Invalid(err)
	}
	return &c, nil
}

func (c *Config) resolvePaths(base string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	abs(&c.StateDir)
	if c.TLS != nil {
		abs(&c.TLS.CertFile)
		abs(&c.TLS.KeyFile)
	}
	if !bundles.IsURL(c.Policy.Source) && !strings.Contains(c.Policy.Source, "://") {
		abs(&c.Policy.Source)
	}
	if sc := c.Policy.Signing; sc != nil && !strings.Contains(sc.PublicKey, "-----BEGIN") {
		abs(&sc.PublicKey)
	}
	if c.Policy.DecisionLog.Path != "stdout" {
		abs(&c.Policy.DecisionLog.Path)
	}
	for i := range c.Services {
		abs(&c.Services[i].Keys)
	}
	c.baseDir = base
}

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = ":5001"
	}
	for i := range c.Services {
		s := &c.Services[i]
		if s.TokenTTL == 0 {
			s.TokenTTL = 5 * time.Minute
		}
		if s.MaxTokenTTL == 0 {
			s.MaxTokenTTL = max(s.TokenTTL, time.Hour)
		}
		if s.TokenReuse == nil {
			s.TokenReuse = ptr(time.Second)
		}
	}
	if c.RefreshTokens.Enabled == nil {
		c.RefreshTokens.Enabled = ptr(true)
	}
	if c.RefreshTokens.TTL == 0 {
		c.RefreshTokens.TTL = 30 * 24 * time.Hour
	}
	if c.Anonymous == nil {
		c.Anonymous = ptr(true)
	}
	if c.Policy.Query == "" {
		c.Policy.Query = "data.registry.authz"
	}
	defaultCache(&c.Policy.DecisionCache.CacheConfig, 100_000, time.Minute)
	if c.Policy.DecisionCache.MaxBytes == 0 {
		c.Policy.DecisionCache.MaxBytes = policies.DefaultCacheMaxBytes
	}
	if c.StateDir == "" {
		c.StateDir = c.baseDir
	}
	c.Sessions.MaxLifetime = cmp.Or(c.Sessions.MaxLifetime, 30*24*time.Hour)
	c.Sessions.Idle = cmp.Or(c.Sessions.Idle, 7*24*time.Hour)
	if c.Metrics.Enabled == nil {
		c.Metrics.Enabled = ptr(true)
	}
	c.Metrics.BackendCheckInterval = cmp.Or(c.Metrics.BackendCheckInterval, 15*time.Second)
	th := &c.Throttle
	if th.Enabled == nil {
		th.Enabled = ptr(true)
	}
	th.Window = cmp.Or(th.Window, time.Minute)
	th.MaxFailuresPerUser = cmp.Or(th.MaxFailuresPerUser, 10)
	th.MaxFailuresPerAddress = cmp.Or(th.MaxFailuresPerAddress, 50)
	th.MaxDeviceStartsPerAddress = cmp.Or(th.MaxDeviceStartsPerAddress, 30)
	th.KnownAddressTTL = cmp.Or(th.KnownAddressTTL, 30*24*time.Hour)
	pc := &c.Policy.Polling
	if pc.MinDelay == 0 {
		pc.MinDelay = 2 * time.Second
		if bundles.IsURL(c.Policy.Source) {
			pc.MinDelay = 10 * time.Second
		}
	}
	if pc.MaxDelay == 0 {
		pc.MaxDelay = max(pc.MinDelay, 30*time.Second)
	}
	if pc.Timeout == 0 {
		pc.Timeout = 30 * time.Second
	}
	if sc := c.Policy.Signing; sc != nil && sc.Algorithm == "" {
		sc.Algorithm = "RS256" // opa's default
	}
	c.Policy.MaxBundleBytes = cmp.Or(c.Policy.MaxBundleBytes, ByteSize(bundles.DefaultMaxBytes))
	c.Policy.MaxBundleFiles = cmp.Or(c.Policy.MaxBundleFiles, bundles.DefaultMaxFiles)
	if c.Policy.DecisionLog.Enabled && c.Policy.DecisionLog.Path == "" {
		c.Policy.DecisionLog.Path = "stdout"
	}
	defaultCache(&c.CredentialCache, 10_000, time.Minute)
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
}

func defaultCache(cc *CacheConfig, size int, ttl time.Duration) {
	if cc.Size == nil {
		cc.Size = ptr(size)
	}
	if cc.TTL == 0 {
		cc.TTL = ttl
	}
}

func ptr[T any](v T) *T { return &v }

// Validate checks the configuration and names every problem by its path.
func (c *Config) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, yamlconf.Errorf(path, format, args...))
	}
	if len(c.Services) == 0 {
		bad("services", "at least one service is required")
	}
	names := map[string]bool{}
	defaults := 0
	for i, s := range c.Services {
		p := fmt.Sprintf("services[%d]", i)
		if s.Name == "" {
			bad(p+".name", "required")
		} else if names[s.Name] {
			bad(p+".name", "duplicate service %q", s.Name)
		}
		names[s.Name] = true
		if s.Default {
			defaults++
		}
		if s.Issuer == "" {
			bad(p+".issuer", "required")
		}
		if s.Realm == "" {
			bad(p+".realm", "required (the token URL clients reach, e.g. https://registry.example.com/token)")
		} else if u, err := url.Parse(s.Realm); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(p+".realm", "want an absolute http(s) URL, got %q", s.Realm)
		}
		if s.TokenTTL < time.Minute {
			bad(p+".token_ttl", "at least 1m (clients assume 60s for shorter lifetimes)")
		}
		if s.MaxTokenTTL < s.TokenTTL {
			bad(p+".max_token_ttl", "must not be shorter than token_ttl")
		}
		if s.TokenReuse != nil && (*s.TokenReuse < 0 || *s.TokenReuse > broker.MaxTokenReuse) {
			bad(p+".token_reuse", "between 0s (sign every token) and %s", broker.MaxTokenReuse)
		}
		if s.Keys == "" {
			bad(p+".keys", "required: a directory of NAME.key + NAME.crt pairs (tollgate keygen)")
		}
	}
	if defaults > 1 {
		bad("services", "more than one service has default: true")
	}
	if c.RefreshTokens.TTL < 0 {
		bad("refresh_tokens.ttl", "must not be negative")
	}
	cnames := map[string]bool{}
	for i, ic := range c.Identity {
		p := fmt.Sprintf("identity[%d]", i)
		if ic.Name == "" {
			bad(p+".name", "required")
		} else if cnames[ic.Name] || ic.Name == "anonymous" {
			bad(p+".name", "duplicate or reserved name %q", ic.Name)
		}
		cnames[ic.Name] = true
		switch {
		case ic.Type == "":
			bad(p+".type", "required: one of %s", connectorTypeNames())
		case ic.Config == nil:
			bad(p+".type", "unknown connector type %q (known: %s)", ic.Type, connectorTypeNames())
		default:
			errs = append(errs, yamlconf.Prefix(p, ic.Config.Validate()))
		}
		if (ic.Type == "robot") != (ic.Name == RobotConnectorName) {
			bad(p+".name", "the robot connector, and only it, is named %q (policies recognise robots by it)", RobotConnectorName)
		}
	}
	switch {
	case c.OPA != nil && c.Policy.Source != "":
		bad("policy.source", "not with opa: the policy comes from opa.bundles")
	case c.OPA != nil && c.OPA.Kind != yaml.MappingNode:
		bad("opa", "want OPA's configuration document (services, bundles, keys, ...)")
	case c.OPA != nil && c.Policy.Signing != nil:
		// Ignored, it would look like a verification that is not made.
		bad("policy.signing", "not with opa: OPA's keys and bundles.<name>.signing verify its bundles")
	case c.OPA != nil && secret.Given(c.Policy.BearerToken, c.Policy.BearerTokenEnv, c.Policy.BearerTokenFile):
		bad("policy.bearer_token", "not with opa: OPA's services.<name>.credentials authenticate to its servers")
	case c.OPA != nil:
	case c.Policy.Source == "":
		bad("policy.source", "required: a directory with .rego files and data.json, a bundle .tar.gz, or a bundle URL")
	case strings.Contains(c.Policy.Source, "://") && !bundles.IsURL(c.Policy.Source):
		bad("policy.source", "%s: only http:// and https:// URLs are fetched", bundles.RedactURL(c.Policy.Source))
	}
	if _, err := broker.NewClientAddress(nil, c.ClientIPHeader); err != nil {
		bad("client_ip_header", "%v", err)
	} else if _, err := c.ClientAddress(); err != nil {
		bad("trusted_proxies", "%v", err)
	}
	if c.ClientIPHeader != "" && len(c.TrustedProxies) == 0 {
		bad("client_ip_header", "is read only from trusted_proxies: list them")
	}
	if c.Metrics.BackendCheckInterval < MinBackendCheckInterval {
		bad("metrics.backend_check_interval", "at least %s", MinBackendCheckInterval)
	}
	if c.Redis != nil && c.Redis.Addr == "" {
		bad("redis.addr", "required: host:port of the Redis all replicas share")
	}
	if c.TLS != nil && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		bad("tls", "cert_file and key_file are both required")
	}
	if th := c.Throttle; th.Window < 0 || th.MaxFailuresPerUser < 0 || th.MaxFailuresPerAddress < 0 || th.MaxDeviceStartsPerAddress < 0 || th.KnownAddressTTL < 0 {
		bad("throttle", "window, limits and known_address_ttl must not be negative")
	}
	if pc := c.Policy.Polling; pc.MinDelay < 0 || pc.MaxDelay < pc.MinDelay || pc.Timeout < 0 {
		bad("policy.polling", "want 0 <= min_delay <= max_delay and a positive timeout")
	}
	if err := secret.Check(c.Policy.BearerToken, c.Policy.BearerTokenEnv, c.Policy.BearerTokenFile); err != nil {
		bad("policy.bearer_token", "%v", err)
	}
	if c.Redis != nil {
		if err := secret.Check(c.Redis.Password, c.Redis.PasswordEnv, c.Redis.PasswordFile); err != nil {
			bad("redis.password", "%v", err)
		}
	}
	if sc := c.Sessions; sc.MaxLifetime < 0 || sc.Idle < 0 {
		bad("sessions", "max_lifetime and idle must not be negative")
	}
	if err := secret.Check(c.Sessions.Key, c.Sessions.KeyEnv, c.Sessions.KeyFile); err != nil {
		bad("sessions.key", "%v", err)
	} else if c.Redis != nil && c.DeviceLogin() && !secret.Given(c.Sessions.Key, c.Sessions.KeyEnv, c.Sessions.KeyFile) {
		bad("sessions.key", "required with redis and device_login: every replica must open the sessions the others sealed")
	}
	if c.Policy.MaxBundleFiles < 0 {
		bad("policy.max_bundle_files", "must not be negative (0: the default, %d)", bundles.DefaultMaxFiles)
	}
	if sc := c.Policy.Signing; sc != nil && sc.PublicKey == "" {
		bad("policy.signing.public_key", "required: the PEM public key (file or content) that bundle signatures must verify against")
	}
	if (c.Policy.BearerToken != "" || c.Policy.BearerTokenEnv != "" || c.Policy.BearerTokenFile != "") && !hasSchemeFold(c.Policy.Source, "https") {
		if !bundles.IsURL(c.Policy.Source) || !isLoopbackURL(c.Policy.Source) {
			bad("policy.bearer_token", "only sent to an https:// source (or http:// on loopback)")
		}
	}
	if mb := c.Policy.DecisionCache.MaxBytes; mb < minDecisionCacheBytes {
		bad("policy.decision_cache.max_bytes", "at least 64KiB (size: 0 turns the cache off)")
	}
	for path, cc := range map[string]CacheConfig{"policy.decision_cache": c.Policy.DecisionCache.CacheConfig, "credential_cache": c.CredentialCache} {
		if *cc.Size < 0 {
			bad(path+".size", "must not be negative (0 turns the cache off)")
		}
		if cc.TTL < 0 {
			bad(path+".ttl", "must not be negative")
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "want debug, info, warn or error")
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		bad("log.format", "want json or text")
	}
	return errors.Join(errs...)
}

// ClientAddress finds clients behind the trusted proxies; nil without any.
func (c *Config) ClientAddress() (*broker.ClientAddress, error) {
	if len(c.TrustedProxies) == 0 {
		return nil, nil
	}
	return broker.NewClientAddress(c.TrustedProxies, c.ClientIPHeader)
}

// hasSchemeFold reports whether location starts with scheme:// in any case
// (URL schemes are case-insensitive).
func hasSchemeFold(location, scheme string) bool {
	s, _, ok := strings.Cut(location, "://")
	return ok && strings.EqualFold(s, scheme)
}

// isLoopbackURL reports whether u names a loopback host, where plain http
// cannot be sniffed.
func isLoopbackURL(u string) bool {
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	if p.Hostname() == "localhost" {
		return true
	}
	ip := net.ParseIP(p.Hostname())
	return ip != nil && ip.IsLoopback()
}

// LoadServices loads every service's key set.
func (c *Config) LoadServices() ([]*broker.Service, error) {
	var out []*broker.Service
	for i, sc := range c.Services {
		ks, err := broker.LoadKeyDir(sc.Keys)
		if err != nil {
			return nil, yamlconf.Prefix(fmt.Sprintf("services[%d].keys", i), err)
		}
		out = append(out, &broker.Service{
			Name: sc.Name, Default: sc.Default, Issuer: sc.Issuer, Realm: sc.Realm,
			TokenTTL: sc.TokenTTL, MaxTokenTTL: sc.MaxTokenTTL, TokenReuse: *sc.TokenReuse, Keys: ks,
		})
	}
	return out, nil
}

// RevocationsFile is where refresh-token revocations live without Redis.
func (c *Config) RevocationsFile() string { return filepath.Join(c.StateDir, "revocations.json") }
