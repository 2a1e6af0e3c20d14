package htpasswd

import (
	"context"
	"time"

	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/internal/yamlconf"
)

// Config is the configuration of an htpasswd connector.
type Config struct {
	// File is the htpasswd file, relative to the configuration file.
	File string `yaml:"file"`
	// GroupsFile gives the users groups, in the format of Apache's
	// AuthGroupFile ("group: user1 user2"), relative to the configuration
	// file; optional. It is reloaded when it changes, as File is.
	GroupsFile string `yaml:"groups_file"`
}

// PollInterval is how often Open's watcher checks the file for changes.
const PollInterval = time.Second

// Validate names every problem by its key.
func (c *Config) Validate() error {
	if c.File == "" {
		return yamlconf.Errorf("file", "required: the htpasswd file (tollgate htpasswd add FILE USER)")
	}
	return nil
}

// Open reads the file and watches it until ctx ends: a changed file takes
// effect at once, and env.Changed forgets the passwords verified before.
func (c *Config) Open(ctx context.Context, env identity.Env) (*File, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	f, err := Open(env.Path(c.File))
	if err != nil {
		return nil, yamlconf.Prefix("file", err)
	}
	if c.GroupsFile != "" {
		f.groupsPath = env.Path(c.GroupsFile)
		if err := f.ReloadGroups(); err != nil {
			return nil, yamlconf.Prefix("groups_file", err)
		}
	}
	f.OnReload = env.Changed
	if !env.Check {
		go f.Watch(ctx, PollInterval, env.Logger())
	}
	return f, nil
}
