package serve

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/redisstore"
	"github.com/tollgate/tollgate/internal/atomicfile"
	"github.com/tollgate/tollgate/internal/config"
	"github.com/tollgate/tollgate/internal/probe"
	"github.com/tollgate/tollgate/internal/secret"
	"github.com/tollgate/tollgate/internal/yamlconf"
)

// sharedStores are where throttle counters and refresh-token revocations
// live: Redis when configured (shared by every replica), else the process's
// memory and a revocations file in state_dir that `tollgate token revoke`
// edits.
type sharedStores struct {
	counters    broker.CounterStore
	revocations broker.Revocations
	sessions    broker.SessionStore
	redis       *redisstore.Store // nil without Redis
	close       func()
}

// revocationSync is how often each replica copies the revocations from
// Redis: how far behind its copy may be when Redis stops answering.
const revocationSync = time.Second

// openSharedStores opens the stores of cfg; their background work (Redis
// sync, watching the revocations file) lives as long as bg, and none starts
// for a check.
func openSharedStores(ctx, bg context.Context, cfg *config.Config, log *slog.Logger, check bool, probes probe.Factory) (*sharedStores, error) {
	local := broker.NewMemoryCounters(100_000, max(cfg.Throttle.Window, cfg.Throttle.KnownAddressTTL))
	if cfg.Redis != nil {
		return openRedisStores(ctx, bg, cfg, log, local, check, probes.For(cfg.Redis.Addr))
	}
	// `tollgate token revoke` writes revocations.json there, atomically.
	if err := atomicfile.CheckWritableDir(cfg.StateDir); err != nil {
		return nil, yamlconf.Prefix("state_dir", err)
	}
	fr, err := broker.OpenFileRevocations(cfg.RevocationsFile())
	if err != nil {
		return nil, yamlconf.Prefix("state_dir", err)
	}
	wctx, cancel := context.WithCancel(bg)
	if !check {
		go fr.Watch(wctx, time.Second, log)
	}
	return &sharedStores{counters: local, revocations: fr, sessions: broker.NewFileSessions(cfg.SessionsFile()), close: cancel}, nil
}

func openRedisStores(ctx, bg context.Context, cfg *config.Config, log *slog.Logger, local broker.CounterStore, check bool, rec probe.Recorder) (*sharedStores, error) {
	rs, err := OpenRedis(cfg, log, rec)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(bg)
	st := &sharedStores{
		counters: &broker.FallbackCounters{Shared: rs, Local: local}, revocations: rs, redis: rs,
		sessions: rs.Sessions(),
		close:    func() { cancel(); rs.Close() },
	}
	if check {
		return st, nil
	}
	redis.SetLogger(redisLogger{log})
	if err := rs.Sync(ctx); err != nil {
		log.Warn("redis does not answer: serving anyway; failed logins are counted by this replica alone until it does",
			"addr", cfg.Redis.Addr, "err", err)
	}
	go rs.Run(sctx, revocationSync)
	return st, nil
}

// status is the shared-state line of /readyz (none without Redis). A stale
// state does not make the broker unready: it serves, throttling on its own
// counts and checking revocations against its last copy (decision 0010).
func (st *sharedStores) status() []string {
	if st.redis == nil {
		return nil
	}
	s := st.redis.Status()
	synced := "never"
	if !s.LastSync.IsZero() {
		synced = s.LastSync.UTC().Format(time.RFC3339)
	}
	if !s.Stale {
		return []string{"shared state: redis in sync (revocations synced " + synced + ")"}
	}
	why := "revocations not synced lately"
	if !s.DownSince.IsZero() {
		why = "redis does not answer since " + s.DownSince.UTC().Format(time.RFC3339)
	}
	return []string{"shared state: stale: " + why + "; failed logins are counted by this replica alone, refresh tokens are checked against the revocations synced " + synced}
}

// registerMetrics says whether the shared state is current.
func (st *sharedStores) registerMetrics(reg prometheus.Registerer) {
	if st.redis == nil {
		return
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tollgate_shared_state_stale",
			Help: "1 while Redis does not answer or the revocations were not synced lately: failed logins are counted per replica, revocations checked against the last copy.",
		}, func() float64 {
			if st.redis.Status().Stale {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tollgate_shared_state_last_sync_timestamp_seconds",
			Help: "When the revocations were last copied from Redis (unix time; 0 before the first copy).",
		}, func() float64 { return unixOrZero(st.redis.Status().LastSync) }),
	)
}

// OpenRedis connects to the Redis of cfg (lazily: nothing is sent yet);
// rec, when not nil, records its calls.
func OpenRedis(cfg *config.Config, log *slog.Logger, rec probe.Recorder) (*redisstore.Store, error) {
	rc := cfg.Redis
	pw, err := secret.Resolve(rc.Password, rc.PasswordEnv, rc.PasswordFile, cfg.BaseDir())
	if err != nil {
		return nil, yamlconf.Prefix("redis.password", err)
	}
	return redisstore.New(redisstore.Options{Addr: rc.Addr, Password: string(pw), DB: rc.DB, Prefix: rc.Prefix, Timeout: rc.Timeout, Logger: log, Probe: rec}), nil
}

// redisLogger sends the Redis client's own messages (reconnects) to the
// broker's log at debug level; outages are reported where they matter.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}
