package identity

import (
	"log/slog"
	"path/filepath"

	"github.com/tollgate/tollgate/internal/probe"
)

// Env is what an adapter's Config.Open may use besides its own Config.
type Env struct {
	// Name is the connector's configured name.
	Name string
	// Log receives the connector's messages; nil discards them.
	Log *slog.Logger
	// BaseDir is where relative paths in the Config are taken from: the
	// directory of the configuration file.
	BaseDir string
	// Changed, when set, is called after the connector's users changed (a
	// reloaded file), so the broker forgets the passwords it verified.
	Changed func()
	// Check opens the connector only to check its configuration (serve
	// --check): it starts no background work and contacts no server.
	Check bool
	// Probe, when set, gives the Recorder of each backend the connector
	// calls (its directory, each OIDC issuer), for health and latency
	// metrics; nil records nothing.
	Probe probe.Factory
}

// Path makes p absolute against BaseDir; "" stays "".
func (e Env) Path(p string) string {
	if p != "" && !filepath.IsAbs(p) {
		return filepath.Join(e.BaseDir, p)
	}
	return p
}

// Logger is Log, or a logger that discards.
func (e Env) Logger() *slog.Logger {
	if e.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Log
}
