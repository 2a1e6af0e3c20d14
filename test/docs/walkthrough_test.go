package docs

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestPolicyWalkthroughWorks does what policies/README.md's "From zero to a
// shipped policy" tells a new author: the Rego it shows, added to a copy of
// the shipped policy, formats clean, checks, passes its tests (and its test
// fails without the rule, as the page says), and grants what it promises.
// The page's commands run in TestEveryExampleRuns; this adds its code.
func TestPolicyWalkthroughWorks(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(repoRoot(), "policies", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## From zero to a shipped policy\n")
	if !ok {
		t.Fatal(`policies/README.md has no "## From zero to a shipped policy"`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	rego := regexp.MustCompile("(?s)```rego\n(.*?)```").FindAllStringSubmatch(section, -1)
	if len(rego) != 2 {
		t.Fatalf("want the test and the rule (2 rego blocks), found %d", len(rego))
	}
	dir := t.TempDir()
	run := func(args ...string) (string, error) {
		cmd := exec.Command(tollgateBin, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	mine := filepath.Join(dir, "mine")
	if out, err := exec.Command("cp", "-R", filepath.Join(repoRoot(), "policies", "default"), mine).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	write(t, filepath.Join(mine, "release_test.rego"), rego[0][1])
	if out, err := run("policy", "test", "mine"); err == nil || !strings.Contains(out, "FAIL: 1/") {
		t.Errorf("the walkthrough's test passes without its rule:\n%s", out)
	}
	write(t, filepath.Join(mine, "release.rego"), rego[1][1])
	for _, args := range [][]string{
		{"policy", "fmt", "--fail", "-l", "mine"},
		{"policy", "check", "mine"},
		{"policy", "test", "mine"},
	} {
		if out, err := run(args...); err != nil {
			t.Errorf("tollgate %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	out, err := run("policy", "eval", "--policy", "mine", "--user", "rel", "--groups", "release",
		"--scope", "repository:team/release/app:push", "--explain")
	if err != nil || !strings.Contains(out, "granted: push") || !strings.Contains(out, "member of release") {
		t.Errorf("policy eval of the walkthrough's request: %v\n%s", err, out)
	}
}
