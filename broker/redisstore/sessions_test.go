package redisstore_test

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/broker/redisstore"
	"github.com/tollgate/tollgate/test/redistest"
)

// Both session stores keep the same promises: a revoked session is never
// brought back by an update, a use never overwrites a re-validation, and
// one holder of a session's lock at a time.
func TestSessionStores(t *testing.T) {
	srv := redistest.Start(t)
	rs := redisstore.New(redisstore.Options{Addr: srv.Addr()})
	defer rs.Close()
	stores := map[string]func() broker.SessionStore{
		"file":  func() broker.SessionStore { return broker.NewFileSessions(filepath.Join(t.TempDir(), "sessions.json")) },
		"redis": func() broker.SessionStore { return rs.Sessions() },
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) { sessionStoreContract(t, open()) })
	}
}

func sessionStoreContract(t *testing.T, st broker.SessionStore) {
	ctx := context.Background()
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	a := &broker.Session{ID: "A" + t.Name(), Subject: "dana", Connector: "sso", Groups: []string{"dev"}, Refresh: []byte{1, 2, 3},
		Created: t0, LastUsed: t0, LastValidated: t0}
	b := &broker.Session{ID: "B" + t.Name(), Subject: "erin", Created: t0.Add(time.Second), LastUsed: t0, LastValidated: t0}
	for _, s := range []*broker.Session{b, a} {
		if err := st.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := st.Get(ctx, a.ID); err != nil || got == nil || got.Subject != "dana" || string(got.Refresh) != "\x01\x02\x03" || got.Groups[0] != "dev" {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if got, err := st.Get(ctx, "nobody"); err != nil || got != nil {
		t.Fatalf("Get of an unknown id = %+v, %v", got, err)
	}
	// A use recorded after a re-validation read the session keeps both.
	stale, _ := st.Get(ctx, a.ID)
	stale.Refresh, stale.LastValidated = []byte{9}, t0.Add(time.Hour)
	if err := st.Touch(ctx, a.ID, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if ok, err := st.Update(ctx, stale); !ok || err != nil {
		t.Fatalf("Update = %v, %v", ok, err)
	}
	got, _ := st.Get(ctx, a.ID)
	if string(got.Refresh) != "\x09" || !got.LastValidated.Equal(t0.Add(time.Hour)) || !got.LastUsed.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("after Touch and Update: refresh %v, validated %v, used %v", got.Refresh, got.LastValidated, got.LastUsed)
	}
	list, err := st.List(ctx)
	if err != nil || len(list) != 2 || list[0].ID != a.ID || list[1].ID != b.ID {
		t.Fatalf("List = %v, %v (want %s then %s)", list, err, a.ID, b.ID)
	}
	if n, err := broker.RevokeUser(ctx, st, "dana"); err != nil || n != 1 {
		t.Fatalf("RevokeUser = %d, %v", n, err)
	}
	if ok, err := st.Update(ctx, got); ok || err != nil {
		t.Fatalf("Update of a revoked session = %v, %v: it must stay revoked", ok, err)
	}
	if got, _ := st.Get(ctx, a.ID); got != nil {
		t.Fatal("a revoked session came back")
	}
	if err := st.Delete(ctx, a.ID); err != nil {
		t.Fatalf("deleting a gone session: %v", err)
	}

	var holders, most atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock, err := st.Lock(ctx, b.ID)
			if err != nil {
				t.Error(err)
				return
			}
			n := holders.Add(1)
			if n > most.Load() {
				most.Store(n)
			}
			time.Sleep(20 * time.Millisecond)
			holders.Add(-1)
			unlock()
		}()
	}
	wg.Wait()
	if most.Load() != 1 {
		t.Fatalf("%d holders of one session's lock at once", most.Load())
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	unlock, _ := st.Lock(ctx, b.ID)
	if _, err := st.Lock(short, b.ID); err == nil {
		t.Fatal("a second holder while the lock is held")
	}
	unlock()
}
