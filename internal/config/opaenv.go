package config

import (
	"os"
	"regexp"

	"go.yaml.in/yaml/v3"
)

// envInOPA is what `opa run` replaces in its configuration file: ${NAME},
// up to the first }, on one line (OPA's internal/config envRegex).
var envInOPA = regexp.MustCompile(`(?U:\${.*})`)

// expandOPAEnv replaces, in every scalar value of the opa: document n,
// ${NAME} by the environment variable's value as `opa run` does: an
// undefined variable stays as written, a defined one (empty included) is
// replaced; there is no escape. OPA replaces in the file's text before
// parsing it; tollgate has parsed the file already, so it replaces in the
// values, which is the same for any value that is not YAML itself, and
// a variable cannot add keys (persistence_directory, services). A plain
// value is resolved again: ${DELAY} holding 10 is a number, "${DELAY}" a
// string, as in OPA. Keys are not expanded.
func expandOPAEnv(n *yaml.Node) {
	switch n.Kind {
	case yaml.ScalarNode:
		v := envInOPA.ReplaceAllStringFunc(n.Value, func(ref string) string {
			if v, ok := os.LookupEnv(ref[2 : len(ref)-1]); ok {
				return v
			}
			return ref
		})
		if v != n.Value {
			n.Value = v
			if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
				n.Tag = "" // resolved again when written: a number, a boolean
			}
		}
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			expandOPAEnv(n.Content[i])
		}
	default:
		for _, c := range n.Content {
			expandOPAEnv(c)
		}
	}
}
