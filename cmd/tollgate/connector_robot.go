package main

import (
	"fmt"
	"path/filepath"

	"github.com/tollgate/tollgate/identity/robot"
)

// robotConnectorName is the connector name of every robot identity: the
// default policy recognises robots by it, so no other connector may use it.
const robotConnectorName = "robot"

// robotConfig is the configuration of the robot connector.
type robotConfig struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`
	// File is the robot store that `tollgate robot` edits.
	File string `yaml:"file"`
}

func newRobotConnector(env connectorEnv, c *ConnectorConfig) (any, error) {
	var cfg robotConfig
	if err := c.decodeStrict(&cfg); err != nil {
		return nil, err
	}
	if cfg.File == "" {
		return nil, fmt.Errorf("file: required (the store `tollgate robot create --file` writes)")
	}
	if !filepath.IsAbs(cfg.File) {
		cfg.File = filepath.Join(env.baseDir, cfg.File)
	}
	conn, err := robot.Open(cfg.File)
	if err != nil {
		return nil, err
	}
	go conn.Watch(env.ctx, htpasswdPoll, env.log.With("connector", c.Name))
	return conn, nil
}
