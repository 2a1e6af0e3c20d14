package policies_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policies"
)

// TestEveryWayOfReadingTheClientTurnsTheCacheOff: the decision cache key
// holds no client address, so every way a policy can reach input.client
// must make its decisions uncacheable, and reading only the identity and the
// scopes must not.
func TestEveryWayOfReadingTheClientTurnsTheCacheOff(t *testing.T) {
	const grant = `allowed contains {"type": s.type, "name": s.name, "action": "pull"} if {
	%s
	some s in input.scopes
}`
	for _, c := range []struct {
		name, rule, imports string
		want                string // in the reason; "" means cacheable
	}{
		{"dotted", `startswith(input.client.ip, "10.")`, "", "reads input.client"},
		{"bracketed", `startswith(input["client"].ip, "10.")`, "", "reads input.client"},
		{"user agent", `not contains(input.client.user_agent, "curl")`, "", "reads input.client"},
		{"import", `startswith(c.ip, "10.")`, "import input.client as c", "reads input.client"},
		{"variable key", `some k; startswith(input[k].ip, "10.")`, "", "may be input.client"},
		{"computed key", `startswith(input[concat("", ["cli", "ent"])].ip, "10.")`, "", "may be input.client"},
		{"whole input", `object.get(input, ["client", "ip"], "") != ""`, "", "the whole input"},
		{"clock", `time.clock([time.now_ns(), "UTC"])[0] < 18`, "", "time.now_ns"},
		{"random", `rand.intn("x", 10) < 5`, "", "rand.intn"},
		{"identity and scopes only", `input.identity.subject == "alice"; input.scopes[0].name != ""`, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := "package registry.authz\n" + c.imports + "\n" + strings.Replace(grant, "%s", c.rule, 1)
			p := compile(t, src)
			got := p.UncacheableReason()
			switch {
			case c.want == "" && got != "":
				t.Fatalf("uncacheable (%s), want cacheable", got)
			case c.want != "" && !strings.Contains(got, c.want):
				t.Fatalf("reason %q, want one with %q", got, c.want)
			}
		})
	}
}

// TestUncacheablePolicyDecidesEveryRequestAfresh: with a decision cache
// configured, a policy that reads the client address answers each address
// on its own, never from the cache.
func TestUncacheablePolicyDecidesEveryRequestAfresh(t *testing.T) {
	p := compile(t, `package registry.authz
allowed contains {"type": s.type, "name": s.name, "action": "pull"} if {
	some k
	k == "client"
	startswith(input[k].ip, "10.")
	some s in input.scopes
}`)
	e := policies.NewEngine(100, time.Minute)
	e.Swap(p)
	ctx := context.Background()
	inside, outside := input("alice"), input("alice")
	inside.Client.IP, outside.Client.IP = "10.1.2.3", "192.0.2.1"
	for range 3 {
		if d, err := e.Authorize(ctx, inside); err != nil || !d.Allowed[0]["pull"] || d.Cached {
			t.Fatalf("inside: %+v %v", d, err)
		}
		if d, err := e.Authorize(ctx, outside); err != nil || d.Allowed[0]["pull"] || d.Cached {
			t.Fatalf("outside: %+v %v", d, err)
		}
	}
}
