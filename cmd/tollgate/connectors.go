package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/identity/htpasswd"
)

// connectorEnv is what a connector factory may use besides its own config.
type connectorEnv struct {
	ctx     context.Context // lives as long as the server; ends watchers
	log     *slog.Logger
	baseDir string
	cache   *identity.CredentialCache
}

// connectorFactories builds identity adapters from their config, by type.
// Adding an adapter means adding a row here; nothing registers itself.
var connectorFactories = map[string]func(env connectorEnv, c *ConnectorConfig) (any, error){
	"htpasswd": newHtpasswdConnector,
	"ldap":     newLDAPConnector,
	"oidc":     newOIDCConnector,
	"robot":    newRobotConnector,
}

func factoryNames() string {
	names := make([]string, 0, len(connectorFactories))
	for n := range connectorFactories {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// htpasswdConfig is the configuration of an htpasswd connector.
type htpasswdConfig struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`
	File string `yaml:"file"`
}

// htpasswdPoll is how often the file is checked for changes.
const htpasswdPoll = time.Second

func newHtpasswdConnector(env connectorEnv, c *ConnectorConfig) (any, error) {
	var cfg htpasswdConfig
	if err := c.decodeStrict(&cfg); err != nil {
		return nil, err
	}
	if cfg.File == "" {
		return nil, fmt.Errorf("file: required")
	}
	if !filepath.IsAbs(cfg.File) {
		cfg.File = filepath.Join(env.baseDir, cfg.File)
	}
	f, err := htpasswd.Open(cfg.File)
	if err != nil {
		return nil, err
	}
	// A changed file takes effect at once: forget verified passwords.
	f.OnReload = env.cache.Purge
	go f.Watch(env.ctx, htpasswdPoll, env.log.With("connector", c.Name))
	return f, nil
}

// buildChain builds every configured connector, in order.
func buildChain(env connectorEnv, cfgs []ConnectorConfig) (*identity.Chain, error) {
	conns := make([]identity.Connector, 0, len(cfgs))
	for i := range cfgs {
		c := &cfgs[i]
		adapter, err := connectorFactories[c.Type](env, c)
		if err != nil {
			return nil, fmt.Errorf("identity[%d] (%s): %w", i, c.Name, err)
		}
		conns = append(conns, identity.Connector{Name: c.Name, Adapter: adapter})
	}
	return identity.NewChain(conns, env.cache), nil
}
