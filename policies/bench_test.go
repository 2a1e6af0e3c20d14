package policies_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/policies"
	"github.com/tollgate/tollgate/scope"
)

// defaultPolicyWith compiles the shipped default policy over generated data:
// users users spread over projects projects, each a developer somewhere.
func defaultPolicyWith(b *testing.B, users, projects int) *policies.Policy {
	b.Helper()
	p, err := policies.Compile(context.Background(), defaultBundleWith(b, users, projects), policies.DefaultQuery)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// defaultBundleWith is the bundle defaultPolicyWith compiles.
func defaultBundleWith(b *testing.B, users, projects int) *bundles.Bundle {
	b.Helper()
	bundle, err := bundles.LoadFS(policies.DefaultFS(), "default")
	if err != nil {
		b.Fatal(err)
	}
	proj := map[string]any{}
	for p := range projects {
		members := map[string]any{}
		for u := p; u < users; u += projects {
			members[fmt.Sprintf("user%d", u)] = "developer"
		}
		proj[fmt.Sprintf("project%d", p)] = map[string]any{
			"public": p%10 == 0, "members": members, "groups": map[string]any{"group" + fmt.Sprint(p): "guest"},
		}
	}
	bundle.Data = map[string]any{"registry": map[string]any{
		"projects":      proj,
		"system_admins": map[string]any{"users": []any{"admin"}, "groups": []any{"registry-admins"}},
	}}
	bundle.Revision = fmt.Sprintf("bench-%d-%d", users, projects)
	return bundle
}

func benchInput(user, project int) authz.Input {
	return authz.Input{
		Service:  "registry.test",
		Identity: identity.Identity{Subject: fmt.Sprintf("user%d", user), Connector: "local", Groups: []string{"dev"}, Claims: map[string]any{}},
		Scopes:   []scope.Scope{{Type: "repository", Name: fmt.Sprintf("project%d/app", project), Actions: []string{"pull", "push"}}},
	}
}

// BenchmarkDefaultPolicy measures one decision of the default policy, from
// the cache and evaluated, with 100 and 10,000 users over 1,000 projects.
func BenchmarkDefaultPolicy(b *testing.B) {
	for _, users := range []int{100, 10_000} {
		p := defaultPolicyWith(b, users, 1000)
		benchCachedAndNot(b, users, func(b *testing.B, cacheSize int, ttl time.Duration) authz.Authorizer {
			e := policies.NewEngine(cacheSize, ttl)
			e.Swap(p)
			return e
		})
	}
}

// benchCachedAndNot measures one decision of the engine open returns with
// no cache (users=N/uncached) and from its cache (users=N/cached), for
// the last of users.
func benchCachedAndNot(b *testing.B, users int, open func(b *testing.B, cacheSize int, ttl time.Duration) authz.Authorizer) {
	ctx := context.Background()
	in := benchInput(users-1, (users-1)%1000)
	b.Run(fmt.Sprintf("users=%d/uncached", users), func(b *testing.B) {
		e := open(b, 0, 0)
		b.ReportAllocs()
		for b.Loop() {
			d, err := e.Authorize(ctx, in)
			if err != nil || !d.Allowed[0]["push"] {
				b.Fatalf("decision %+v, %v", d, err)
			}
		}
	})
	b.Run(fmt.Sprintf("users=%d/cached", users), func(b *testing.B) {
		e := open(b, 1000, time.Minute)
		_, _ = e.Authorize(ctx, in)
		b.ReportAllocs()
		for b.Loop() {
			d, err := e.Authorize(ctx, in)
			if err != nil || !d.Cached {
				b.Fatalf("decision %+v, %v", d, err)
			}
		}
	})
}

// BenchmarkDefaultPolicyDistinct measures the evaluated decision when every
// request differs (issue 20): users cycle over all users, each asking for a
// new repository of a project it is a member of, with 1,000 projects in
// data. The engine has no cache: what is left is what a cache miss costs.
func BenchmarkDefaultPolicyDistinct(b *testing.B) {
	ctx := context.Background()
	for _, users := range []int{100, 10_000} {
		p := defaultPolicyWith(b, users, 1000)
		b.Run(fmt.Sprintf("users=%d", users), func(b *testing.B) {
			e := policies.NewEngine(0, 0)
			e.Swap(p)
			inputs := make([]authz.Input, 10_000)
			for i := range inputs {
				u := i % users
				inputs[i] = benchInput(u, u%1000)
				inputs[i].Scopes[0].Name = fmt.Sprintf("project%d/repo%d", u%1000, i)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				d, err := e.Authorize(ctx, inputs[i%len(inputs)])
				if err != nil || !d.Allowed[0]["push"] {
					b.Fatalf("decision %+v, %v", d, err)
				}
				i++
			}
		})
	}
}

// openDefaultOPA serves the same policy and data as defaultPolicyWith from
// a file:// bundle directory, through OPA's plugin manager (policies.OPA).
func openDefaultOPA(b *testing.B, bundle *bundles.Bundle, cacheSize int, ttl time.Duration) *policies.OPA {
	b.Helper()
	dir := b.TempDir()
	src, err := fs.ReadFile(policies.DefaultFS(), "authz.rego")
	if err != nil {
		b.Fatal(err)
	}
	data, err := json.Marshal(bundle.Data)
	if err != nil {
		b.Fatal(err)
	}
	manifest := fmt.Sprintf(`{"revision": %q}`, bundle.Revision)
	for name, body := range map[string][]byte{"authz.rego": src, "data.json": data, ".manifest": []byte(manifest)} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	doc := fmt.Sprintf("bundles:\n  tollgate: {resource: 'file://%s'}\n", dir)
	e, err := policies.OpenOPA([]byte(doc), policies.OPAOptions{ID: "bench", CacheSize: cacheSize, CacheTTL: ttl,
		PersistenceDirectory: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := e.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Stop(ctx) })
	for deadline := time.Now().Add(10 * time.Second); !e.Ready(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("bundle not activated")
		}
	}
	return e
}

// BenchmarkDefaultPolicyOPA is BenchmarkDefaultPolicy on the OPA path: the
// same policy, data and inputs, served as a local bundle by OPA's plugins.
func BenchmarkDefaultPolicyOPA(b *testing.B) {
	for _, users := range []int{100, 10_000} {
		bundle := defaultBundleWith(b, users, 1000)
		benchCachedAndNot(b, users, func(b *testing.B, cacheSize int, ttl time.Duration) authz.Authorizer {
			return openDefaultOPA(b, bundle, cacheSize, ttl)
		})
	}
}
