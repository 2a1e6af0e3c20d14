package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// policy check names files as policy test and opa do (DIR/p.rego:4, not
// /p.rego:4), counts in English, and finds a decision rule of the wrong
// type.
func TestPolicyCheckNamesFilesAndCountsProblems(t *testing.T) {
	for name, c := range map[string]struct {
		rego, want, exit string
	}{
		"typo":                {strings.Replace(tinyPolicy, "input.identity.subject", "input.identity.subjct", 1), "/p.rego:4: rego_type_error: undefined ref: input.identity.subjct", "1 problem"},
		"token_ttl as string": {tinyPolicy + `token_ttl := "300"`, "/p.rego:6: rego_type_error: data.registry.authz.token_ttl is string", "1 problem"},
		"two problems":        {strings.Replace(tinyPolicy, "input.identity.subject", "input.identity.subjct", 1) + `token_ttl := "300"`, "/p.rego:4:", "2 problems"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := policyDir(t, map[string]string{"p.rego": c.rego})
			out, err := run(t, "", "policy", "check", dir)
			if exitCode(err) != 1 || err.Error() != c.exit {
				t.Fatalf("exit %d (%v), want 1 (%s)\n%s", exitCode(err), err, c.exit, out)
			}
			if want := filepath.Clean(dir) + c.want; !strings.Contains(out, want) {
				t.Fatalf("output lacks %q:\n%s", want, out)
			}
		})
	}
}
