// Package redisstore keeps the state several broker replicas must share in
// Redis: the failed-login counters of the throttle and the refresh-token
// revocations. Keys hold hashes, never user names or addresses.
//
// A caller's cancelled request is never taken for a Redis outage: every call
// runs on a context detached from the caller's, with the store's own
// deadline. A real outage does not switch revocation checks off either: the
// revocations are kept in memory, synced from Redis every second, and checked
// against that copy while Redis does not answer (see docs/decisions/0010).
package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/probe"
)

// Store implements broker.CounterStore and broker.Revocations on Redis.
type Store struct {
	client  *redis.Client
	prefix  string
	timeout time.Duration
	log     *slog.Logger
	probe   probe.Recorder
	// downUntil (unix nanoseconds): after a failure, calls fail at once for
	// a moment instead of each waiting for a timeout, so a Redis outage
	// does not slow every token request.
	downUntil atomic.Int64
	revs      revocationCopy
	health    health
}

// ErrDown is returned while Redis is considered down after a failure.
var ErrDown = errors.New("redis unavailable (retrying shortly)")

// backoff is how long calls fail fast after a failure.
const backoff = 2 * time.Second

// Options configure the connection.
type Options struct {
	Addr     string // host:port
	Password string
	DB       int
	// Prefix starts every key (default "tollgate:"), so brokers of several
	// deployments can share one Redis.
	Prefix  string
	Timeout time.Duration
	// Logger receives one line when Redis stops answering and one when it
	// answers again; nil discards them.
	Logger *slog.Logger
	// Probe records each call: its latency and whether Redis answered.
	// Calls refused at once while Redis is considered down are not calls.
	Probe probe.Recorder
}

// New connects lazily: a Redis that is down makes each call fail fast
// (Timeout), and the broker decides what that means.
func New(o Options) *Store {
	if o.Prefix == "" {
		o.Prefix = "tollgate:"
	}
	if o.Timeout == 0 {
		o.Timeout = 500 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		client: redis.NewClient(&redis.Options{
			Addr: o.Addr, Password: o.Password, DB: o.DB,
			DialTimeout: o.Timeout, ReadTimeout: o.Timeout, WriteTimeout: o.Timeout,
			MaxRetries: 1,
		}),
		prefix:  o.Prefix,
		timeout: o.Timeout,
		log:     o.Logger,
		probe:   o.Probe,
	}
	s.revs.init()
	return s
}

// Close releases the connections.
func (s *Store) Close() error { return s.client.Close() }

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.guard(ctx, func(ctx context.Context) error { return s.client.Ping(ctx).Err() })
}

// guard runs a call unless Redis failed a moment ago, and notes failures.
// The call gets a context that the caller's cancellation does not reach
// (a client that resets its connection must not make Redis look down, nor
// leave a counter unincremented) and that ends after the store's timeout,
// with room for the client's one retry.
func (s *Store) guard(ctx context.Context, call func(context.Context) error) error {
	if time.Now().UnixNano() < s.downUntil.Load() {
		return ErrDown
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 4*s.timeout)
	defer cancel()
	done := probe.Start(s.probe)
	err := call(ctx)
	if err != nil && !errors.Is(err, redis.Nil) {
		done(ctx, err)
		s.downUntil.Store(time.Now().Add(backoff).UnixNano())
		s.health.failed(s.log, err)
		return err
	}
	done(ctx, nil)
	s.health.answered(s.log)
	return err
}

// incr increments a counter, starting its window when it is new, and
// returns the count and the window's time left, in one round trip.
var incr = redis.NewScript(`
local n = redis.call("INCR", KEYS[1])
if n == 1 then redis.call("PEXPIRE", KEYS[1], ARGV[1]) end
local ttl = redis.call("PTTL", KEYS[1])
if ttl < 0 then redis.call("PEXPIRE", KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
`)

// Incr implements broker.CounterStore.
func (s *Store) Incr(ctx context.Context, key string, window time.Duration) (int, time.Duration, error) {
	var res []int64
	err := s.guard(ctx, func(ctx context.Context) (err error) {
		res, err = incr.Run(ctx, s.client, []string{s.prefix + key}, window.Milliseconds()).Int64Slice()
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	return int(res[0]), time.Duration(res[1]) * time.Millisecond, nil
}

// Get implements broker.CounterStore.
func (s *Store) Get(ctx context.Context, key string) (int, time.Duration, error) {
	var get *redis.StringCmd
	var ttl *redis.DurationCmd
	err := s.guard(ctx, func(ctx context.Context) error {
		pipe := s.client.Pipeline()
		get = pipe.Get(ctx, s.prefix+key)
		ttl = pipe.PTTL(ctx, s.prefix+key)
		_, err := pipe.Exec(ctx)
		return err
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, 0, err
	}
	n, err := get.Int()
	if errors.Is(err, redis.Nil) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	return n, max(ttl.Val(), 0), nil
}

// decr takes one back from a counter that exists and is above 0.
var decr = redis.NewScript(`
local n = tonumber(redis.call("GET", KEYS[1]))
if n and n > 0 then return redis.call("DECR", KEYS[1]) end
return 0
`)

// Decr implements broker.CounterStore.
func (s *Store) Decr(ctx context.Context, key string) error {
	return s.guard(ctx, func(ctx context.Context) error { return decr.Run(ctx, s.client, []string{s.prefix + key}).Err() })
}

// Mark implements broker.CounterStore.
func (s *Store) Mark(ctx context.Context, key string, window time.Duration) error {
	return s.guard(ctx, func(ctx context.Context) error { return s.client.Set(ctx, s.prefix+key, 1, window).Err() })
}

// Marked implements broker.CounterStore.
func (s *Store) Marked(ctx context.Context, key string) (bool, error) {
	var n int64
	err := s.guard(ctx, func(ctx context.Context) (err error) {
		n, err = s.client.Exists(ctx, s.prefix+key).Result()
		return err
	})
	return n > 0, err
}

func hashed(kind, v string) string {
	sum := sha256.Sum256([]byte(v))
	return kind + ":" + hex.EncodeToString(sum[:16])
}
