package config

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
	"github.com/tollgate/tollgate/internal/probe"
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

// RobotConnectorName is the connector name of every robot identity: the
// default policy recognises robots by it, so no other connector may use it.
const RobotConnectorName = "robot"

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

// ConnectorTypes names every identity adapter type, sorted.
func ConnectorTypes() []string { return slices.Sorted(maps.Keys(connectorTypes)) }

func connectorTypeNames() string { return strings.Join(ConnectorTypes(), ", ") }

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

// ConnectorEnv is what building a connector may use besides its config.
type ConnectorEnv struct {
	Ctx   context.Context // the connector's life; ends its watchers
	Log   *slog.Logger    // nil: discard
	Cache *identity.CredentialCache
	// Check: the connectors are opened only to be checked (see identity.Env).
	Check bool
	// Probes, when set, gives the probe.Factory of a kind of backend (the
	// connector's type) for identity.Env.Probe.
	Probes func(backend string) probe.Factory
}

// OpenConnector builds the adapter of c.Identity[i] and finds its
// capabilities; its watchers and pools stop with env.Ctx. An error names
// the connector's path and line.
func (c *Config) OpenConnector(env ConnectorEnv, i int) (identity.Connector, error) {
	cc := &c.Identity[i]
	ie := identity.Env{Name: cc.Name, BaseDir: c.baseDir, Check: env.Check}
	if env.Probes != nil {
		ie.Probe = env.Probes(cc.Type)
	}
	if env.Log != nil {
		ie.Log = env.Log.With("connector", cc.Name)
	}
	if env.Cache != nil {
		ie.Changed = env.Cache.Purge
	}
	adapter, err := connectorTypes[cc.Type].open(env.Ctx, cc.Config, ie)
	if err == nil {
		var conn identity.Connector
		if conn, err = identity.NewConnector(cc.Name, adapter); err == nil {
			return conn, nil
		}
	}
	return identity.Connector{}, yamlconf.Prefix(fmt.Sprintf("identity[%d]", i), yamlconf.Locate(&cc.node, err))
}

// ConnectorKey is what makes c.Identity[i] the same connector across a
// reload: its type, the base directory and its configuration text.
func (c *Config) ConnectorKey(i int) string {
	cc := &c.Identity[i]
	raw, _ := yaml.Marshal(&cc.node)
	return cc.Type + "\x00" + c.baseDir + "\x00" + string(raw)
}

// BuildChain builds every configured connector, in order.
func (c *Config) BuildChain(env ConnectorEnv) (*identity.Chain, error) {
	conns := make([]identity.Connector, 0, len(c.Identity))
	for i := range c.Identity {
		conn, err := c.OpenConnector(env, i)
		if err != nil {
			return nil, c.Invalid(err)
		}
		conns = append(conns, conn)
	}
	return identity.NewChain(conns, env.Cache), nil
}

// DeviceLogin reports whether a connector offers device login.
func (c *Config) DeviceLogin() bool {
	for _, ic := range c.Identity {
		if oc, ok := ic.Config.(*oidc.Config); ok && oc.DeviceLogin != nil {
			return true
		}
	}
	return false
}
