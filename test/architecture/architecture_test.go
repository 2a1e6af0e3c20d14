// Package architecture checks the import rules of docs/decisions/0012:
// arrows point from a package to what it uses, and none may point back up.
package architecture

import (
	"bufio"
	"bytes"
	"os"
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

// above are the packages that assemble the product: the configuration file
// and the serve runtime (decision 0012). Only cmd uses them.
var above = []string{"internal/config", "internal/serve", "cmd"}

var rules = []rule{
	{"identity", with(above, "broker", "policies", "bundles"), "identity adapters know nothing of HTTP or policy"},
	{"bundles", with(above, "broker", "policies", "identity"), "bundles load policy files and nothing else"},
	{"policies", with(above, "broker"), "the policy engine is used by the broker, never the other way"},
	{"broker", with(above, "policies", "bundles", "github.com/open-policy-agent/opa"), "the broker talks to the policy engine through authz only"},
	{"authz", with(above, "broker", "policies", "bundles", "github.com/open-policy-agent/opa"), "the contract is a leaf both sides import"},
	{"scope", with(above, "broker", "policies", "bundles", "identity", "authz"), "scope parsing is a leaf"},
	{"internal/config", []string{"internal/serve", "cmd"}, "the configuration is read by the runtime, never the other way"},
	{"internal/serve", []string{"cmd"}, "the runtime is driven by the CLI, never the other way"},
	{"internal/atomicfile", with(above, leafNever...), "internal helpers are leaves"},
	{"internal/secret", with(above, leafNever...), "internal helpers are leaves"},
	{"internal/yamlconf", with(above, leafNever...), "internal helpers are leaves"},
	{"internal/probe", with(above, leafNever...), "internal helpers are leaves"},
	{"internal/ownedfs", with(above, leafNever...), "internal helpers are leaves"},
	{"internal/logwrite", with(above, leafNever...), "internal helpers are leaves"},
	{"internal/credhelper", with(above, clientNever...), "the client side speaks the wire contract, not the broker's code"},
	{"internal/devicelogin", with(above, clientNever...), "the client side speaks the wire contract, not the broker's code"},
	{"test/opatest", with(above, leafNever...), "a fake shared by unit and e2e tests speaks the wire API, not the broker's code"},
}

// clientNever is what the client side (login, logout, the credential
// helper) may not use: it talks to a broker over HTTP only.
var clientNever = append([]string{"github.com/open-policy-agent/opa"}, leafNever...)

// leafNever is what a leaf helper may not use besides the assembling packages.
var leafNever = []string{"broker", "policies", "bundles", "identity", "authz"}

// with is more and list, in a new slice.
func with(list []string, more ...string) []string {
	return append(append([]string{}, more...), list...)
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
		module + "/identity/ldap":  {module + "/identity", module + "/broker"},
		module + "/broker":         {module + "/authz", "github.com/open-policy-agent/opa/v1/rego"},
		module + "/policies":       {module + "/authz", module + "/bundles"},
		module + "/brokerage":      {module + "/broker"}, // a name that merely starts like one
		module + "/bundles":        {module + "/internal/config"},
		module + "/internal/serve": {module + "/internal/config", module + "/broker"},
	}
	got := violations(deps)
	if len(got) != 3 {
		t.Fatalf("got %d violations, want identity/ldap → broker, broker → opa and bundles → internal/config:\n%s", len(got), strings.Join(got, "\n"))
	}
}

// TestReadmeLayoutNamesEveryPackage: the README's layout table names every
// package of the module (by its path, or by its last element in its
// parent's row), so the map a newcomer reads matches the tree.
func TestReadmeLayoutNamesEveryPackage(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	start := strings.Index(section, "## Layout")
	if start < 0 {
		t.Fatal("README.md has no Layout section")
	}
	section = section[start:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	for pkg := range moduleDeps(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(pkg, module), "/")
		parts := strings.Split(rel, "/")
		if rel == "" || len(parts) > 2 {
			continue
		}
		if !strings.Contains(section, "`"+rel+"`") && !strings.Contains(section, "`"+parts[len(parts)-1]+"`") {
			t.Errorf("the README's layout table does not name %s", rel)
		}
	}
}
