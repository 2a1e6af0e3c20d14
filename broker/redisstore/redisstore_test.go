package redisstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/redisstore"
	"github.com/tollgate/tollgate/test/redistest"
)

var (
	_ broker.CounterStore = (*redisstore.Store)(nil)
	_ broker.Revocations  = (*redisstore.Store)(nil)
)

func TestCountersAgainstRedis(t *testing.T) {
	srv := redistest.Start(t)
	s := redisstore.New(redisstore.Options{Addr: srv.Addr()})
	defer s.Close()
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		n, left, err := s.Incr(ctx, "k", 300*time.Millisecond)
		if err != nil || n != i || left <= 0 || left > 300*time.Millisecond {
			t.Fatalf("incr %d: %d %v %v", i, n, left, err)
		}
	}
	if n, _, err := s.Get(ctx, "k"); err != nil || n != 3 {
		t.Fatalf("get: %d %v", n, err)
	}
	if n, _, err := s.Get(ctx, "absent"); err != nil || n != 0 {
		t.Fatalf("absent: %d %v", n, err)
	}
	if err := s.Decr(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if n, _, err := s.Get(ctx, "k"); err != nil || n != 2 {
		t.Fatalf("after decr: %d %v, want 2", n, err)
	}
	if err := s.Decr(ctx, "absent"); err != nil {
		t.Fatal(err)
	}
	if n, _, err := s.Get(ctx, "absent"); err != nil || n != 0 {
		t.Fatalf("decr of an absent key: %d %v, want it absent", n, err)
	}
	s.Incr(ctx, "k", 300*time.Millisecond)
	time.Sleep(350 * time.Millisecond)
	if n, _, _ := s.Get(ctx, "k"); n != 0 {
		t.Fatalf("the window did not end: %d", n)
	}
	if err := s.Mark(ctx, "m", time.Minute); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Marked(ctx, "m"); !ok || err != nil {
		t.Fatalf("marked: %v %v", ok, err)
	}

	srv.Stop()
	if _, _, err := s.Incr(ctx, "k", time.Minute); err == nil {
		t.Fatal("no error with redis down")
	}
	start := time.Now()
	if _, _, err := s.Incr(ctx, "k", time.Minute); !errors.Is(err, redisstore.ErrDown) || time.Since(start) > 50*time.Millisecond {
		t.Fatalf("right after a failure: %v after %v, want ErrDown at once", err, time.Since(start))
	}
	srv.Restart()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, _, err := s.Incr(ctx, "k", time.Minute)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestRevocationsAgainstRedis(t *testing.T) {
	srv := redistest.Start(t)
	s := redisstore.New(redisstore.Options{Addr: srv.Addr()})
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	if err := s.RevokeID(ctx, "jti-1", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeSubject(ctx, "bob", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		jti, subject string
		issued       time.Time
		want         bool
	}{
		{"jti-1", "alice", now, true},
		{"jti-2", "alice", now, false},
		{"jti-3", "bob", now.Add(-time.Minute), true},
		{"jti-4", "bob", now.Add(time.Minute), false},
	} {
		got, err := s.Revoked(ctx, tc.jti, tc.subject, tc.issued)
		if err != nil || got != tc.want {
			t.Errorf("%+v: %v %v", tc, got, err)
		}
	}
}

// TestCancelledCallerIsNotAnOutage: a caller whose request was cancelled
// (a client that reset its connection) still gets its call done, and the
// store does not take the cancellation for an outage.
func TestCancelledCallerIsNotAnOutage(t *testing.T) {
	srv := redistest.Start(t)
	s := redisstore.New(redisstore.Options{Addr: srv.Addr()})
	defer s.Close()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if n, _, err := s.Incr(cancelled, "k", time.Minute); err != nil || n != 1 {
		t.Fatalf("incr with a cancelled caller: %d %v, want 1 <nil>", n, err)
	}
	if n, _, err := s.Incr(context.Background(), "k", time.Minute); err != nil || n != 2 {
		t.Fatalf("next incr: %d %v, want 2 <nil> (no back-off after a caller's cancellation)", n, err)
	}
	if st := s.Status(); !st.DownSince.IsZero() {
		t.Fatalf("status after a cancelled caller: %+v", st)
	}
}

// TestRevocationsHoldThroughOutageAndDataLoss: a replica's synced copy
// answers while Redis is down, and refills a Redis that lost its data, so
// a replica that starts afterwards sees the revocation too.
func TestRevocationsHoldThroughOutageAndDataLoss(t *testing.T) {
	srv := redistest.Start(t)
	cli := redisstore.New(redisstore.Options{Addr: srv.Addr()}) // `token revoke`
	defer cli.Close()
	replica := redisstore.New(redisstore.Options{Addr: srv.Addr(), Timeout: 100 * time.Millisecond})
	defer replica.Close()
	ctx := context.Background()
	now := time.Now()
	if err := cli.RevokeID(ctx, "jti-1", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := cli.RevokeSubject(ctx, "bob", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := replica.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	check := func(s *redisstore.Store, when string) {
		t.Helper()
		for _, tc := range []struct {
			jti, subject string
			want         bool
		}{{"jti-1", "alice", true}, {"jti-2", "bob", true}, {"jti-3", "alice", false}} {
			if got, err := s.Revoked(ctx, tc.jti, tc.subject, now.Add(-time.Minute)); err != nil || got != tc.want {
				t.Errorf("%s: revoked(%s, %s) = %v %v, want %v", when, tc.jti, tc.subject, got, err, tc.want)
			}
		}
	}
	srv.Stop()
	check(replica, "redis down")
	if st := replica.Status(); !st.Stale || st.DownSince.IsZero() {
		t.Errorf("status with redis down: %+v, want stale", st)
	}

	srv.Restart() // empty: no persistence
	deadline := time.Now().Add(5 * time.Second)
	for replica.Sync(ctx) != nil || replica.Sync(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the replica does not sync with the restarted redis")
		}
		time.Sleep(100 * time.Millisecond)
	}
	fresh := redisstore.New(redisstore.Options{Addr: srv.Addr()})
	defer fresh.Close()
	check(fresh, "a new replica after redis lost its data")
	if st := replica.Status(); st.Stale && !st.DownSince.IsZero() {
		t.Errorf("status after the restart: %+v", st)
	}
}

// TestAReplicaWithoutACopyFailsClosed: a replica that never synced (it
// started while Redis was down) has nothing to check a refresh token
// against, and must not answer "not revoked".
func TestAReplicaWithoutACopyFailsClosed(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop()
	s := redisstore.New(redisstore.Options{Addr: srv.Addr(), Timeout: 100 * time.Millisecond})
	defer s.Close()
	if revoked, err := s.Revoked(context.Background(), "jti", "alice", time.Now()); err == nil {
		t.Fatalf("no copy and redis down: revoked=%v with no error, want an error", revoked)
	}
}

// TestRefillAfterRedisRestartsWithTheSameNumberOfChanges: Redis restarted
// empty and got as many revocations as before before a replica synced; the
// replica must still see that Redis lost its records and write them back.
func TestRefillAfterRedisRestartsWithTheSameNumberOfChanges(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	cli := redisstore.New(redisstore.Options{Addr: srv.Addr()})
	defer cli.Close()
	replica := redisstore.New(redisstore.Options{Addr: srv.Addr()})
	defer replica.Close()
	now := time.Now()
	if err := cli.RevokeSubject(ctx, "alice", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := replica.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	srv.Restart()
	cli2 := redisstore.New(redisstore.Options{Addr: srv.Addr()})
	defer cli2.Close()
	if err := cli2.RevokeSubject(ctx, "bob", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := replica.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	fresh := redisstore.New(redisstore.Options{Addr: srv.Addr()})
	defer fresh.Close()
	if revoked, err := fresh.Revoked(ctx, "jti", "alice", now.Add(-time.Minute)); err != nil || !revoked {
		t.Fatalf("alice's revocation after the restart: %v %v, want refilled by the replica", revoked, err)
	}
}
