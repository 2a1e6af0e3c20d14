package policies

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"

	"github.com/tollgate/tollgate/authz"
)

// What one uncached decision costs besides the policy's own rules (issue
// 20, docs/performance.md): the input built as an OPA value with shared
// terms, the token_ttl asked for only when the policy can define one, and
// the result read as OPA values instead of being converted to Go's.

// decisionQuery asks for the allowed set and, when withTTL, the optional
// token_ttl in the same evaluation.
func decisionQuery(query string, withTTL bool) string {
	if !withTTL {
		return fmt.Sprintf("allowed := %s.allowed", query)
	}
	return fmt.Sprintf("allowed := %s.allowed; ttl := [t | t := %s.token_ttl]", query, query)
}

// mayDefineTTL says whether query.token_ttl can have a value: a rule whose
// ground path leads to it or under it (a rule such as authz[k] := v, or
// token_ttl itself), or a document at that path in data. Without one,
// evaluating token_ttl is always undefined and the query leaves it out.
// The answer holds as long as the prepared query: Compile's store is never
// written, and on the opa: path every bundle activation, data-only ones
// included, sets a compiler and so prepares the query again.
func mayDefineTTL(ctx context.Context, query string, modules map[string]*ast.Module, store storage.Store, txn storage.Transaction) (bool, error) {
	ttl, err := ast.ParseRef(query + ".token_ttl")
	if err != nil {
		return true, err
	}
	for _, m := range modules {
		for _, r := range m.Rules {
			path := m.Package.Path.Extend(r.Head.Ref().GroundPrefix())
			if path.HasPrefix(ttl) || ttl.HasPrefix(path) {
				return true, nil
			}
		}
	}
	path, err := storage.NewPathForRef(ttl)
	if err != nil {
		return true, err
	}
	if txn == nil {
		_, err = storage.ReadOne(ctx, store, path)
	} else {
		_, err = store.Read(ctx, txn, path)
	}
	switch {
	case err == nil:
		return true, nil
	case storage.IsNotFound(err):
		return false, nil
	default:
		return true, fmt.Errorf("reading %s: %w", ttl, err)
	}
}

// rawResult keeps the query's results as OPA values: decide reads them
// directly, so nothing is converted to Go's maps and slices.
func rawResult(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }

// decide turns the bindings of the prepared query (allowed, ttl), kept as
// OPA terms by rawResult, into the decision for in. It reads what the
// JSON form of the result would give: the allowed items (of a set or an
// array) that are objects with a non-empty string action, and a single
// positive number as the ttl.
func decide(rs rego.ResultSet, in *authz.Input, revision string) authz.Decision {
	d := authz.Decision{Revision: revision, Allowed: make([]map[string]bool, len(in.Scopes))}
	if len(rs) == 0 {
		return d // undefined: deny
	}
	// The closure goes to Foreach, an interface method, and so to the heap
	// with what it captures: copies of the slices, never in itself (the
	// caller's input would move to the heap, on cache hits too).
	scopes, allowed := in.Scopes, d.Allowed
	grant := func(item *ast.Term) {
		obj, _ := item.Value.(ast.Object)
		if obj == nil {
			return
		}
		typ, name, action := stringAt(obj, resultKeys.typ), stringAt(obj, resultKeys.name), stringAt(obj, resultKeys.action)
		if action == "" {
			return
		}
		for i, s := range scopes {
			if s.Type == typ && s.Name == name {
				if allowed[i] == nil {
					allowed[i] = map[string]bool{}
				}
				allowed[i][internedAction(action)] = true
			}
		}
	}
	if t, _ := rs[0].Bindings["allowed"].(*ast.Term); t != nil {
		switch v := t.Value.(type) {
		case ast.Set:
			v.Foreach(grant)
		case *ast.Array:
			v.Foreach(grant)
		}
	}
	if t, _ := rs[0].Bindings["ttl"].(*ast.Term); t != nil {
		if ttls, _ := t.Value.(*ast.Array); ttls != nil && ttls.Len() == 1 {
			if n, ok := ttls.Elem(0).Value.(ast.Number); ok {
				// as json.Number.Float64 reads it
				if secs, err := strconv.ParseFloat(string(n), 64); err == nil && secs > 0 {
					d.TokenTTL = time.Duration(secs * float64(time.Second))
				}
			}
		}
	}
	return d
}

var resultKeys = struct{ typ, name, action *ast.Term }{
	typ: ast.StringTerm("type"), name: ast.StringTerm("name"), action: ast.StringTerm("action"),
}

