package policies_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/identity"
	"github.com/tollgate/tollgate/policies"
	"github.com/tollgate/tollgate/scope"
)

// differentialInputs is how many random inputs each policy is asked.
const differentialInputs = 2000

// TestDifferential: the engine (prepared query, input built as an OPA
// value, decision cache) decides exactly what plain evaluation of the
// reference policy decides, on random inputs. For the default policy the
// reference is the frozen copy in testdata/reference/default, so a reshaped
// default policy must keep every decision; for each example the reference
// is the example itself, evaluated plainly. TOLLGATE_DIFF_SEED replays a
// failing seed.
func TestDifferential(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("TOLLGATE_DIFF_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("TOLLGATE_DIFF_SEED=%q: %v", s, err)
		}
	}
	t.Run("default", func(t *testing.T) {
		current, err := bundles.LoadFS(policies.DefaultFS(), "default")
		if err != nil {
			t.Fatal(err)
		}
		reference, err := bundles.LoadDir("testdata/reference/default")
		if err != nil {
			t.Fatal(err)
		}
		current.Data, reference.Data = differentialData(), differentialData()
		differential(t, seed, reference, current)
	})
	t.Run("default with token_ttl", func(t *testing.T) {
		// No shipped policy defines token_ttl; this one does, for some inputs.
		b, err := bundles.LoadFS(policies.DefaultFS(), "default")
		if err != nil {
			t.Fatal(err)
		}
		b.Modules["ttl.rego"] = ast.MustParseModule("package registry.authz\n" +
			"token_ttl := 600 if input.service == \"other\"\n" +
			"token_ttl := 90.5 if {\n\tinput.identity.connector == \"robot\"\n\tinput.service != \"other\"\n}\n")
		b.Data = differentialData()
		differential(t, seed, b, b)
	})
	dirs, err := filepath.Glob("examples/*/authz.rego")
	if err != nil || len(dirs) < 4 {
		t.Fatalf("examples: %v, %v", dirs, err)
	}
	for _, path := range dirs {
		dir := filepath.Dir(path)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			b, err := bundles.LoadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			differential(t, seed, b, b)
		})
	}
}

// differential asks reference (plainly) and current (through the engine)
// the same random inputs and fails on the first decision that differs.
func differential(t *testing.T, seed uint64, reference, current *bundles.Bundle) {
	t.Helper()
	ctx := context.Background()
	plain := plainQuery(t, reference)
	p, err := policies.Compile(ctx, current, policies.DefaultQuery)
	if err != nil {
		t.Fatal(err)
	}
	// A small cache, so repeated inputs are also answered from it.
	e := policies.NewEngine(256, time.Minute)
	e.Swap(p)
	r := rand.New(rand.NewPCG(seed, 0))
	allowedSome := 0
	for i := range differentialInputs {
		in := randomInput(r)
		want, wantTTL := plainDecision(t, plain, in)
		d, err := e.Authorize(ctx, in)
		if err != nil {
			t.Fatalf("seed %d, input %d: engine: %v", seed, i, err)
		}
		got := engineDecision(in, d)
		if !slices.Equal(got, want) || d.TokenTTL != wantTTL {
			js, _ := json.Marshal(in)
			t.Fatalf("seed %d (replay: TOLLGATE_DIFF_SEED=%d), input %d: %s\nengine: %q ttl %v (cached %v)\nreference: %q ttl %v",
				seed, seed, i, js, got, d.TokenTTL, d.Cached, want, wantTTL)
		}
		if len(want) > 0 {
			allowedSome++
		}
	}
	// Inputs that nothing allows would compare nothing of interest (the
	// narrowest example, ci-robots-oidc, allows something in about 1%).
	if allowedSome < 5 {
		t.Fatalf("seed %d: only %d of %d inputs allowed anything; the generator misses the policy", seed, allowedSome, differentialInputs)
	}
}

