package serve

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/internal/atomicfile"
	"github.com/tollgate/tollgate/internal/config"
	"github.com/tollgate/tollgate/internal/secret"
	"github.com/tollgate/tollgate/internal/yamlconf"
)

// sessionOptions turns on device login when a connector of live offers it:
// the sessions' store and the key sealing them. nil when none does.
func (r *Runtime) sessionOptions(cfg *config.Config, live map[string]*liveConnector) (*broker.SessionOptions, error) {
	devices := map[string]identity.DeviceConnector{}
	for name, lc := range live {
		if lc.conn.Device != nil {
			devices[name] = lc.conn.Device
		}
	}
	if len(devices) == 0 {
		return nil, nil
	}
	key, err := sessionKey(cfg, r.opts.Check)
	if err != nil {
		return nil, yamlconf.Prefix("sessions.key", err)
	}
	sealer, err := broker.NewSealer(key)
	if err != nil {
		return nil, yamlconf.Prefix("sessions.key", err)
	}
	return &broker.SessionOptions{Devices: devices, Store: r.stores.sessions, Sealer: sealer,
		MaxLifetime: cfg.Sessions.MaxLifetime, Idle: cfg.Sessions.Idle}, nil
}

// sessionKey is the configured key, or the one generated into the state
// directory on first use (a check generates none).
func sessionKey(cfg *config.Config, check bool) ([]byte, error) {
	sc := cfg.Sessions
	if secret.Given(sc.Key, sc.KeyEnv, sc.KeyFile) {
		v, err := secret.Resolve(sc.Key, sc.KeyEnv, sc.KeyFile, cfg.BaseDir())
		if err != nil {
			return nil, err
		}
		return decodeKey(string(v))
	}
	path := cfg.SessionKeyFile()
	data, err := os.ReadFile(path)
	if err == nil {
		return decodeKey(string(data))
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	key := make([]byte, broker.SealKeySize)
	_, _ = rand.Read(key)
	if check {
		return key, nil
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("generate %s: %w", path, err)
	}
	return key, nil
}

func decodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == broker.SealKeySize {
			return k, nil
		}
	}
	return nil, fmt.Errorf("want %d bytes in base64 (openssl rand -base64 %d)", broker.SealKeySize, broker.SealKeySize)
}
