package policies_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/policies"
	"github.com/tollgate/tollgate/scope"
)

// compile builds a policy from Rego source in a temporary bundle directory.
func compile(t testing.TB, rego string) *policies.Policy {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte(rego), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := bundles.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policies.Compile(context.Background(), b, policies.DefaultQuery)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const pullForAlice = `package registry.authz
allowed contains {"type": s.type, "name": s.name, "action": "pull"} if {
	input.identity.subject == "alice"
	some s in input.scopes
}`

const pushForAlice = `package registry.authz
allowed contains {"type": s.type, "name": s.name, "action": "push"} if {
	input.identity.subject == "alice"
	some s in input.scopes
}`

func input(subject string) authz.Input {
	return authz.Input{
		Service:  "registry.test",
		Identity: identity.Identity{Subject: subject, Groups: []string{}},
		Scopes:   []scope.Scope{{Type: "repository", Name: "team/app", Actions: []string{"pull", "push"}}},
	}
}

func TestEngineCachesDecisionsPerRevision(t *testing.T) {
	e := policies.NewEngine(100, time.Minute)
	ctx := context.Background()
	if _, err := e.Authorize(ctx, input("alice")); err != authz.ErrNoPolicy {
		t.Fatalf("no policy: err = %v, want ErrNoPolicy", err)
	}
	e.Swap(compile(t, pullForAlice))

	d, err := e.Authorize(ctx, input("alice"))
	if err != nil || d.Cached || !d.Allowed[0]["pull"] || d.Allowed[0]["push"] {
		t.Fatalf("first decision: %+v %v", d, err)
	}
	d, err = e.Authorize(ctx, input("alice"))
	if err != nil || !d.Cached || !d.Allowed[0]["pull"] {
		t.Fatalf("second decision not cached: %+v %v", d, err)
	}
	if d, _ := e.Authorize(ctx, input("bob")); d.Cached || d.Allowed[0] != nil {
		t.Fatalf("bob: %+v", d)
	}

	// A new revision: the cached pull decision must not survive.
	e.Swap(compile(t, pushForAlice))
	d, err = e.Authorize(ctx, input("alice"))
	if err != nil || d.Cached || d.Allowed[0]["pull"] || !d.Allowed[0]["push"] {
		t.Fatalf("after swap: %+v %v", d, err)
	}
}

func TestEngineCacheEntriesExpire(t *testing.T) {
	e := policies.NewEngine(100, 50*time.Millisecond)
	e.Swap(compile(t, pullForAlice))
	ctx := context.Background()
	_, _ = e.Authorize(ctx, input("alice"))
	time.Sleep(120 * time.Millisecond)
	if d, _ := e.Authorize(ctx, input("alice")); d.Cached {
		t.Fatal("decision served from cache after its TTL")
	}
}

func TestEngineCacheOff(t *testing.T) {
	e := policies.NewEngine(0, time.Minute)
	e.Swap(compile(t, pullForAlice))
	ctx := context.Background()
	for range 2 {
		if d, _ := e.Authorize(ctx, input("alice")); d.Cached || !d.Allowed[0]["pull"] {
			t.Fatalf("cache off: %+v", d)
		}
	}
}

func TestEngineCacheKeyCoversIdentity(t *testing.T) {
	e := policies.NewEngine(100, time.Minute)
	e.Swap(compile(t, `package registry.authz
allowed contains {"type": s.type, "name": s.name, "action": "pull"} if {
	"dev" in input.identity.groups
	input.identity.claims.team == "a"
	some s in input.scopes
}`))
	ctx := context.Background()
	in := input("x")
	in.Identity.Groups = []string{"dev"}
	in.Identity.Claims = map[string]any{"team": "a"}
	if d, _ := e.Authorize(ctx, in); !d.Allowed[0]["pull"] {
		t.Fatalf("group dev, team a: %+v", d)
	}
	in.Identity.Claims = map[string]any{"team": "b"}
	if d, _ := e.Authorize(ctx, in); d.Cached || d.Allowed[0]["pull"] {
		t.Fatalf("other claim answered from cache: %+v", d)
	}
	in.Identity.Claims = map[string]any{"team": "a"}
	in.Identity.Groups = []string{"ops"}
	if d, _ := e.Authorize(ctx, in); d.Cached || d.Allowed[0]["pull"] {
		t.Fatalf("other group answered from cache: %+v", d)
	}
}

func TestUndefinedDecisionDenies(t *testing.T) {
	e := policies.NewEngine(100, time.Minute)
	// allowed is defined, but only for another package shape of input.
	e.Swap(compile(t, `package registry.authz
allowed contains x if {
	x := input.nothing.here
}`))
	d, err := e.Authorize(context.Background(), input("alice"))
	if err != nil || d.Allowed[0] != nil {
		t.Fatalf("undefined: %+v %v", d, err)
	}
}

func TestCompileRefusesPolicyWithoutAllowedRule(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.rego"), []byte("package registry.other\nallowed := true\n"), 0o644)
	b, err := bundles.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := policies.Compile(context.Background(), b, policies.DefaultQuery); err == nil {
		t.Fatal("compiled a bundle without data.registry.authz.allowed")
	}
}

func TestPoliciesThatReadTheClientOrTheClockAreNeverCached(t *testing.T) {
	byIP := compile(t, `package registry.authz
allowed contains {"type": s.type, "name": s.name, "action": "pull"} if {
	net.cidr_contains("10.0.0.0/8", input.client.ip)
	some s in input.scopes
}`)
	if r := byIP.UncacheableReason(); !strings.Contains(r, "reads input.client") {
		t.Fatalf("reason %q", r)
	}
	e := policies.NewEngine(100, time.Minute)
	e.Swap(byIP)
	ctx := context.Background()
	inside, outside := input("alice"), input("alice")
	inside.Client.IP, outside.Client.IP = "10.1.2.3", "192.0.2.1"
	for range 2 { // a cached decision for one address must not answer the other
		if d, _ := e.Authorize(ctx, inside); !d.Allowed[0]["pull"] || d.Cached {
			t.Fatalf("inside: %+v", d)
		}
		if d, _ := e.Authorize(ctx, outside); d.Allowed[0]["pull"] || d.Cached {
			t.Fatalf("outside: %+v", d)
		}
	}

	clock := compile(t, `package registry.authz
allowed contains {"type": s.type, "name": s.name, "action": "pull"} if {
	time.clock(time.now_ns())[0] < 25
	some s in input.scopes
}`)
	if r := clock.UncacheableReason(); !strings.Contains(r, "time.now_ns") {
		t.Fatalf("reason %q", r)
	}
	whole := compile(t, `package registry.authz
allowed contains x if { some x in f(input) }
f(i) := {{"type": s.type, "name": s.name, "action": "pull"} | some s in i.scopes}`)
	if whole.UncacheableReason() == "" {
		t.Fatal("a policy passing the whole input on is cached")
	}
	if r := compile(t, pullForAlice).UncacheableReason(); r != "" {
		t.Fatalf("a policy of identity and scopes only is uncacheable: %s", r)
	}
}

func TestTheDefaultPolicyIsCacheable(t *testing.T) {
	b, err := bundles.LoadFS(policies.DefaultFS(), "default")
	if err != nil {
		t.Fatal(err)
	}
	p, err := policies.Compile(context.Background(), b, policies.DefaultQuery)
	if err != nil {
		t.Fatal(err)
	}
	if r := p.UncacheableReason(); r != "" {
		t.Fatalf("the default policy would run without its decision cache: %s", r)
	}
}

// TestEngineReadsTokenTTLAndAllowedAsOPAWouldGiveThem: the decision comes
// from the query's OPA values, and token_ttl is left out of the query only
// when nothing can define it; a number from a rule or from data counts,
// anything else is ignored, and an allowed array counts as a set.
func TestEngineReadsTokenTTLAndAllowedAsOPAWouldGiveThem(t *testing.T) {
	for _, c := range []struct {
		name, rego string
		data       map[string]any
		ttl        time.Duration
		allowed    bool
	}{
		{"no token_ttl", pullForAlice, nil, 0, true},
		{"a rule", pullForAlice + "\ntoken_ttl := 300", nil, 5 * time.Minute, true},
		{"a fraction", pullForAlice + "\ntoken_ttl := 90.5", nil, 90500 * time.Millisecond, true},
		{"data only", pullForAlice, map[string]any{"registry": map[string]any{"authz": map[string]any{"token_ttl": 120}}}, 2 * time.Minute, true},
		{"a string", pullForAlice + "\ntoken_ttl := \"300\"", nil, 0, true},
		{"a set", pullForAlice + "\ntoken_ttl contains 300", nil, 0, true},
		{"zero", pullForAlice + "\ntoken_ttl := 0", nil, 0, true},
		{"allowed as an array", "package registry.authz\nallowed := [{\"type\": \"repository\", \"name\": \"team/app\", \"action\": \"pull\"}]", nil, 0, true},
		{"allowed items without an action", "package registry.authz\nallowed contains {\"type\": \"repository\", \"name\": \"team/app\", \"action\": 1}", nil, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte(c.rego), 0o644); err != nil {
				t.Fatal(err)
			}
			b, err := bundles.LoadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			b.Data = c.data
			p, err := policies.Compile(context.Background(), b, policies.DefaultQuery)
			if err != nil {
				t.Fatal(err)
			}
			e := policies.NewEngine(0, 0)
			e.Swap(p)
			d, err := e.Authorize(context.Background(), input("alice"))
			if err != nil {
				t.Fatal(err)
			}
			if d.TokenTTL != c.ttl || d.Allowed[0]["pull"] != c.allowed {
				t.Fatalf("decision %+v, want ttl %v, pull %v", d, c.ttl, c.allowed)
			}
		})
	}
}
