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
