package broker_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/identity/htpasswd"
	"github.com/tollgate/tollgate/identity/identitytest"
	"github.com/tollgate/tollgate/policies"
)

// benchToken drives the handler in-process (no network) with one request shape.
func benchToken(b *testing.B, f *fixture, query, auth string) {
	b.Helper()
	req := httptest.NewRequest(http.MethodGet, "/token?"+query, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.RemoteAddr = "127.0.0.1:40000"
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		f.srv.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

const benchQuery = "service=registry.test&scope=repository:team/app:pull,push"

// BenchmarkTokenHandler measures a whole token request: parse, authenticate,
// authorize, sign (ES256), encode, log (discarded).
func BenchmarkTokenHandler(b *testing.B) {
	b.Run("anonymous/cached", func(b *testing.B) {
		benchToken(b, newFixture(b), "service=registry.test&scope=repository:public/x:pull", "")
	})
	b.Run("password/cached", func(b *testing.B) {
		benchToken(b, newFixture(b), benchQuery, basic("alice", "alice-secret"))
	})
	b.Run("password/decision-uncached", func(b *testing.B) {
		f := newFixture(b)
		e := policies.NewEngine(0, 0)
		e.Swap(f.engine.Current())
		f = newFixture(b, func(o *broker.Options) { o.Authorizer = e })
		benchToken(b, f, benchQuery, basic("alice", "alice-secret"))
	})
	b.Run("password/uncached-bcrypt-cost10", func(b *testing.B) {
		f := newFixture(b)
		if err := htpasswd.Set(f.htpasswd, "alice", "alice-secret", 10); err != nil {
			b.Fatal(err)
		}
		file, err := htpasswd.Open(f.htpasswd)
		if err != nil {
			b.Fatal(err)
		}
		e := policies.NewEngine(0, 0)
		e.Swap(f.engine.Current())
		f = newFixture(b, func(o *broker.Options) {
			o.Authenticator = identity.NewChain([]identity.Connector{identitytest.Connector(b, "local", file)}, nil)
			o.Authorizer = e
		})
		benchToken(b, f, benchQuery, basic("alice", "alice-secret"))
	})
}

func BenchmarkSign(b *testing.B) {
	for _, typ := range []broker.KeyType{broker.KeyEC, broker.KeyRSA} {
		b.Run(string(typ), func(b *testing.B) {
			dir := b.TempDir()
			genKey(b, dir, "k", typ, time.Now().Add(-time.Minute))
			ks, err := broker.LoadKeyDir(dir)
			if err != nil {
				b.Fatal(err)
			}
			f := newFixture(b, func(o *broker.Options) { o.Services[0].Keys = ks; o.Services[1].Keys = ks })
			benchToken(b, f, "service=registry.test&scope=repository:public/x:pull", "")
		})
	}
}
