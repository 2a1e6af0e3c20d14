package policies

import (
	"cmp"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/tollgate/tollgate/bundles"
)

// Check compiles a bundle the way the broker will, plus what a reviewer
// would catch: strict mode (unused variables and imports, shadowed names),
// type-checking every use of input against the published input schema,
// and the shape and type of the rules the broker reads (the decision
// schema). It returns every problem, each an *ast.Error with a location
// when it has one, in file and line order.
func Check(b *bundles.Bundle, query string) []error {
	ss, err := SchemaSet()
	if err != nil {
		return []error{err}
	}
	output, err := OutputCheck(query)
	if err != nil {
		return []error{err}
	}
	pkg, _ := ast.ParseRef(query) // OutputCheck parsed it
	compiler := ast.NewCompiler().WithStrict(true).WithSchemas(ss).WithUseTypeCheckAnnotations(true).
		WithStageAfterID(ast.StageCheckTypes, output)
	compiler.Compile(b.Modules)
	var errs []error
	for _, e := range compiler.Errors {
		errs = append(errs, e)
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
		errs = append(errs, ast.NewError(ast.CompileErr, nil, "%s.allowed is not defined: the broker grants nothing", query))
	}
	for _, r := range kinds["allowed"] {
		if r.Head.RuleKind() != ast.MultiValue {
			errs = append(errs, ast.NewError(ast.CompileErr, r.Location, "%s.allowed must be a set rule (allowed contains {...} if ...)", query))
		}
	}
	for _, name := range []string{"token_ttl"} {
		for _, r := range kinds[name] {
			if r.Head.RuleKind() != ast.SingleValue {
				errs = append(errs, ast.NewError(ast.CompileErr, r.Location, "%s.%s must be a single value (a number of seconds)", query, name))
			}
		}
	}
	for _, r := range kinds["reasons"] {
		if r.Head.RuleKind() != ast.MultiValue {
			errs = append(errs, ast.NewError(ast.CompileErr, r.Location, "%s.reasons must be a set of strings (reasons contains msg if ...)", query))
		}
	}
	slices.SortStableFunc(errs, func(a, b error) int {
		return cmp.Or(cmp.Compare(errorFile(a), errorFile(b)), cmp.Compare(errorRow(a), errorRow(b)), cmp.Compare(a.Error(), b.Error()))
	})
	return errs
}

func errorFile(err error) string {
	if e, ok := err.(*ast.Error); ok && e.Location != nil {
		return e.Location.File
	}
	return ""
}

func errorRow(err error) int {
	if e, ok := err.(*ast.Error); ok && e.Location != nil {
		return e.Location.Row
	}
	return 0
}
