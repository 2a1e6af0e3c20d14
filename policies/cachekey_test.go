package policies_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
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

// publicLibrary pulls from library/... for everyone, and declares that
// its decisions depend on a repository's namespace only, robots aside.
const publicLibrary = `package registry.authz
decision_cache := {"repository_key": "namespace", "except_connectors": ["robot"]}
allowed contains {"type": s.type, "name": s.name, "action": "pull"} if {
	some s in input.scopes
	startswith(s.name, "library/")
	"pull" in s.actions
}
allowed contains {"type": s.type, "name": s.name, "action": "pull"} if {
	some s in input.scopes
	input.identity.connector == "robot"
	s.name == "team/app"
}`

func ask(t *testing.T, e *policies.Engine, connector string, scopes ...scope.Scope) authz.Decision {
	t.Helper()
	d, err := e.Authorize(context.Background(), authz.Input{Service: "r", Scopes: scopes,
		Identity: identity.Identity{Subject: "x", Connector: connector, Claims: map[string]any{}}})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func repo(name string, actions ...string) scope.Scope {
	return scope.Scope{Type: "repository", Name: name, Actions: actions}
}

// A policy's decision_cache declaration lets one cached decision answer
// every repository of a namespace, and nothing more: not a bare name, not
// a robot (excepted), not a request whose scopes share names differently.
func TestDeclaredNamespaceKeySharesDecisionsWithinANamespace(t *testing.T) {
	e := policies.NewEngine(100, time.Minute)
	e.Swap(compile(t, publicLibrary))
	ask(t, e, "local", repo("library/a", "pull"))
	if d := ask(t, e, "local", repo("library/b/c", "pull")); !d.Cached || !d.Allowed[0]["pull"] {
		t.Errorf("library/b/c after library/a: %+v, want the cached pull", d)
	}
	if d := ask(t, e, "local", repo("library", "pull")); d.Cached {
		t.Errorf("the bare name library shared library/'s decision: %+v", d)
	}
	ask(t, e, "robot", repo("team/web", "pull"))
	if d := ask(t, e, "robot", repo("team/app", "pull")); d.Cached || !d.Allowed[0]["pull"] {
		t.Errorf("a robot's team/app after its team/web: %+v, want a fresh pull (robots are excepted)", d)
	}
	// library/x asked twice: the push-only scope gets the other's pull
	// (grants go by name). Two different names must not inherit that.
	ask(t, e, "local", repo("library/x", "push"), repo("library/x", "pull"))
	if d := ask(t, e, "local", repo("library/p", "push"), repo("library/q", "pull")); d.Cached || d.Allowed[0]["pull"] {
		t.Errorf("library/p (push) beside library/q (pull): %+v, want no pull on library/p", d)
	}
}

// Without the declaration every name is its own key.
func TestWithoutADeclarationEveryNameIsItsOwnKey(t *testing.T) {
	e := policies.NewEngine(100, time.Minute)
	e.Swap(compile(t, strings.Replace(publicLibrary, "decision_cache :=", "other :=", 1)))
	ask(t, e, "local", repo("library/a", "pull"))
	if d := ask(t, e, "local", repo("library/b", "pull")); d.Cached {
		t.Errorf("library/b shared library/a's decision without a declaration: %+v", d)
	}
}

// A declaration of the wrong shape refuses the policy: a misspelt one
// must not silently leave the cache keyed otherwise than its author meant.
func TestMalformedCacheDeclarationsAreRefused(t *testing.T) {
	for _, decl := range []string{
		`decision_cache := {"repository_key": "project"}`,
		`decision_cache := {"repositroy_key": "namespace"}`,
		`decision_cache := {"repository_key": "namespace", "except_connectors": "robot"}`,
		`decision_cache := {"repository_key": "namespace", "except_connectors": [1]}`,
		`decision_cache := "namespace"`,
	} {
		dir := t.TempDir()
		src := "package registry.authz\n" + decl + "\nallowed contains 1 if false\n"
		if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		b, err := bundles.LoadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := policies.Compile(context.Background(), b, policies.DefaultQuery); err == nil || !strings.Contains(err.Error(), "decision_cache") {
			t.Errorf("%s: Compile = %v, want an error naming decision_cache", decl, err)
		}
	}
}

// The opa: path reads the declaration from what the bundle plugin
// activated, as Compile does from a bundle.
func TestOPAPathHonoursTheDeclaredNamespaceKey(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte(publicLibrary), 0o644); err != nil {
		t.Fatal(err)
	}
	var tarball bytes.Buffer
	if err := bundles.Build(context.Background(), dir, "ns-1", nil, &tarball); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(tarball.Bytes()) }))
	t.Cleanup(srv.Close)
	doc := fmt.Sprintf("services:\n  s: {url: %s}\nbundles:\n  authz: {service: s, resource: /b.tar.gz}\n", srv.URL)
	e, err := policies.OpenOPA([]byte(doc), policies.OPAOptions{ID: "t", CacheSize: 100, CacheTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Stop(context.Background())
	for deadline := time.Now().Add(30 * time.Second); !e.Ready(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the bundle was not activated: %+v", e.Bundles(ctx))
		}
	}
	askOPA := func(name string) authz.Decision {
		d, err := e.Authorize(ctx, authz.Input{Service: "r", Scopes: []scope.Scope{repo(name, "pull")},
			Identity: identity.Identity{Subject: "x", Connector: "local", Claims: map[string]any{}}})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	askOPA("library/a")
	if d := askOPA("library/b"); !d.Cached || !d.Allowed[0]["pull"] {
		t.Errorf("library/b after library/a on the opa: path: %+v, want the cached pull", d)
	}
}
