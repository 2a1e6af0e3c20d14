package policies

import (
	_ "embed"
	"encoding/json"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
)

// inputSchema is the JSON schema of the policy input, version 1.
//
//go:embed schema/input.json
var inputSchema []byte

// InputSchema returns the JSON schema of the document policies see as input.
func InputSchema() []byte { return inputSchema }

// SchemaSet returns the input schema in the form OPA's type checker uses,
// so a policy that reads a field the input does not have fails to compile.
func SchemaSet() (*ast.SchemaSet, error) {
	var schema any
	if err := json.Unmarshal(inputSchema, &schema); err != nil {
		return nil, fmt.Errorf("input schema: %w", err)
	}
	ss := ast.NewSchemaSet()
	ss.Put(ast.SchemaRootRef, schema)
	return ss, nil
}
