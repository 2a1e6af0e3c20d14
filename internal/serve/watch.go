package serve

import (
	"context"
	"time"

	"github.com/tollgate/tollgate/internal/atomicfile"
	"github.com/tollgate/tollgate/internal/config"
)

// ConfigPoll is how often the configuration file and the key directories
// are checked for changes.
const ConfigPoll = 2 * time.Second

// WatchFiles signals changed when the configuration file, a key
// directory or the TLS key pair it names changes (size, time, names), so
// editing them has the effect of a SIGHUP.
func WatchFiles(ctx context.Context, cfg *config.Config, every time.Duration, changed chan<- struct{}) {
	stamp := func() string {
		paths := []string{cfg.Path()}
		if c, err := config.Load(cfg.Path()); err == nil {
			for _, svc := range c.Services {
				paths = append(paths, svc.Keys)
			}
			if c.TLS != nil {
				paths = append(paths, c.TLS.CertFile, c.TLS.KeyFile)
			}
		}
		return atomicfile.Stamp(paths...)
	}
	last := stamp()
	atomicfile.Poll(ctx, every, func() {
		if now := stamp(); now != last {
			last = now
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	})
}
