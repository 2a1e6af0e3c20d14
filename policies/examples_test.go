package policies_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/bundles"
	"github.com/tollgate/tollgate/policies"
)

// The examples in policies/examples: each is a complete policy with its
// tests. They must pass, cover at least 90% of their lines, be opa fmt
// clean, compile in strict mode, pass `policy check` against the input
// schema, and load into the engine as the broker loads a policy.
// harbor-projects is the exception: it points at the default policy
// (TestHarborProjectsExampleIsTheDefaultPolicy).
func TestExamples(t *testing.T) {
	dirs, err := filepath.Glob("examples/*")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, dir := range dirs {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() || filepath.Base(dir) == harborProjects {
			continue
		}
		n++
		t.Run(filepath.Base(dir), func(t *testing.T) {
			runRegoTests(t, dir, 8, 90)
			formattedAndStrict(t, dir)
			b, err := bundles.LoadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range policies.Check(b, policies.DefaultQuery) {
				t.Errorf("policy check: %v", e)
			}
			if _, err := policies.Compile(context.Background(), b, policies.DefaultQuery); err != nil {
				t.Fatal(err)
			}
		})
	}
	if n < 4 {
		t.Fatalf("%d examples found, want at least 4", n)
	}
}

// TestBusinessHoursExampleIsNeverCached: the example that reads the client
// address and the clock runs without the decision cache, by itself.
func TestBusinessHoursExampleIsNeverCached(t *testing.T) {
	b, err := bundles.LoadDir("examples/business-hours")
	if err != nil {
		t.Fatal(err)
	}
	if policies.Uncacheable(b) == "" {
		t.Fatal("the business-hours example would be served from the decision cache")
	}
}

const harborProjects = "harbor-projects"

// TestHarborProjectsExampleIsTheDefaultPolicy: the Harbor-like example is
// the default policy itself, not a copy that could drift from it. Its
// directory holds only a README that links to policies/default, and every
// file it links to exists (the default's own tests run in
// TestDefaultPolicyRegoTests).
func TestHarborProjectsExampleIsTheDefaultPolicy(t *testing.T) {
	dir := filepath.Join("examples", harborProjects)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "README.md" {
			t.Errorf("%s/%s: this example is policies/default; keep only the README that points there", dir, e.Name())
		}
	}
	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	links := regexp.MustCompile(`\]\((\.\./\.\./default/[^)]*)\)`).FindAllStringSubmatch(string(readme), -1)
	if len(links) < 4 {
		t.Fatalf("the README links to policies/default %d times, want the directory and its three files", len(links))
	}
	for _, l := range links {
		if _, err := os.Stat(filepath.Join(dir, l[1])); err != nil {
			t.Errorf("broken link %s: %v", l[1], err)
		}
	}
}

// TestExamplesREADMEListsEveryExample: policies/README.md's index names
// every example directory.
func TestExamplesREADMEListsEveryExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	dirs, _ := filepath.Glob("examples/*")
	for _, dir := range dirs {
		if !strings.Contains(string(readme), "(examples/"+filepath.Base(dir)+"/)") {
			t.Errorf("policies/README.md does not list %s", dir)
		}
	}
}
