package policies

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/rego"
)

// KeyShapeRule is the rule of the policy package in which a policy
// declares what its decisions on a repository depend on (policies/README.md,
// "Decision cache"). tollgate never guesses it: without the rule, every
// scope is keyed by its whole name.
const KeyShapeRule = "decision_cache"

// keyShape is a policy's declaration, read once when it is prepared. The
// zero value keys every scope by its whole name.
type keyShape struct {
	// namespace: a repository scope is keyed by its name up to and with
	// the first "/" (the whole name when it has none), so team/app and
	// team/web share decisions, and team (bare) does not share team/'s.
	namespace bool
	except    map[string]bool // connectors whose decisions depend on whole names
}

// scopeName is the part of a scope's name that the cache key holds for a
// caller from connector.
func (k keyShape) scopeName(typ, name, connector string) string {
	if !k.namespace || typ != "repository" || k.except[connector] {
		return name
	}
	if i := strings.IndexByte(name, '/'); i >= 0 {
		return name[:i+1]
	}
	return name
}

// readKeyShape evaluates query.decision_cache without input, with the
// policy's modules, data and compiler as opts give them. Undefined (no
// such rule, or one that reads input) is the zero shape; a value of the
// wrong shape is an error, so a misspelt declaration is not ignored.
func readKeyShape(ctx context.Context, query string, opts ...func(*rego.Rego)) (keyShape, error) {
	rs, err := rego.New(append(opts, rego.Query("x := "+query+"."+KeyShapeRule))...).Eval(ctx)
	if err != nil {
		return keyShape{}, fmt.Errorf("%s: %w", KeyShapeRule, err)
	}
	if len(rs) == 0 {
		return keyShape{}, nil
	}
	return parseKeyShape(rs[0].Bindings["x"])
}

func parseKeyShape(v any) (keyShape, error) {
	doc, ok := v.(map[string]any)
	if !ok {
		return keyShape{}, fmt.Errorf("%s: want an object such as {\"repository_key\": \"namespace\"}, got %T", KeyShapeRule, v)
	}
	var k keyShape
	for _, field := range slices.Sorted(maps.Keys(doc)) {
		switch field {
		case "repository_key":
			switch doc[field] {
			case "namespace":
				k.namespace = true
			case "name":
			default:
				return keyShape{}, fmt.Errorf("%s.repository_key: %v: want \"namespace\" or \"name\"", KeyShapeRule, doc[field])
			}
		case "except_connectors":
			list, ok := doc[field].([]any)
			if !ok {
				return keyShape{}, fmt.Errorf("%s.except_connectors: want a list of connector names", KeyShapeRule)
			}
			k.except = map[string]bool{}
			for _, c := range list {
				name, ok := c.(string)
				if !ok {
					return keyShape{}, fmt.Errorf("%s.except_connectors: %v is not a connector name", KeyShapeRule, c)
				}
				k.except[name] = true
			}
		default:
			return keyShape{}, fmt.Errorf("%s: unknown key %q (repository_key, except_connectors)", KeyShapeRule, field)
		}
	}
	return k, nil
}
