package broker_test

import (
	"context"
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
)

func TestFileRevocations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "revocations.json")
	r, err := broker.OpenFileRevocations(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	if err := r.RevokeID(ctx, "jti-1", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := r.RevokeID(ctx, "old", now.Add(-time.Second)); err != nil { // already past: dropped at the next edit
		t.Fatal(err)
	}
	if err := r.RevokeSubject(ctx, "bob", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// Another process (the broker) reads the file.
	other, err := broker.OpenFileRevocations(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		jti, sub string
		issued   time.Time
		want     bool
	}{
		{"jti-1", "alice", now, true},
		{"jti-2", "alice", now, false},
		{"old", "alice", now, false},
		{"x", "bob", now.Add(-time.Minute), true},
		{"y", "bob", now.Add(time.Minute), false},
	} {
		if got, _ := other.Revoked(ctx, tc.jti, tc.sub, tc.issued); got != tc.want {
			t.Errorf("%+v: revoked %v", tc, got)
		}
	}
}

// failingRevocations is a store that cannot answer (Redis down): a fake,
// since the point is an outage on demand.
type failingRevocations struct{}

func (failingRevocations) Revoked(context.Context, string, string, time.Time) (bool, error) {
	return false, errors.New("connection refused")
}
func (failingRevocations) RevokeID(context.Context, string, time.Time) error { return nil }
func (failingRevocations) RevokeSubject(context.Context, string, time.Time, time.Time) error {
	return nil
}

func TestRevokedRefreshTokenIsRefused(t *testing.T) {
	store, err := broker.OpenFileRevocations(filepath.Join(t.TempDir(), "revocations.json"))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *broker.Options) { o.Revocations = store })
	a := f.get(t, "service="+svcName+"&offline_token=true", "Authorization", basic("alice", "alice-secret"))
	refresh, _ := a.body["refresh_token"].(string)
	grant := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "service": {svcName}}
	if got := f.post(t, grant); got.status != 200 {
		t.Fatalf("refresh before revocation: %d %s", got.status, got.raw)
	}
	if err := store.RevokeSubject(context.Background(), "alice", time.Now().Add(time.Second), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	got := f.post(t, grant)
	if got.status != 401 || !strings.Contains(got.raw, "revoked") {
		t.Fatalf("refresh after revocation: %d %s", got.status, got.raw)
	}
}

// TestRevocationStoreThatCannotAnswerFailsTheRefresh: a store that cannot
// say whether a token was revoked never lets it through (the Redis store
// answers from its synced copy during an outage, so this is a store that has
// nothing at all to answer from).
func TestRevocationStoreThatCannotAnswerFailsTheRefresh(t *testing.T) {
	f := newFixture(t, func(o *broker.Options) { o.Revocations = failingRevocations{} })
	a := f.get(t, "service="+svcName+"&offline_token=true", "Authorization", basic("alice", "alice-secret"))
	refresh, _ := a.body["refresh_token"].(string)
	got := f.post(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "service": {svcName}})
	if got.status != 503 || !strings.Contains(got.raw, "revocation list unavailable") {
		t.Fatalf("refresh with the store down: %d %s, want 503", got.status, got.raw)
	}
}
