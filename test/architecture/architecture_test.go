// Package architecture checks the import rules of docs/decisions/0012:
// arrows point from a package to what it uses, and none may point back up.
package architecture

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/tollgate/tollgate"

// rule forbids the packages under from to depend, directly or not, on the
// packages under any of never.
type rule struct {
	from  string
	never []string
	why   string
}

var rules = []rule{
	{"identity", []string{"broker", "policies", "bundles", "cmd"}, "identity adapters know nothing of HTTP or policy"},
	{"bundles", []string{"broker", "policies", "identity", "cmd"}, "bundles load policy files and nothing else"},
	{"policies", []string{"broker", "cmd"}, "the policy engine is used by the broker, never the other way"},
	{"broker", []string{"policies", "bundles", "github.com/open-policy-agent/opa", "cmd"}, "the broker talks to the policy engine through authz only"},
	{"authz", []string{"broker", "policies", "bundles", "github.com/open-policy-agent/opa", "cmd"}, "the contract is a leaf both sides import"},
	{"scope", []string{"broker", "policies", "bundles", "identity", "authz", "cmd"}, "scope parsing is a leaf"},
	{"internal", []string{"broker", "policies", "bundles", "identity", "authz", "cmd"}, "internal packages are leaves"},
}

// under reports whether pkg is path or below it; paths without a dot are
// this module's.
func under(pkg, path string) bool {
	if !strings.Contains(strings.Split(path, "/")[0], ".") {
		path = module + "/" + path
	}
	return pkg == path || strings.HasPrefix(pkg, path+"/")
}

// violations lists every dependency the rules forbid; deps maps each
// package to all it depends on.
func violations(deps map[string][]string) []string {
	var out []string
	for pkg, all := range deps {
		for _, r := range rules {
			if !under(pkg, r.from) {
				continue
			}
			for _, d := range all {
				for _, bad := range r.never {
					if under(d, bad) {
						out = append(out, pkg+" depends on "+d+": "+r.why)
					}
				}
			}
		}
	}
	return out
}

// moduleDeps asks the go command for each package of the module (not its
// tests) and everything it depends on.
func moduleDeps(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, module+"/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		deps[f[0]] = f[1:]
	}
	if len(deps) < 10 {
		t.Fatalf("go list found only %d packages", len(deps))
	}
	return deps
}

func TestImportRules(t *testing.T) {
	for _, v := range violations(moduleDeps(t)) {
		t.Error(v)
	}
}

// TestImportRulesCatchViolations: the rules do see a forbidden arrow, also
// one that goes through another package.
func TestImportRulesCatchViolations(t *testing.T) {
	deps := map[string][]string{
		module + "/identity/ldap": {module + "/identity", module + "/broker"},
		module + "/broker":        {module + "/authz", "github.com/open-policy-agent/opa/v1/rego"},
		module + "/policies":      {module + "/authz", module + "/bundles"},
		module + "/brokerage":     {module + "/broker"}, // a name that merely starts like one
	}
	got := violations(deps)
	if len(got) != 2 {
		t.Fatalf("got %d violations, want identity/ldap → broker and broker → opa:\n%s", len(got), strings.Join(got, "\n"))
	}
}
