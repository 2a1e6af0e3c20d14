package redisstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Revocations live in one Redis hash, a field per record ("id:<hash>" →
// "<until>", "sub:<hash>" → "<before>:<until>", unix seconds), and a version,
// a random value written with every change, so a sync reads the hash only
// when it changed. (Not a counter: a Redis that lost its data would count
// again from zero, and a replica that saw the same number before would miss
// the loss.) Records are only ever added (or dropped once expired), so
// each replica's copy is the union of what it has seen: a Redis that lost
// its data is filled again from the replicas' copies.
func (s *Store) revKey() string     { return s.prefix + "revocations" }
func (s *Store) versionKey() string { return s.prefix + "revocations:version" }

// revoke adds a record, drops the expired ones and bumps the version.
var revoke = redis.NewScript(`
redis.call("HSET", KEYS[1], ARGV[1], ARGV[2])
local all = redis.call("HGETALL", KEYS[1])
for i = 1, #all, 2 do
  local untilTime = tonumber(string.match(all[i+1], "(%d+)$"))
  if untilTime and untilTime < tonumber(ARGV[3]) then redis.call("HDEL", KEYS[1], all[i]) end
end
redis.call("SET", KEYS[2], ARGV[4])
return 0
`)

// Revoked implements broker.Revocations. A revocation this replica has
// seen answers at once; otherwise Redis is asked, and when it does not
// answer the copy synced from it decides (Status says it is stale).
func (s *Store) Revoked(ctx context.Context, jti, subject string, issuedAt time.Time) (bool, error) {
	idf, subf := "id:"+hashed("rev-id", jti), "sub:"+hashed("rev-sub", subject)
	if s.revs.revoked(idf, subf, issuedAt) {
		return true, nil
	}
	var vals []any
	err := s.guard(ctx, func(ctx context.Context) (err error) {
		vals, err = s.client.HMGet(ctx, s.revKey(), idf, subf).Result()
		return err
	})
	if err != nil {
		if s.revs.lastSync().IsZero() {
			// Nothing to answer from: fail the refresh rather than guess.
			return false, fmt.Errorf("redis: %w; no copy of the revocations yet", err)
		}
		return false, nil
	}
	fields := map[string]string{}
	for i, f := range []string{idf, subf} {
		if v, ok := vals[i].(string); ok {
			fields[f] = v
		}
	}
	s.revs.merge(fields, time.Now())
	return s.revs.revoked(idf, subf, issuedAt), nil
}

// RevokeID implements broker.Revocations.
func (s *Store) RevokeID(ctx context.Context, jti string, until time.Time) error {
	return s.add(ctx, "id:"+hashed("rev-id", jti), strconv.FormatInt(until.Add(time.Minute).Unix(), 10))
}

// RevokeSubject implements broker.Revocations.
func (s *Store) RevokeSubject(ctx context.Context, subject string, at, until time.Time) error {
	return s.add(ctx, "sub:"+hashed("rev-sub", subject), fmt.Sprintf("%d:%d", at.Unix(), until.Add(time.Minute).Unix()))
}

func (s *Store) add(ctx context.Context, field, value string) error {
	err := s.guard(ctx, func(ctx context.Context) error {
		return revoke.Run(ctx, s.client, []string{s.revKey(), s.versionKey()}, field, value, time.Now().Unix(), rand.Text()).Err()
	})
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	s.revs.merge(map[string]string{field: value}, time.Now())
	return nil
}

// Sync brings the copy of the revocations up to date with Redis, and writes
// back the records Redis lacks (it restarted without persistence, or was
// flushed, and a `token revoke` may already have written to it since).
func (s *Store) Sync(ctx context.Context) error {
	var version string
	err := s.guard(ctx, func(ctx context.Context) (err error) {
		version, err = s.client.Get(ctx, s.versionKey()).Result()
		return err
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	if err == nil && version == s.revs.seenVersion() {
		s.revs.synced.Store(time.Now().UnixNano())
		return nil
	}
	var all map[string]string
	err = s.guard(ctx, func(ctx context.Context) (err error) {
		all, err = s.client.HGetAll(ctx, s.revKey()).Result()
		return err
	})
	if err != nil {
		return err
	}
	now := time.Now()
	s.revs.merge(all, now)
	missing := map[string]string{}
	for f, v := range s.revs.snapshot(now) {
		if _, ok := all[f]; !ok {
			missing[f] = v
		}
	}
	if len(missing) > 0 {
		// The version this bumps makes every replica read the hash again.
		return s.refill(ctx, missing)
	}
	s.revs.setVersion(version)
	s.revs.synced.Store(now.UnixNano())
	return nil
}

// refill writes records Redis lacks, never overwriting a newer one.
func (s *Store) refill(ctx context.Context, records map[string]string) error {
	return s.guard(ctx, func(ctx context.Context) error {
		pipe := s.client.TxPipeline()
		for f, v := range records {
			pipe.HSetNX(ctx, s.revKey(), f, v)
		}
		pipe.Set(ctx, s.versionKey(), rand.Text(), 0)
		_, err := pipe.Exec(ctx)
		return err
	})
}

// Run syncs every interval until ctx ends.
func (s *Store) Run(ctx context.Context, every time.Duration) {
	s.revs.every.Store(int64(every))
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		_ = s.Sync(ctx) // a failure is logged once by health
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Status says whether the shared state is current: Stale when Redis does
// not answer or the revocations were not synced for three intervals.
type Status struct {
	Stale     bool
	DownSince time.Time // zero while Redis answers
	LastSync  time.Time // zero before the first sync
}

// Status reports the store's health (for /readyz and the metrics).
func (s *Store) Status() Status {
	st := Status{DownSince: s.health.since(), LastSync: s.revs.lastSync()}
	every := time.Duration(s.revs.every.Load())
	st.Stale = !st.DownSince.IsZero() || st.LastSync.IsZero() || (every > 0 && time.Since(st.LastSync) > 3*every)
	return st
}

// revocationCopy is this replica's copy of the revocations.
type revocationCopy struct {
	mu      sync.Mutex
	ids     map[string]int64 // field → until
	subs    map[string][2]int64
	version string
	synced  atomic.Int64 // unix nanoseconds of the last complete sync
	every   atomic.Int64 // the sync interval, once Run started
}

func (c *revocationCopy) init() {
	c.ids, c.subs = map[string]int64{}, map[string][2]int64{}
}

func (c *revocationCopy) revoked(idf, subf string, issuedAt time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.ids[idf]; ok {
		return true
	}
	sub, ok := c.subs[subf]
	return ok && issuedAt.Unix() < sub[0]
}

// merge adds records (Redis's encoding) and drops expired ones. A subject
// revoked twice keeps the later moment.
func (c *revocationCopy) merge(fields map[string]string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for f, v := range fields {
		switch {
		case strings.HasPrefix(f, "id:"):
			if until, err := strconv.ParseInt(v, 10, 64); err == nil {
				c.ids[f] = until
			}
		case strings.HasPrefix(f, "sub:"):
			b, u, _ := strings.Cut(v, ":")
			before, err1 := strconv.ParseInt(b, 10, 64)
			until, err2 := strconv.ParseInt(u, 10, 64)
			if err1 == nil && err2 == nil && before >= c.subs[f][0] {
				c.subs[f] = [2]int64{before, until}
			}
		}
	}
	for f, until := range c.ids {
		if until < now.Unix() {
			delete(c.ids, f)
		}
	}
	for f, r := range c.subs {
		if r[1] < now.Unix() {
			delete(c.subs, f)
		}
	}
}

// snapshot is the copy in Redis's encoding, without expired records.
func (c *revocationCopy) snapshot(now time.Time) map[string]string {
	c.merge(nil, now)
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]string, len(c.ids)+len(c.subs))
	for f, until := range c.ids {
		out[f] = strconv.FormatInt(until, 10)
	}
	for f, r := range c.subs {
		out[f] = fmt.Sprintf("%d:%d", r[0], r[1])
	}
	return out
}

func (c *revocationCopy) seenVersion() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

func (c *revocationCopy) setVersion(v string) {
	c.mu.Lock()
	c.version = v
	c.mu.Unlock()
}

func (c *revocationCopy) lastSync() time.Time {
	if n := c.synced.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// health remembers whether Redis answers, to log each change once.
type health struct {
	downSince atomic.Int64 // unix nanoseconds; 0 while Redis answers
}

func (h *health) failed(log *slog.Logger, err error) {
	if h.downSince.CompareAndSwap(0, time.Now().UnixNano()) {
		log.Warn("redis does not answer: failed logins are counted by this replica alone and refresh tokens are checked against the revocations last synced, until it does", "err", err)
	}
}

func (h *health) answered(log *slog.Logger) {
	if since := h.downSince.Swap(0); since != 0 {
		log.Info("redis answers again", "down_for", time.Since(time.Unix(0, since)).Round(time.Millisecond).String())
	}
}

func (h *health) since() time.Time {
	if n := h.downSince.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}
