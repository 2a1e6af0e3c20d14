package ldap

import (
	"context"
	"errors"
	"net/url"
	"strings"

	"github.com/go-ldap/ldap/v3"

	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/internal/probe"
	"github.com/tollgate/tollgate/internal/secret"
	"github.com/tollgate/tollgate/internal/yamlconf"
)

// Validate names every problem by its key. It reads no file and no
// environment variable: Open does.
func (c *Config) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) { errs = append(errs, yamlconf.Errorf(path, format, args...)) }
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "ldap" && u.Scheme != "ldaps") || u.Host == "" {
		bad("url", "want ldap://host:port or ldaps://host:port, got %q", c.URL)
	} else if c.StartTLS && u.Scheme == "ldaps" {
		bad("start_tls", "not with ldaps:// (already TLS)")
	}
	switch {
	case c.ClientCertFile != "" && c.ClientKeyFile == "":
		bad("client_cert_file", "needs client_key_file")
	case c.ClientCertFile == "" && c.ClientKeyFile != "":
		bad("client_key_file", "needs client_cert_file")
	}
	if err := secret.Check(c.BindPassword, c.BindPasswordEnv, c.BindPasswordFile); err != nil {
		bad("bind_password", "%v", err)
	} else if c.BindDN != "" && !secret.Given(c.BindPassword, c.BindPasswordEnv, c.BindPasswordFile) {
		bad("bind_password", "required with bind_dn (bind_password, bind_password_env or bind_password_file)")
	}
	if c.UserBase == "" {
		bad("user_base", "required")
	}
	if !strings.Contains(c.UserFilter, "{user}") {
		bad("user_filter", "required, with {user}, e.g. (uid={user})")
	} else if _, err := ldap.CompileFilter(strings.ReplaceAll(c.UserFilter, "{user}", "x")); err != nil {
		bad("user_filter", "%v", err)
	}
	switch g := c.Groups; g.From {
	case "", "memberOf":
	case "search":
		if g.Base == "" {
			bad("groups.base", "required with from: search")
		}
		if g.Filter == "" {
			bad("groups.filter", "required with from: search, e.g. (member={dn})")
		} else if _, err := ldap.CompileFilter(strings.NewReplacer("{dn}", "x", "{user}", "x").Replace(g.Filter)); err != nil {
			bad("groups.filter", "%v", err)
		}
	default:
		bad("groups.from", "want memberOf or search, got %q", g.From)
	}
	for _, n := range []struct {
		key string
		v   int64
	}{{"pool_size", int64(c.PoolSize)}, {"groups.max_depth", int64(c.Groups.MaxDepth)}, {"dial_timeout", int64(c.DialTimeout)}, {"timeout", int64(c.Timeout)}} {
		if n.v < 0 {
			bad(n.key, "must not be negative (0: the default)")
		}
	}
	return errors.Join(errs...)
}

// Open resolves the bind password and the files of c against env and builds
// the connector; its pooled connections are closed when ctx ends. Until
// then, when env.Probe watches (the broker exports metrics), the directory
// is also checked on its own (see Connector.check).
func (c *Config) Open(ctx context.Context, env identity.Env) (*Connector, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	cfg := *c
	pw, err := secret.Resolve(c.BindPassword, c.BindPasswordEnv, c.BindPasswordFile, env.BaseDir)
	if err != nil {
		return nil, yamlconf.Prefix(secret.Key("bind_password", c.BindPasswordEnv, c.BindPasswordFile), err)
	}
	if cfg.BindDN != "" && pw == "" {
		return nil, yamlconf.Errorf(secret.Key("bind_password", c.BindPasswordEnv, c.BindPasswordFile), "empty, and required with bind_dn")
	}
	cfg.BindPassword, cfg.BindPasswordEnv, cfg.BindPasswordFile = pw, "", ""
	cfg.CAFile, cfg.ClientCertFile, cfg.ClientKeyFile = env.Path(c.CAFile), env.Path(c.ClientCertFile), env.Path(c.ClientKeyFile)
	cfg.Probe = env.Probe.For(env.Name)
	conn, err := New(cfg, env.Logger())
	if err != nil {
		return nil, err
	}
	go func() { // the pool lives as long as the configuration that made it
		<-ctx.Done()
		conn.Close()
	}()
	if !env.Check {
		probe.Watch(ctx, cfg.Probe, conn.check)
	}
	return conn, nil
}
