package policies

import (
	"fmt"
	"sort"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/tollgate/tollgate/bundles"
)

// Check compiles a bundle the way the broker will, plus what a reviewer
// would catch: strict mode (unused variables and imports, shadowed names),
// type-checking every use of input against the published input schema,
// and the shape of the rules the broker reads. It returns every problem.
func Check(b *bundles.Bundle, query string) []error {
	ss, err := SchemaSet()
	if err != nil {
		return []error{err}
	}
	compiler := ast.NewCompiler().WithStrict(true).WithSchemas(ss).WithUseTypeCheckAnnotations(true)
	compiler.Compile(b.Modules)
	var errs []error
	for _, e := range compiler.Errors {
		errs = append(errs, e)
	}
	pkg, err := ast.ParseRef(query)
	if err != nil {
		return append(errs, fmt.Errorf("query %q: %w", query, err))
	}
	kinds := map[string][]*ast.Rule{}
	for _, m := range b.Modules {
		if !m.Package.Path.Equal(pkg) {
			continue
		}
		for _, r := range m.Rules {
			name := r.Head.Name.String()
			if len(r.Head.Reference) > 0 {
				name = r.Head.Reference[0].Value.String()
			}
			kinds[name] = append(kinds[name], r)
		}
	}
	if len(kinds["allowed"]) == 0 {
		errs = append(errs, fmt.Errorf("%s.allowed is not defined: the broker grants nothing", query))
	}
	for _, r := range kinds["allowed"] {
		if r.Head.RuleKind() != ast.MultiValue {
			errs = append(errs, fmt.Errorf("%s: %s.allowed must be a set rule (allowed contains {...} if ...)", r.Location, query))
		}
	}
	for _, name := range []string{"token_ttl"} {
		for _, r := range kinds[name] {
			if r.Head.RuleKind() != ast.SingleValue {
				errs = append(errs, fmt.Errorf("%s: %s.%s must be a single value (a number of seconds)", r.Location, query, name))
			}
		}
	}
	for _, r := range kinds["reasons"] {
		if r.Head.RuleKind() != ast.MultiValue {
			errs = append(errs, fmt.Errorf("%s: %s.reasons must be a set of strings (reasons contains msg if ...)", r.Location, query))
		}
	}
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errs
}