// stringAt is obj[key] when it is a string, "" otherwise.
func stringAt(obj ast.Object, key *ast.Term) string {
	if v := obj.Get(key); v != nil {
		if s, ok := v.Value.(ast.String); ok {
			return string(s)
		}
	}
	return ""
}

// inputValue builds the input document directly as an OPA value, which avoids a
// JSON round trip on every evaluation. Keys and the usual values (actions,
// scope types, connectors) are shared terms (inputTerm): the evaluation
// only reads its input, so an uncached decision allocates only the strings
// the request brings and the objects that hold them.
func inputValue(in *authz.Input) ast.Value {
	groups := ast.InternedEmptyArray
	if len(in.Identity.Groups) > 0 {
		terms := make([]*ast.Term, len(in.Identity.Groups))
		for i, g := range in.Identity.Groups {
			terms[i] = inputTerm(g)
		}
		groups = ast.ArrayTerm(terms...)
	}
	claims := ast.InternedEmptyObject
	if len(in.Identity.Claims) > 0 {
		if v, err := ast.InterfaceToValue(in.Identity.Claims); err == nil {
			if o, ok := v.(ast.Object); ok {
				claims = ast.NewTerm(o)
			}
		}
	}
	scopes := make([]*ast.Term, len(in.Scopes))
	for i, s := range in.Scopes {
		acts := make([]*ast.Term, len(s.Actions))
		for j, a := range s.Actions {
			acts[j] = inputTerm(a)
		}
		scopes[i] = ast.ObjectTerm(
			[2]*ast.Term{inputKeys.typ, inputTerm(s.Type)},
			[2]*ast.Term{inputKeys.name, ast.StringTerm(s.Name)},
			[2]*ast.Term{inputKeys.actions, ast.ArrayTerm(acts...)},
		)
	}
	id := in.Identity
	return ast.NewObject(
		[2]*ast.Term{inputKeys.service, inputTerm(in.Service)},
		[2]*ast.Term{inputKeys.identity, ast.ObjectTerm(
			[2]*ast.Term{inputKeys.subject, ast.StringTerm(id.Subject)},
			[2]*ast.Term{inputKeys.name, ast.StringTerm(id.Name)},
			[2]*ast.Term{inputKeys.groups, groups},
			[2]*ast.Term{inputKeys.connector, inputTerm(id.Connector)},
			[2]*ast.Term{inputKeys.anonymous, ast.InternedTerm(id.Anonymous)},
			[2]*ast.Term{inputKeys.claims, claims},
		)},
		[2]*ast.Term{inputKeys.scopes, ast.ArrayTerm(scopes...)},
		[2]*ast.Term{inputKeys.client, ast.ObjectTerm(
			[2]*ast.Term{inputKeys.ip, ast.StringTerm(in.Client.IP)},
			[2]*ast.Term{inputKeys.userAgent, ast.StringTerm(in.Client.UserAgent)},
		)},
	)
}

// inputKeys are the input document's keys, built once: never modified, as
// OPA's own interned terms (ast.InternedTerm) are not.
var inputKeys = struct {
	service, identity, subject, name, groups, connector, anonymous, claims,
	scopes, typ, actions, client, ip, userAgent *ast.Term
}{
	service: ast.StringTerm("service"), identity: ast.StringTerm("identity"), subject: ast.StringTerm("subject"),
	name: ast.StringTerm("name"), groups: ast.StringTerm("groups"), connector: ast.StringTerm("connector"),
	anonymous: ast.StringTerm("anonymous"), claims: ast.StringTerm("claims"), scopes: ast.StringTerm("scopes"),
	typ: ast.StringTerm("type"), actions: ast.StringTerm("actions"), client: ast.StringTerm("client"),
	ip: ast.StringTerm("ip"), userAgent: ast.StringTerm("user_agent"),
}

// commonInputTerms are values most inputs carry; shared like inputKeys.
var commonInputTerms = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, s := range []string{"pull", "push", "delete", "*", "repository", "registry", "catalog",
		"local", "ldap", "oidc", "k8s", "robot", "anonymous", "htpasswd"} {
		m[s] = ast.StringTerm(s)
	}
	return m
}()

// inputTerm returns the shared term for a common value, a new one otherwise.
func inputTerm(s string) *ast.Term {
	if t, ok := commonInputTerms[s]; ok {
		return t
	}
	return ast.StringTerm(s)
}
