package robot

import (
	"context"
	"time"

	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/internal/yamlconf"
)

// Config is the configuration of the robot connector.
type Config struct {
	// File is the robot store that `tollgate robot` edits, relative to the
	// configuration file.
	File string `yaml:"file"`
}

// PollInterval is how often Open's watcher checks the store for changes.
const PollInterval = time.Second

// Validate names every problem by its key.
func (c *Config) Validate() error {
	if c.File == "" {
		return yamlconf.Errorf("file", "required (the store `tollgate robot create --file` writes)")
	}
	return nil
}

// Open loads the store and watches it until ctx ends.
func (c *Config) Open(ctx context.Context, env identity.Env) (*Connector, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	conn, err := Open(env.Path(c.File))
	if err != nil {
		return nil, yamlconf.Prefix("file", err)
	}
	if !env.Check {
		go conn.Watch(ctx, PollInterval, env.Logger())
	}
	return conn, nil
}
