package authz_test

import (
	"reflect"
	"testing"

	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/scope"
)

func TestGrantsIntersectAndNameWhatWasDenied(t *testing.T) {
	repo := func(actions ...string) scope.Scope {
		return scope.Scope{Type: "repository", Name: "team/app", Actions: actions}
	}
	for _, tc := range []struct {
		name            string
		requested       scope.Scope
		allowed         map[string]bool
		granted, denied []string
	}{
		{"all granted", repo("pull", "push"), map[string]bool{"pull": true, "push": true}, []string{"pull", "push"}, []string{}},
		{"some granted", repo("pull", "push"), map[string]bool{"pull": true}, []string{"pull"}, []string{"push"}},
		{"none granted", repo("pull"), nil, []string{}, []string{"pull"}},
		{"never more than asked", repo("pull"), map[string]bool{"pull": true, "delete": true}, []string{"pull"}, []string{}},
		{"star is satisfied by any grant", repo("*"), map[string]bool{"pull": true}, []string{"pull"}, []string{}},
		{"star with nothing is denied", repo("*"), map[string]bool{}, []string{}, []string{"*"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := authz.Decision{Allowed: []map[string]bool{tc.allowed}}
			g := d.Grants([]scope.Scope{tc.requested})
			if len(g) != 1 || !reflect.DeepEqual(g[0].Granted, tc.granted) || !reflect.DeepEqual(g[0].Denied, tc.denied) {
				t.Fatalf("Grants = %+v, want granted %v denied %v", g, tc.granted, tc.denied)
			}
		})
	}
}

// A decision with fewer answers than scopes (a policy that errs on the
// short side) grants nothing on the scopes it left out.
func TestGrantsOfAShortDecisionDenyTheRest(t *testing.T) {
	scopes := []scope.Scope{{Type: "repository", Name: "a", Actions: []string{"pull"}}, {Type: "repository", Name: "b", Actions: []string{"pull"}}}
	g := authz.Decision{Allowed: []map[string]bool{{"pull": true}}}.Grants(scopes)
	if len(g) != 2 || len(g[0].Granted) != 1 || len(g[1].Granted) != 0 || len(g[1].Denied) != 1 {
		t.Fatalf("Grants = %+v", g)
	}
}

func TestVerdict(t *testing.T) {
	yes := authz.Grant{Granted: []string{"pull"}, Denied: []string{}}
	some := authz.Grant{Granted: []string{"pull"}, Denied: []string{"push"}}
	no := authz.Grant{Granted: []string{}, Denied: []string{"pull"}}
	for _, tc := range []struct {
		grants []authz.Grant
		want   string
	}{
		{[]authz.Grant{yes}, "granted"},
		{[]authz.Grant{yes, yes}, "granted"},
		{[]authz.Grant{some}, "partial"},
		{[]authz.Grant{yes, no}, "partial"},
		{[]authz.Grant{no}, "denied"},
		{[]authz.Grant{no, no}, "denied"},
	} {
		if got := authz.Verdict(tc.grants); got != tc.want {
			t.Errorf("Verdict(%+v) = %q, want %q", tc.grants, got, tc.want)
		}
	}
}
