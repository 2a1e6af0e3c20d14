package policies

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/types"
)

// decisionSchema is the JSON schema of the rules the broker reads.
//
//go:embed schema/decision.json
var decisionSchema []byte

// DecisionSchema returns the JSON schema of the policy's decision rules.
func DecisionSchema() []byte { return decisionSchema }

// decisionRules are the rules the broker reads, in the schema's order.
var decisionRules = []string{"allowed", "token_ttl", "reasons"}

// decisionTypes are the schema's types of the decision rules in OPA's type
// system. OPA converts a JSON schema only for input annotations, so a
// module that copies each field of an input typed by the decision schema
// into a rule makes the type checker do the conversion.
var decisionTypes = sync.OnceValues(func() (map[string]types.Type, error) {
	var schema any
	if err := json.Unmarshal(decisionSchema, &schema); err != nil {
		return nil, fmt.Errorf("decision schema: %w", err)
	}
	ss := ast.NewSchemaSet()
	ss.Put(ast.MustParseRef("schema.decision"), schema)
	src := "# METADATA\n# schemas:\n#   - input: schema.decision\npackage tollgate.decision\n"
	for _, name := range decisionRules {
		src += fmt.Sprintf("%s := input.%s\n", name, name)
	}
	m, err := ast.ParseModuleWithOpts("decision.rego", src, ast.ParserOptions{ProcessAnnotation: true})
	if err != nil {
		return nil, fmt.Errorf("decision schema: %w", err)
	}
	c := ast.NewCompiler().WithSchemas(ss).WithUseTypeCheckAnnotations(true)
	if c.Compile(map[string]*ast.Module{"decision.rego": m}); c.Failed() {
		return nil, fmt.Errorf("decision schema: %w", c.Errors)
	}
	out := map[string]types.Type{}
	for _, name := range decisionRules {
		out[name] = c.TypeEnv.GetByRef(ast.MustParseRef("data.tollgate.decision." + name))
	}
	return out, nil
})

// OutputCheck is a compiler stage, run after type checking, that fails
// when a decision rule of the package query has a type the decision schema
// does not allow (token_ttl := "300"), so `policy check` and `policy test`
// find it before the broker silently ignores the value.
func OutputCheck(query string) (ast.CompilerStageDefinition, error) {
	pkg, err := ast.ParseRef(query)
	if err != nil {
		return ast.CompilerStageDefinition{}, fmt.Errorf("query %q: %w", query, err)
	}
	want, err := decisionTypes()
	if err != nil {
		return ast.CompilerStageDefinition{}, err
	}
	stage := func(c *ast.Compiler) *ast.Error {
		for _, name := range decisionRules {
			ref := pkg.Append(ast.StringTerm(name))
			got := c.TypeEnv.GetByRef(ref)
			if got == nil || fits(want[name], got) {
				continue
			}
			var loc *ast.Location
			if rules := c.GetRulesExact(ref); len(rules) > 0 {
				loc = rules[0].Location
			}
			return ast.NewError(ast.TypeErr, loc, "%s is %s, the decision schema wants %s (policies/schema/decision.json)",
				ref, types.Sprint(got), types.Sprint(want[name]))
		}
		return nil
	}
	return ast.CompilerStageDefinition{Name: "TollgateOutputCheck", MetricName: "compile_stage_tollgate_output_check", Stage: stage}, nil
}

// fits reports whether every value of type got is a value of type want,
// reading a JSON array in want as a Rego array or set. A type the checker
// could not infer (any) fits: only a certain mismatch is an error.
func fits(want, got types.Type) bool {
	want, got = unname(want), unname(got)
	if g, ok := got.(types.Any); ok {
		return len(g) == 0 || !slices.ContainsFunc(g, func(t types.Type) bool { return !fits(want, t) })
	}
	if got == nil {
		return true
	}
	switch w := want.(type) {
	case types.Any:
		return len(w) == 0 || slices.ContainsFunc(w, func(t types.Type) bool { return fits(t, got) })
	case *types.Array:
		switch g := got.(type) {
		case *types.Set:
			return fits(w.Dynamic(), g.Of())
		case *types.Array:
			for i := range g.Len() {
				if !fits(w.Dynamic(), g.Select(i)) {
					return false
				}
			}
			return fits(w.Dynamic(), g.Dynamic())
		}
		return false
	case *types.Object:
		g, ok := got.(*types.Object)
		if !ok {
			return false
		}
		for _, p := range g.StaticProperties() {
			if wt := w.Select(p.Key); wt != nil && !fits(wt, p.Value) {
				return false
			}
		}
		return true
	}
	return types.Compare(want, got) == 0
}

func unname(t types.Type) types.Type {
	if n, ok := t.(*types.NamedType); ok {
		return unname(n.Type)
	}
	return t
}
