// Package scope parses the scopes of registry token requests
// (type[(class)]:name:actions) and intersects them with what a policy allows.
package scope

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Scope is one requested resource and the actions asked on it, as the registry
// token protocol writes it: type[(class)]:name:actions.
type Scope struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// Limits on what a token request may ask for. They bound the work a single
// request can cause (policy input size, token size); real clients stay far below.
const (
	maxScopes       = 64
	maxScopeLen     = 1024
	maxNameLen      = 512
	maxActionsScope = 16
)

// ErrBadScope marks a scope string that does not parse.
var ErrBadScope = errors.New("malformed scope")

// Parse parses every scope value of a request. Each value may itself
// hold several scopes separated by whitespace (crane joins them). Scopes that
// name the same type and name are merged, keeping the first-seen order of
// scopes and of actions. Empty values are allowed: no scope at all is a login
// check.
func Parse(values []string) ([]Scope, error) {
	var out []Scope
	for _, v := range values {
		for _, field := range strings.Fields(v) {
			s, err := parseScope(field)
			if err != nil {
				return nil, err
			}
			out = mergeScope(out, s)
			if len(out) > maxScopes {
				return nil, fmt.Errorf("%w: more than %d scopes", ErrBadScope, maxScopes)
			}
		}
	}
	return out, nil
}

// parseScope parses one scope. The type ends at the first colon and the
// actions start after the last, so names may contain colons (a registry host
// with a port).
func parseScope(s string) (Scope, error) {
	if len(s) > maxScopeLen {
		return Scope{}, fmt.Errorf("%w: longer than %d bytes", ErrBadScope, maxScopeLen)
	}
	if !utf8.ValidString(s) {
		return Scope{}, fmt.Errorf("%w: not valid UTF-8", ErrBadScope)
	}
	first := strings.IndexByte(s, ':')
	last := strings.LastIndexByte(s, ':')
	if first < 0 || first == last {
		return Scope{}, fmt.Errorf("%w %q: want type:name:actions", ErrBadScope, s)
	}
	typ, name, actions := s[:first], s[first+1:last], s[last+1:]

	typ, err := stripClass(typ)
	if err != nil {
		return Scope{}, fmt.Errorf("%w %q: %v", ErrBadScope, s, err)
	}
	if name == "" {
		return Scope{}, fmt.Errorf("%w %q: empty name", ErrBadScope, s)
	}
	if len(name) > maxNameLen {
		return Scope{}, fmt.Errorf("%w: name longer than %d bytes", ErrBadScope, maxNameLen)
	}
	for _, r := range name {
		if r <= ' ' || r == 0x7f {
			return Scope{}, fmt.Errorf("%w %q: control character in name", ErrBadScope, s)
		}
	}

	sc := Scope{Type: typ, Name: name, Actions: []string{}}
	for _, a := range strings.Split(actions, ",") {
		if a == "" {
			continue
		}
		if !validToken(a, true) {
			return Scope{}, fmt.Errorf("%w %q: bad action %q", ErrBadScope, s, a)
		}
		if !slices.Contains(sc.Actions, a) {
			sc.Actions = append(sc.Actions, a)
		}
	}
	if len(sc.Actions) > maxActionsScope {
		return Scope{}, fmt.Errorf("%w %q: more than %d actions", ErrBadScope, s, maxActionsScope)
	}
	return sc, nil
}

// stripClass removes a "(class)" suffix from a resource type, for example
// "repository(plugin)", and validates what remains.
func stripClass(typ string) (string, error) {
	if i := strings.IndexByte(typ, '('); i >= 0 {
		if !strings.HasSuffix(typ, ")") || !validToken(typ[i+1:len(typ)-1], false) {
			return "", errors.New("bad resource class")
		}
		typ = typ[:i]
	}
	if !validToken(typ, false) {
		return "", errors.New("bad resource type")
	}
	return typ, nil
}

// validToken reports whether s is a non-empty word of lower-case letters,
// digits, '_', '-' and '.', the shapes types, classes and actions take. The
// action "*" is allowed alone when star is set.
func validToken(s string, star bool) bool {
	if s == "" {
		return false
	}
	if star && s == "*" {
		return true
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func mergeScope(list []Scope, s Scope) []Scope {
	for i := range list {
		if list[i].Type == s.Type && list[i].Name == s.Name {
			for _, a := range s.Actions {
				if !slices.Contains(list[i].Actions, a) {
					list[i].Actions = append(list[i].Actions, a)
				}
			}
			return list
		}
	}
	return append(list, s)
}

// String renders the scope in its wire form.
func (s Scope) String() string {
	return s.Type + ":" + s.Name + ":" + strings.Join(s.Actions, ",")
}

// actionOrder is the order in which actions expanded from "*" are listed, so
// tokens are stable whatever order the policy produced them in.
var actionOrder = map[string]int{"pull": 0, "push": 1, "delete": 2}

// Intersect returns the actions of a requested scope that allowed permits. The
// policy can never grant what was not asked: an allowed action appears only if
// it was requested or "*" was. A requested "*" is replaced by the concrete
// actions allowed (pull, push, delete first, then the rest sorted); "*" itself
// is granted only where the policy allowed "*" and it was requested. An
// allowed "*" covers every requested action.
func Intersect(requested []string, allowed map[string]bool) []string {
	if len(allowed) == 0 {
		return nil
	}
	var granted []string
	add := func(a string) {
		if !slices.Contains(granted, a) {
			granted = append(granted, a)
		}
	}
	all := allowed["*"]
	for _, a := range requested {
		if a != "*" {
			if all || allowed[a] {
				add(a)
			}
			continue
		}
		if all {
			add("*")
			continue
		}
		for _, x := range sortedActions(allowed) {
			add(x)
		}
	}
	return granted
}

func sortedActions(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for a := range set {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b string) int {
		oa, ka := actionOrder[a]
		ob, kb := actionOrder[b]
		switch {
		case ka && kb:
			return oa - ob
		case ka:
			return -1
		case kb:
			return 1
		}
		return strings.Compare(a, b)
	})
	return out
}
