package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tollgate/tollgate/identity/ldap"
)

// Secret is a configuration value that must never be printed or logged.
type Secret string

// String redacts the secret in fmt output.
func (Secret) String() string { return "[redacted]" }

// LogValue redacts the secret in slog output.
func (Secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// ldapConfig is the configuration of an ldap connector.
type ldapConfig struct {
	Name               string        `yaml:"name"`
	Type               string        `yaml:"type"`
	URL                string        `yaml:"url"`
	StartTLS           bool          `yaml:"start_tls"`
	CAFile             string        `yaml:"ca_file"`
	ClientCertFile     string        `yaml:"client_cert_file"`
	ClientKeyFile      string        `yaml:"client_key_file"`
	InsecureSkipVerify bool          `yaml:"insecure_skip_verify"`
	BindDN             string        `yaml:"bind_dn"`
	BindPassword       Secret        `yaml:"bind_password"`
	BindPasswordEnv    string        `yaml:"bind_password_env"`
	BindPasswordFile   string        `yaml:"bind_password_file"`
	UserBase           string        `yaml:"user_base"`
	UserFilter         string        `yaml:"user_filter"`
	SubjectAttribute   string        `yaml:"subject_attribute"`
	NameAttribute      string        `yaml:"name_attribute"`
	ClaimAttributes    []string      `yaml:"claim_attributes"`
	Groups             ldapGroups    `yaml:"groups"`
	PoolSize           int           `yaml:"pool_size"`
	DialTimeout        time.Duration `yaml:"dial_timeout"`
	Timeout            time.Duration `yaml:"timeout"`
}

type ldapGroups struct {
	From          string `yaml:"from"`
	Base          string `yaml:"base"`
	Filter        string `yaml:"filter"`
	NameAttribute string `yaml:"name_attribute"`
	Nested        bool   `yaml:"nested"`
	MaxDepth      int    `yaml:"max_depth"`
}

func newLDAPConnector(env connectorEnv, c *ConnectorConfig) (any, error) {
	var cfg ldapConfig
	if err := c.decodeStrict(&cfg); err != nil {
		return nil, err
	}
	password, err := resolveSecret(cfg.BindPassword, cfg.BindPasswordEnv, cfg.BindPasswordFile, env.baseDir)
	if err != nil {
		return nil, fmt.Errorf("bind_password: %w", err)
	}
	if cfg.BindDN != "" && password == "" {
		return nil, errors.New("bind_password: required with bind_dn (bind_password, bind_password_env or bind_password_file)")
	}
	abs := func(p string) string {
		if p != "" && !filepath.IsAbs(p) {
			return filepath.Join(env.baseDir, p)
		}
		return p
	}
	conn, err := ldap.New(ldap.Config{
		URL: cfg.URL, StartTLS: cfg.StartTLS, CAFile: abs(cfg.CAFile),
		ClientCertFile: abs(cfg.ClientCertFile), ClientKeyFile: abs(cfg.ClientKeyFile),
		InsecureSkipVerify: cfg.InsecureSkipVerify,
		BindDN:             cfg.BindDN, BindPassword: string(password),
		UserBase: cfg.UserBase, UserFilter: cfg.UserFilter,
		SubjectAttribute: cfg.SubjectAttribute, NameAttribute: cfg.NameAttribute, ClaimAttributes: cfg.ClaimAttributes,
		Groups: ldap.GroupConfig{
			From: cfg.Groups.From, Base: cfg.Groups.Base, Filter: cfg.Groups.Filter,
			NameAttribute: cfg.Groups.NameAttribute, Nested: cfg.Groups.Nested, MaxDepth: cfg.Groups.MaxDepth,
		},
		PoolSize: cfg.PoolSize, DialTimeout: cfg.DialTimeout, Timeout: cfg.Timeout,
	}, env.log.With("connector", c.Name))
	if err != nil {
		return nil, err
	}
	go func() { // the pool lives as long as the configuration that made it
		<-env.ctx.Done()
		conn.Close()
	}()
	return conn, nil
}

// resolveSecret takes a secret from exactly one of: the value, an
// environment variable, or a file (trailing newline removed). Secrets never
// come from the command line.
func resolveSecret(value Secret, envName, file, baseDir string) (Secret, error) {
	set := 0
	for _, s := range []string{string(value), envName, file} {
		if s != "" {
			set++
		}
	}
	if set > 1 {
		return "", errors.New("give only one of the value, _env and _file")
	}
	switch {
	case envName != "":
		v, ok := os.LookupEnv(envName)
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set", envName)
		}
		return Secret(v), nil
	case file != "":
		if !filepath.IsAbs(file) {
			file = filepath.Join(baseDir, file)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		return Secret(strings.TrimRight(string(data), "\r\n")), nil
	}
	return value, nil
}
