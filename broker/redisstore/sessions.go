package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/broker"
)

// Sessions implements broker.SessionStore on the Store's Redis, so every
// replica sees every login session and its revocation. A session is a hash:
// "data" (the session as JSON, its provider refresh token sealed) and
// "last_used" (unix nanoseconds, written alone so recording a use never
// overwrites a re-validation); an index set lists the ids.
type Sessions struct{ s *Store }

// Sessions is the store's session view.
func (s *Store) Sessions() *Sessions { return &Sessions{s: s} }

var _ broker.SessionStore = (*Sessions)(nil)

func (ss *Sessions) key(id string) string     { return ss.s.prefix + "session:" + id }
func (ss *Sessions) lockKey(id string) string { return ss.s.prefix + "session-lock:" + id }
func (ss *Sessions) index() string            { return ss.s.prefix + "sessions" }

// Get implements broker.SessionStore.
func (ss *Sessions) Get(ctx context.Context, id string) (*broker.Session, error) {
	var fields map[string]string
	err := ss.s.guard(ctx, func(ctx context.Context) (err error) {
		fields, err = ss.s.client.HGetAll(ctx, ss.key(id)).Result()
		return err
	})
	if err != nil || fields["data"] == "" {
		return nil, err
	}
	return decodeSession(fields)
}

func decodeSession(fields map[string]string) (*broker.Session, error) {
	var sess broker.Session
	if err := json.Unmarshal([]byte(fields["data"]), &sess); err != nil {
		return nil, err
	}
	if n, err := strconv.ParseInt(fields["last_used"], 10, 64); err == nil && n > sess.LastUsed.UnixNano() {
		sess.LastUsed = time.Unix(0, n).UTC()
	}
	return &sess, nil
}

// Create implements broker.SessionStore.
func (ss *Sessions) Create(ctx context.Context, sess *broker.Session) error {
	data, err := json.Marshal(sess)
	if err != nil {
		return err
	}
	return ss.s.guard(ctx, func(ctx context.Context) error {
		_, err := ss.s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, ss.key(sess.ID), "data", data, "last_used", sess.LastUsed.UnixNano())
			if !sess.Expires.IsZero() {
				p.PExpireAt(ctx, ss.key(sess.ID), sess.Expires)
			}
			p.SAdd(ctx, ss.index(), sess.ID)
			return nil
		})
		return err
	})
}

// update replaces the data of a session that exists.
var update = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 0 then return 0 end
redis.call("HSET", KEYS[1], "data", ARGV[1])
return 1
`)

// Update implements broker.SessionStore.
func (ss *Sessions) Update(ctx context.Context, sess *broker.Session) (bool, error) {
	data, err := json.Marshal(sess)
	if err != nil {
		return false, err
	}
	var n int64
	err = ss.s.guard(ctx, func(ctx context.Context) (err error) {
		n, err = update.Run(ctx, ss.s.client, []string{ss.key(sess.ID)}, data).Int64()
		return err
	})
	return n == 1, err
}

// touch records a later use of a session that exists.
var touch = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 0 then return 0 end
local prev = tonumber(redis.call("HGET", KEYS[1], "last_used") or "0")
if tonumber(ARGV[1]) > prev then redis.call("HSET", KEYS[1], "last_used", ARGV[1]) end
return 1
`)

// Touch implements broker.SessionStore.
func (ss *Sessions) Touch(ctx context.Context, id string, at time.Time) error {
	return ss.s.guard(ctx, func(ctx context.Context) error {
		return touch.Run(ctx, ss.s.client, []string{ss.key(id)}, at.UnixNano()).Err()
	})
}

// Delete implements broker.SessionStore.
func (ss *Sessions) Delete(ctx context.Context, id string) error {
	return ss.s.guard(ctx, func(ctx context.Context) error {
		_, err := ss.s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, ss.key(id))
			p.SRem(ctx, ss.index(), id)
			return nil
		})
		return err
	})
}

// List implements broker.SessionStore, oldest first.
func (ss *Sessions) List(ctx context.Context) ([]*broker.Session, error) {
	var ids []string
	err := ss.s.guard(ctx, func(ctx context.Context) (err error) {
		ids, err = ss.s.client.SMembers(ctx, ss.index()).Result()
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]*broker.Session, 0, len(ids))
	for _, id := range ids {
		sess, err := ss.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if sess != nil {
			out = append(out, sess)
			continue
		}
		// Expired in Redis: forget its id too.
		_ = ss.s.guard(ctx, func(ctx context.Context) error { return ss.s.client.SRem(ctx, ss.index(), id).Err() })
	}
	slices.SortFunc(out, func(a, b *broker.Session) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// lockTTL outlives one re-validation (its timeout is 30s): a replica that
// dies holding the lock stops blocking the session after it.
const lockTTL = 45 * time.Second

// unlock deletes the lock only while it is still the caller's.
var unlock = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0
`)

// Lock implements broker.SessionStore with SET NX PX: the replica that
// sets the key re-validates; the others poll until it is gone, then read
// the session it saved.
func (ss *Sessions) Lock(ctx context.Context, id string) (func(), error) {
	owner := rand.Text()
	for {
		var ok bool
		err := ss.s.guard(ctx, func(ctx context.Context) (err error) {
			ok, err = ss.s.client.SetNX(ctx, ss.lockKey(id), owner, lockTTL).Result()
			return err
		})
		if err != nil {
			return nil, err
		}
		if ok {
			return func() {
				_ = ss.s.guard(context.Background(), func(ctx context.Context) error {
					return unlock.Run(ctx, ss.s.client, []string{ss.lockKey(id)}, owner).Err()
				})
			}, nil
		}
		select {
		case <-ctx.Done():
			return nil, errors.Join(errors.New("waiting for another replica's re-validation"), ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}
