// Package redisstore keeps the state several broker replicas must share in
// Redis: the failed-login counters of the throttle and the refresh-token
// revocations. Keys hold hashes, never user names or addresses.
package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Store implements broker.CounterStore and broker.Revocations on Redis.
type Store struct {
	client *redis.Client
	prefix string
	// downUntil (unix nanoseconds): after a failure, calls fail at once for
	// a moment instead of each waiting for a timeout, so a Redis outage
	// does not slow every token request.
	downUntil atomic.Int64
}

// ErrDown is returned while Redis is considered down after a failure.
var ErrDown = errors.New("redis unavailable (retrying shortly)")

// backoff is how long calls fail fast after a failure.
const backoff = 2 * time.Second

// guard runs a call unless Redis failed a moment ago, and notes failures.
func (s *Store) guard(call func() error) error {
	if time.Now().UnixNano() < s.downUntil.Load() {
		return ErrDown
	}
	err := call()
	if err != nil && !errors.Is(err, redis.Nil) {
		s.downUntil.Store(time.Now().Add(backoff).UnixNano())
	}
	return err
}

// Options configure the connection.
type Options struct {
	Addr     string // host:port
	Password string
	DB       int
	// Prefix starts every key (default "tollgate:"), so brokers of several
	// deployments can share one Redis.
	Prefix  string
	Timeout time.Duration
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
	return &Store{
		client: redis.NewClient(&redis.Options{
			Addr: o.Addr, Password: o.Password, DB: o.DB,
			DialTimeout: o.Timeout, ReadTimeout: o.Timeout, WriteTimeout: o.Timeout,
			MaxRetries: 1,
		}),
		prefix: o.Prefix,
	}
}

// Close releases the connections.
func (s *Store) Close() error { return s.client.Close() }

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error { return s.client.Ping(ctx).Err() }

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
	err := s.guard(func() (err error) {
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
	pipe := s.client.Pipeline()
	get := pipe.Get(ctx, s.prefix+key)
	ttl := pipe.PTTL(ctx, s.prefix+key)
	if err := s.guard(func() error { _, err := pipe.Exec(ctx); return err }); err != nil && !errors.Is(err, redis.Nil) {
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

// Mark implements broker.CounterStore.
func (s *Store) Mark(ctx context.Context, key string, window time.Duration) error {
	return s.guard(func() error { return s.client.Set(ctx, s.prefix+key, 1, window).Err() })
}

// Marked implements broker.CounterStore.
func (s *Store) Marked(ctx context.Context, key string) (bool, error) {
	var n int64
	err := s.guard(func() (err error) { n, err = s.client.Exists(ctx, s.prefix+key).Result(); return err })
	return n > 0, err
}

func hashed(kind, v string) string {
	sum := sha256.Sum256([]byte(v))
	return kind + ":" + hex.EncodeToString(sum[:16])
}

// Revoked implements broker.Revocations.
func (s *Store) Revoked(ctx context.Context, jti, subject string, issuedAt time.Time) (bool, error) {
	var vals []any
	err := s.guard(func() (err error) {
		vals, err = s.client.MGet(ctx, s.prefix+hashed("rev-id", jti), s.prefix+hashed("rev-sub", subject)).Result()
		return err
	})
	if err != nil {
		return false, err
	}
	if vals[0] != nil {
		return true, nil
	}
	if v, ok := vals[1].(string); ok {
		before, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return false, err
		}
		return issuedAt.Unix() < before, nil
	}
	return false, nil
}

// RevokeID implements broker.Revocations.
func (s *Store) RevokeID(ctx context.Context, jti string, until time.Time) error {
	return s.guard(func() error {
		return s.client.Set(ctx, s.prefix+hashed("rev-id", jti), 1, time.Until(until)+time.Minute).Err()
	})
}

// RevokeSubject implements broker.Revocations.
func (s *Store) RevokeSubject(ctx context.Context, subject string, at, until time.Time) error {
	return s.guard(func() error {
		return s.client.Set(ctx, s.prefix+hashed("rev-sub", subject), strconv.FormatInt(at.Unix(), 10), time.Until(until)+time.Minute).Err()
	})
}
