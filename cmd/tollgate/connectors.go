package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/identity/htpasswd"
	"github.com/tollgate/tollgate/identity/ldap"
	"github.com/tollgate/tollgate/identity/oidc"
	"github.com/tollgate/tollgate/identity/robot"
	"github.com/tollgate/tollgate/internal/yamlconf"
)

// connectorTypes is each identity adapter's configuration, by type. Each
// adapter owns its Config (keys, defaults, Validate, Open); adding one
// means adding a row here, and nothing registers itself.
var connectorTypes = map[string]connectorType{
	"htpasswd": connectorTypeOf((*htpasswd.Config).Open),
	"ldap":     connectorTypeOf((*ldap.Config).Open),
	"oidc":     connectorTypeOf((*oidc.Config).Open),
	"robot":    connectorTypeOf((*robot.Config).Open),
}

// robotConnectorName is the connector name of every robot identity: the
// default policy recognises robots by it, so no other connector may use it.
const robotConnectorName = "robot"

// adapterConfig is an adapter's own Config, decoded from its YAML.
type adapterConfig interface{ Validate() error }

// connectorType makes an adapter's empty Config and opens a decoded one.
type connectorType struct {
	newConfig func() adapterConfig
	open      func(ctx context.Context, c adapterConfig, env identity.Env) (any, error)
}

// connectorTypeOf describes the adapter whose Config.Open is open.
func connectorTypeOf[C any, PC interface {
	*C
	adapterConfig
}, A any](open func(PC, context.Context, identity.Env) (A, error)) connectorType {
	return connectorType{
		newConfig: func() adapterConfig { return PC(new(C)) },
		open: func(ctx context.Context, c adapterConfig, env identity.Env) (any, error) {
			a, err := open(c.(PC), ctx, env)
			if err != nil {
				return nil, err
			}
			return a, nil
		},
	}
}

func connectorTypeNames() string {
	return strings.Join(slices.Sorted(maps.Keys(connectorTypes)), ", ")
}

// ConnectorConfig is one identity adapter: the envelope (name, type) and
// the adapter's own Config, decoded strictly from the same mapping when the
// file is loaded.
type ConnectorConfig struct {
	Name string
	Type string
	// Config is the adapter's (*ldap.Config, ...); nil for an unknown type,
	// which Validate reports.
	Config adapterConfig
	node   yaml.Node // the connector's YAML, which a reload compares
}

// UnmarshalYAML picks the adapter by type, then decodes name, type and the
// adapter's keys strictly: a typo is an error naming its path and line.
func (c *ConnectorConfig) UnmarshalYAML(n *yaml.Node) error {
	var head struct {
		Type string `yaml:"type"`
	}
	if err := n.Decode(&head); err != nil {
		return errors.New("want a mapping with name, type and the connector's keys")
	}
	envelope := struct {
		Name   string `yaml:"name"`
		Type   string `yaml:"type"`
		Config any    `yaml:",inline"`
	}{}
	t, known := connectorTypes[head.Type]
	if known {
		envelope.Config = t.newConfig()
	}
	if err := yamlconf.Decode(n, &envelope); err != nil && known {
		return err
	}
	c.Name, c.Type, c.node = envelope.Name, envelope.Type, *n
	if known {
		c.Config = envelope.Config.(adapterConfig)
	}
	return nil
}

// connectorEnv is what building a connector may use besides its config.
type connectorEnv struct {
	ctx     context.Context // the connector's life; ends its watchers
	log     *slog.Logger
	baseDir string
	cache   *identity.CredentialCache
}

// open builds the adapter of c and finds its capabilities; its watchers
// and pools stop with env.ctx.
func (c *ConnectorConfig) open(env connectorEnv) (identity.Connector, error) {
	ie := identity.Env{BaseDir: env.baseDir}
	if env.log != nil {
		ie.Log = env.log.With("connector", c.Name)
	}
	if env.cache != nil {
		ie.Changed = env.cache.Purge
	}
	adapter, err := connectorTypes[c.Type].open(env.ctx, c.Config, ie)
	if err != nil {
		return identity.Connector{}, err
	}
	return identity.NewConnector(c.Name, adapter)
}

// buildChain builds every configured connector, in order.
func buildChain(env connectorEnv, cfgs []ConnectorConfig) (*identity.Chain, error) {
	conns := make([]identity.Connector, 0, len(cfgs))
	for i := range cfgs {
		conn, err := cfgs[i].open(env)
		if err != nil {
			return nil, connectorError(i, &cfgs[i], err)
		}
		conns = append(conns, conn)
	}
	return identity.NewChain(conns, env.cache), nil
}

// connectorError names the connector's path and line in err, as loading does.
func connectorError(i int, c *ConnectorConfig, err error) error {
	return yamlconf.Prefix(fmt.Sprintf("identity[%d]", i), yamlconf.Locate(&c.node, err))
}

// checkConnectors opens every connector as serve would (reading its files
// and secrets, connecting to nothing) and closes them again, so --check
// finds a missing htpasswd file or an unset password variable.
func checkConnectors(ctx context.Context, cfg *Config) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the watchers
	if _, err := buildChain(connectorEnv{ctx: ctx, baseDir: cfg.baseDir}, cfg.Identity); err != nil {
		return fmt.Errorf("%s: invalid configuration:\n%w", cfg.path, err)
	}
	return nil
}
