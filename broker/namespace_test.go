package broker_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/identity/htpasswd"
	"github.com/tollgate/tollgate/policies"
)

// TestDefaultPolicyGivesSubjectsWithSlashNoNamespace signs tokens under the
// shipped default policy and its data.json (team private with alice and
// bob, library public) for htpasswd users whose names contain "/": a
// personal namespace is the first path segment equal to the subject, so
// "team/ci" owns nothing in the project team and "library/mirror" gets only
// the public pull in library (issue 14, finding 2).
func TestDefaultPolicyGivesSubjectsWithSlashNoNamespace(t *testing.T) {
	f := newFixture(t)
	for _, u := range []string{"team/ci", "library/mirror", "carol"} {
		if err := htpasswd.Set(f.htpasswd, u, "pw", 4); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.file.Reload(); err != nil {
		t.Fatal(err)
	}
	b, err := bundles.LoadFS(policies.DefaultFS(), "default")
	if err != nil {
		t.Fatal(err)
	}
	p, err := policies.Compile(context.Background(), b, policies.DefaultQuery)
	if err != nil {
		t.Fatal(err)
	}
	f.engine.Swap(p)

	for _, c := range []struct {
		user, scope string
		want        []broker.AccessEntry
	}{
		{"team/ci", "repository:team/ci/app:pull,push,delete", []broker.AccessEntry{}},
		{"team/ci", "repository:team/ci:pull,push,delete", []broker.AccessEntry{}},
		{"library/mirror", "repository:library/mirror/x:pull,push,delete",
			[]broker.AccessEntry{{Type: "repository", Name: "library/mirror/x", Actions: []string{"pull"}}}},
		// The rule still gives a plain user its namespace.
		{"carol", "repository:carol/app:pull,push,delete",
			[]broker.AccessEntry{{Type: "repository", Name: "carol/app", Actions: []string{"pull", "push", "delete"}}}},
	} {
		a := f.get(t, "service=registry.test&scope="+c.scope, "Authorization", basic(c.user, "pw"))
		if a.status != 200 {
			t.Fatalf("%s %s: status %d: %s", c.user, c.scope, a.status, a.raw)
		}
		_, claims := f.claims(t, a.body["token"].(string))
		if got := accessOf(t, claims); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s asking %s: access %+v, want %+v", c.user, c.scope, got, c.want)
		}
	}
}