func plainQuery(t *testing.T, b *bundles.Bundle) rego.PreparedEvalQuery {
	t.Helper()
	opts := []func(*rego.Rego){
		rego.Query("allowed := data.registry.authz.allowed; ttl := [t | t := data.registry.authz.token_ttl]"),
		rego.Store(inmem.NewFromObject(b.Data)),
	}
	for _, m := range b.Modules {
		opts = append(opts, rego.ParsedModule(m))
	}
	pq, err := rego.New(opts...).PrepareForEval(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return pq
}

// plainDecision evaluates in as JSON, the way `opa eval` would, and keeps
// the allowed items that name a requested scope (the broker ignores others).
func plainDecision(t *testing.T, pq rego.PreparedEvalQuery, in authz.Input) ([]string, time.Duration) {
	t.Helper()
	js, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	rs, err := pq.Eval(context.Background(), rego.EvalInput(doc))
	if err != nil {
		t.Fatalf("reference: %v", err)
	}
	var out []string
	var ttl time.Duration
	if len(rs) == 0 {
		return out, 0
	}
	items, _ := rs[0].Bindings["allowed"].([]any)
	for _, item := range items {
		o, _ := item.(map[string]any)
		typ, _ := o["type"].(string)
		name, _ := o["name"].(string)
		action, _ := o["action"].(string)
		if action != "" && slices.ContainsFunc(in.Scopes, func(s scope.Scope) bool { return s.Type == typ && s.Name == name }) {
			out = append(out, policies.GrantKey(typ, name, action))
		}
	}
	if ttls, _ := rs[0].Bindings["ttl"].([]any); len(ttls) == 1 {
		if n, ok := ttls[0].(json.Number); ok {
			if secs, err := n.Float64(); err == nil && secs > 0 {
				ttl = time.Duration(secs * float64(time.Second))
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), ttl
}

func engineDecision(in authz.Input, d authz.Decision) []string {
	var out []string
	for i, actions := range d.Allowed {
		for a := range actions {
			out = append(out, policies.GrantKey(in.Scopes[i].Type, in.Scopes[i].Name, a))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// differentialData is the default policy's data for the test: the rego
// tests' odd projects (an unknown role, a string "true", a project without
// members), a project named like a user, and generated projects.
func differentialData() map[string]any {
	projects := map[string]any{
		"team": map[string]any{"public": false,
			"members": map[string]any{"alice": "developer", "bob": "guest", "dana": "admin", "mia": "maintainer", "odd": "owner"},
			"groups":  map[string]any{"dev": "developer", "qa": "guest", "leads": "admin"}},
		"library":  map[string]any{"public": true, "members": map[string]any{"alice": "maintainer"}, "groups": map[string]any{}},
		"stringly": map[string]any{"public": "true", "members": map[string]any{}, "groups": map[string]any{}},
		"bare":     map[string]any{},
		"frank":    map[string]any{"public": false, "members": map[string]any{"erin": "developer"}, "groups": map[string]any{}},
	}
	roles := []string{"admin", "maintainer", "developer", "guest", "owner"}
	for p := range 12 {
		members := map[string]any{}
		for u, name := range differentialUsers {
			if (u+p)%3 == 0 {
				members[name] = roles[(u*p)%len(roles)]
			}
		}
		groups := map[string]any{differentialGroups[p%len(differentialGroups)]: roles[p%len(roles)]}
		projects[fmt.Sprintf("p%d", p)] = map[string]any{"public": p%4 == 0, "members": members, "groups": groups}
	}
	return map[string]any{"registry": map[string]any{
		"projects":      projects,
		"system_admins": map[string]any{"users": []any{"root"}, "groups": []any{"ops", "registry-admins"}},
	}}
}

var (
	differentialUsers  = []string{"alice", "bob", "carol", "dana", "mia", "odd", "erin", "frank", "root", "mallory", "admin", "library", "Alice", "team/ci", "..", "a.b", "x__y", "a--b", "-a", ""}
	differentialGroups = []string{"dev", "qa", "leads", "ops", "contractors", "registry-admins", "team", ""}
	differentialRepos  = []string{"team/app", "team/app", "team/x", "legacy/x", "team/ci/x", "team/release-1", "team/secret/a", "library/x", "library", "stringly/x", "bare/x",
		"frank/x", "legacy/x", "public/x", "ci/org/repo", "ci/org/repo/sub", "ci/org/repox", "ns/default/app", "ns/other/app",
		"alice/app", "carol/x", "carol", "Alice/x", "a.b/x", "x__y/y", "../x", "team", "", "a//b", "p0/app", "p1/x/y", "p5/z", "unknown/x"}
	differentialCIRepos = []string{"ci/org/repo", "ci/org/repo/sub", "ci/group/proj", "ci/group/proj/x", "ns/default/app", "ns/other/app", "ci/org/repox"}
	differentialActions = []string{"pull", "push", "delete", "*", "pull", "push", "other"}
)

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func randomSubset[T any](r *rand.Rand, xs []T, most int) []T {
	out := []T{}
	for range r.IntN(most + 1) {
		out = append(out, pick(r, xs))
	}
	return out
}

// randomInput draws a request: who asks (local user, robot, OIDC CI job,
// anonymous), for which service, and one to three scopes.
func randomInput(r *rand.Rand) authz.Input {
	in := authz.Input{Service: pick(r, []string{"registry.test", "registry.test", "other"})}
	repos := differentialRepos
	switch r.IntN(5) {
	case 0:
		in.Identity = identity.Identity{Subject: "", Groups: []string{}, Connector: "anonymous", Anonymous: true, Claims: map[string]any{}}
	case 1:
		in.Identity = identity.Identity{Subject: "robot-" + pick(r, []string{"ci", "team"}), Groups: randomSubset(r, differentialGroups, 1),
			Connector: "robot", Claims: map[string]any{"robot": randomRobot(r)}}
	case 2:
		claims := randomCIClaims(r)
		connector := pick(r, []string{"oidc", "oidc", "k8s", "local"})
		if claims["iss"] == "https://kubernetes.default.svc" && r.IntN(4) > 0 {
			connector = "k8s"
		}
		in.Identity = identity.Identity{Subject: "job-" + strconv.Itoa(r.IntN(5)), Groups: randomSubset(r, differentialGroups, 1),
			Connector: connector, Claims: claims}
		if r.IntN(4) > 0 {
			repos = differentialCIRepos
		}
	default:
		u := pick(r, differentialUsers)
		in.Identity = identity.Identity{Subject: u, Name: u, Groups: randomSubset(r, differentialGroups, 3),
			Connector: pick(r, []string{"local", "ldap", "oidc"}), Claims: map[string]any{}}
	}
	in.Client = authz.Client{IP: pick(r, []string{"10.1.2.3", "192.168.10.7", "203.0.113.9"}), UserAgent: "docker/27"}
	for range 1 + r.IntN(3) {
		if r.IntN(10) == 0 {
			in.Scopes = append(in.Scopes, scope.Scope{Type: "registry", Name: "catalog", Actions: randomSubset(r, []string{"*", "pull"}, 2)})
			continue
		}
		name := pick(r, repos)
		if r.IntN(3) == 0 {
			name += "/" + strconv.Itoa(r.IntN(1000)) // distinct names, as in issue 20
		}
		typ := "repository"
		if r.IntN(20) == 0 {
			typ = "repository(plugin)"
		}
		in.Scopes = append(in.Scopes, scope.Scope{Type: typ, Name: name, Actions: randomSubset(r, differentialActions, 3)})
	}
	return in
}

func randomRobot(r *rand.Rand) map[string]any {
	var scopes []any
	for range 1 + r.IntN(2) {
		actions := []any{}
		for _, a := range randomSubset(r, []string{"pull", "push", "delete", "*"}, 3) {
			actions = append(actions, a)
		}
		scopes = append(scopes, map[string]any{"type": pick(r, []string{"repository", "repository", "registry"}),
			"name": pick(r, []string{"team/*", "team/**", "library/x", "*", "**", "catalog", "p0/app"}), "actions": actions})
	}
	robot := map[string]any{"scopes": scopes}
	if r.IntN(2) == 0 {
		robot["service"] = pick(r, []string{"registry.test", "other"})
	}
	return robot
}

func randomCIClaims(r *rand.Rand) map[string]any {
	return map[string]any{
		"iss":           pick(r, []string{"https://token.actions.githubusercontent.com", "https://gitlab.example.com", "https://kubernetes.default.svc", "https://evil.example"}),
		"repository":    pick(r, []string{"Org/Repo", "org/repo", "other/x"}),
		"project_path":  pick(r, []string{"org/repo", "group/proj"}),
		"ref":           pick(r, []string{"refs/heads/main", "refs/heads/dev"}),
		"ref_protected": pick(r, []string{"true", "false"}),
		"kubernetes.io": map[string]any{"namespace": pick(r, []string{"default", "other"})},
	}
}

// TestDeclaredCacheKeyHolds: a policy that declares decision_cache
// {"repository_key": "namespace"} promises that a repository's decision
// depends on its name only up to the first "/", for every connector not
// excepted. Checked by plain evaluation, without the cache: each random
// input against the same input with every repository renamed within its
// namespace must grant the same actions per scope.
func TestDeclaredCacheKeyHolds(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	bs := map[string]*bundles.Bundle{}
	def, err := bundles.LoadFS(policies.DefaultFS(), "default")
	if err != nil {
		t.Fatal(err)
	}
	def.Data = differentialData()
	bs["default"] = def
	dirs, _ := filepath.Glob("examples/*/authz.rego")
	for _, path := range dirs {
		b, err := bundles.LoadDir(filepath.Dir(path))
		if err != nil {
			t.Fatal(err)
		}
		bs[filepath.Base(filepath.Dir(path))] = b
	}
	declared := 0
	for name, b := range bs {
		except, ok := declaredNamespaceKey(t, b)
		if !ok {
			continue
		}
		declared++
		t.Run(name, func(t *testing.T) {
			pq := plainQuery(t, b)
			r := rand.New(rand.NewPCG(seed, 1))
			for i := range differentialInputs {
				in := randomInput(r)
				if except[in.Identity.Connector] {
					continue
				}
				// A name asked twice is renamed alike, and two names never
				// to one: the cache key keeps which scopes share a name
				// (their grants merge).
				renamed, names := in, map[string]string{}
				renamed.Scopes = slices.Clone(in.Scopes)
				for j, s := range renamed.Scopes {
					if ns, _, nested := strings.Cut(s.Name, "/"); nested && s.Type == "repository" {
						if names[s.Name] == "" {
							names[s.Name] = fmt.Sprintf("%s/r%d%s", ns, len(names), pick(r, []string{"", "/app", "/a/b"}))
						}
						renamed.Scopes[j].Name = names[s.Name]
					}
				}
				if a, b := perScope(t, pq, in), perScope(t, pq, renamed); !slices.Equal(a, b) {
					js, _ := json.Marshal(in)
					t.Fatalf("seed %d, input %d: %s\ngrants %q, but renamed within their namespaces (%v) %q", seed, i, js, a, renamed.Scopes, b)
				}
			}
		})
	}
	if declared == 0 {
		t.Fatal("no policy declares decision_cache; the default policy should")
	}
}

// declaredNamespaceKey reads b's decision_cache declaration.
func declaredNamespaceKey(t *testing.T, b *bundles.Bundle) (map[string]bool, bool) {
	t.Helper()
	opts := []func(*rego.Rego){rego.Query("x := data.registry.authz.decision_cache"), rego.Store(inmem.NewFromObject(b.Data))}
	for _, m := range b.Modules {
		opts = append(opts, rego.ParsedModule(m))
	}
	rs, err := rego.New(opts...).Eval(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) == 0 {
		return nil, false
	}
	doc, _ := rs[0].Bindings["x"].(map[string]any)
	if doc["repository_key"] != "namespace" {
		return nil, false
	}
	except := map[string]bool{}
	list, _ := doc["except_connectors"].([]any)
	for _, c := range list {
		except[c.(string)] = true
	}
	return except, true
}

// perScope is what plain evaluation grants on each requested scope, by
// its index: the names are left out, so renamed scopes compare.
func perScope(t *testing.T, pq rego.PreparedEvalQuery, in authz.Input) []string {
	t.Helper()
	grants, _ := plainDecision(t, pq, in)
	var out []string
	for i, s := range in.Scopes {
		for _, a := range differentialActions {
			if slices.Contains(grants, policies.GrantKey(s.Type, s.Name, a)) {
				out = append(out, fmt.Sprintf("%d:%s", i, a))
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
