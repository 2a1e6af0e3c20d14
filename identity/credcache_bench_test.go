package identity_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/identity/htpasswd"
	"github.com/tollgate/tollgate/identity/identitytest"
)

// BenchmarkCredentialCacheHit is one lookup of a remembered password, alone
// and from every core at once (where lock contention in the cache shows).
func BenchmarkCredentialCacheHit(b *testing.B) {
	c := identity.NewCredentialCache(10_000, time.Minute)
	c.Put("local", "alice", "alice-secret", identity.Identity{Subject: "alice", Connector: "local"})
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := c.Get("local", "alice", "alice-secret"); !ok {
				b.Fatal("miss")
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, ok := c.Get("local", "alice", "alice-secret"); !ok {
					b.Error("miss")
					return
				}
			}
		})
	})
}

// BenchmarkChainLoginCached is a repeated login of a bcrypt cost-10 user: the
// whole identity side of the cached password path.
func BenchmarkChainLoginCached(b *testing.B) {
	file := filepath.Join(b.TempDir(), "htpasswd")
	if err := htpasswd.Set(file, "alice", "alice-secret", 10); err != nil {
		b.Fatal(err)
	}
	f, err := htpasswd.Open(file)
	if err != nil {
		b.Fatal(err)
	}
	chain := identity.NewChain([]identity.Connector{identitytest.Connector(b, "local", f)}, identity.NewCredentialCache(10_000, time.Minute))
	ctx := context.Background()
	if _, ok, err := chain.Login(ctx, "alice", "alice-secret"); !ok || err != nil {
		b.Fatalf("login: %v %v", ok, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, _ := chain.Login(ctx, "alice", "alice-secret"); !ok {
			b.Fatal("login failed")
		}
	}
}
