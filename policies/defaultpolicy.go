package policies

import (
	"embed"
	"io/fs"
)

//go:embed default/authz.rego default/data.json
var defaultPolicy embed.FS

// DefaultFS returns the default policy and its example data (authz.rego,
// data.json) in OPA's bundle layout, as shipped with the binary.
func DefaultFS() fs.FS {
	sub, err := fs.Sub(defaultPolicy, "default")
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	return sub
}
