package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/tollgate/tollgate/test/testenv"
)

// The acceptance test of issue 6: the real `opa` CLI and `tollgate policy
// test` give the same pass/fail results and coverage on every policy in the
// repository, including a deliberately failing fixture.

// parityOPA finds the opa binary. Under CI=true a missing (or too old) opa
// fails the test; elsewhere the test skips, naming the command that
// installs it.
func parityOPA(t *testing.T) string {
	t.Helper()
	missing := func(msg string) { testenv.Missing(t, msg) }
	opa := testenv.Lookup("opa")
	if opa == "" {
		missing("opa is not installed")
	}
	out, err := exec.Command(opa, "version").Output()
	if err != nil {
		missing(fmt.Sprintf("%s version: %v", opa, err))
	}
	version := regexp.MustCompile(`(?m)^Version: (\S+)`).FindSubmatch(out)
	if version == nil || !bytes.HasPrefix(version[1], []byte("1.")) {
		missing(fmt.Sprintf("%s is not opa 1.x:\n%s", opa, out))
	}
	t.Logf("%s, version %s", opa, version[1])
	return opa
}

// parityPolicyDirs are every policy in the repository that has Rego tests,
// and the deliberately failing fixture.
func parityPolicyDirs(t *testing.T) []string {
	t.Helper()
	dirs := []string{"../../policies/default", "../../policies/testdata/failing"}
	examples, err := filepath.Glob("../../policies/examples/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range examples {
		// harbor-projects is a README that points at policies/default.
		if rego, _ := filepath.Glob(filepath.Join(d, "*.rego")); len(rego) > 0 {
			dirs = append(dirs, d)
		}
	}
	if len(dirs) < 6 {
		t.Fatalf("found %d policies (%v), want default, the fixture and at least 4 examples", len(dirs), dirs)
	}
	return dirs
}

// tollgatePolicyTest runs `tollgate policy test ARGS` in-process and
// returns its standard output and exit status apart from what it writes to
// standard error, as the shell would see them.
func tollgatePolicyTest(t *testing.T, args ...string) (stdout string, status int) {
	t.Helper()
	stdout, _, status = tollgatePolicyTestStderr(t, args...)
	return stdout, status
}

// tollgatePolicyTestStderr is tollgatePolicyTest with the standard error
// the binary would print: what the command wrote, then its error (the
// message of an exit error; any other as main prints it, "tollgate: ...").
func tollgatePolicyTestStderr(t *testing.T, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	app := newApp()
	var out, errOut bytes.Buffer
	app.Reader, app.Writer, app.ErrWriter = strings.NewReader(""), &out, &errOut
	app.ExitErrHandler = func(*cli.Context, error) {}
	err := runApp(app, append([]string{"tollgate", "policy", "test"}, args...))
	var ec cli.ExitCoder
	switch {
	case errors.As(err, &ec):
		fmt.Fprintln(&errOut, err)
	case err != nil:
		fmt.Fprintln(&errOut, "tollgate:", err)
	}
	return out.String(), errOut.String(), exitCode(err)
}

// opaTest runs `opa test ARGS` and returns its standard output and exit
// status.
func opaTest(t *testing.T, opa string, args ...string) (stdout string, status int) {
	t.Helper()
	stdout, _, status = opaTestStderr(t, opa, args...)
	return stdout, status
}

// opaTestStderr is opaTest with opa's standard error.
func opaTestStderr(t *testing.T, opa string, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	cmd := exec.Command(opa, append([]string{"test"}, args...)...)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	out, err := cmd.Output()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return string(out), errOut.String(), ee.ExitCode()
	case err != nil:
		t.Fatalf("opa test %v: %v", args, err)
	}
	return string(out), errOut.String(), 0
}

// testVerdicts reads `--format json` output: package.name -> PASS, FAIL,
// ERROR or SKIP.
func testVerdicts(t *testing.T, who, out string) map[string]string {
	t.Helper()
	var results []struct {
		Package string          `json:"package"`
		Name    string          `json:"name"`
		Fail    bool            `json:"fail"`
		Skip    bool            `json:"skip"`
		Error   json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &results); err != nil {
		t.Fatalf("%s: --format json output is not a JSON list of results: %v\n%s", who, err, out)
	}
	m := map[string]string{}
	for _, r := range results {
		v := "PASS"
		switch {
		case len(r.Error) > 0 && string(r.Error) != "null":
			v = "ERROR"
		case r.Fail:
			v = "FAIL"
		case r.Skip:
			v = "SKIP"
		}
		m[r.Package+"."+r.Name] = v
	}
	return m
}

// coverageReport reads `--coverage` output: the total and each file's
// coverage, with its paths relative to the policy directory.
func coverageReport(t *testing.T, who, dir, out string) (total float64, files map[string]float64) {
	t.Helper()
	var report struct {
		Coverage *float64 `json:"coverage"`
		Files    map[string]struct {
			Coverage float64 `json:"coverage"`
		} `json:"files"`
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil || report.Coverage == nil {
		t.Fatalf("%s: no coverage report (%v):\n%s", who, err, out)
	}
	files = map[string]float64{}
	for name, f := range report.Files {
		rel, err := filepath.Rel(dir, name)
		if err != nil {
			rel = name
		}
		files[rel] = f.Coverage
	}
	return *report.Coverage, files
}

// normalizedText makes pretty output comparable: durations removed, lines
// sorted (both runners run tests in parallel, so their order varies).
func normalizedText(out string) []string {
	out = regexp.MustCompile(`\(\d+(\.\d+)?(ns|µs|ms|s|m)[^)]*\)`).ReplaceAllString(out, "(D)")
	lines := strings.Split(out, "\n")
	slices.Sort(lines)
	return lines
}

func TestPolicyTestMatchesOPA(t *testing.T) {
	opa := parityOPA(t)
	for _, dir := range parityPolicyDirs(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			// Verdicts and exit status, from --format json.
			opaOut, opaStatus := opaTest(t, opa, "--format", "json", dir)
			tgOut, tgStatus := tollgatePolicyTest(t, "--format", "json", dir)
			want, got := testVerdicts(t, "opa", opaOut), testVerdicts(t, "tollgate", tgOut)
			if len(want) == 0 {
				t.Fatalf("opa found no tests in %s", dir)
			}
			for name, v := range want {
				if got[name] != v {
					t.Errorf("%s: opa %s, tollgate %q", name, v, got[name])
				}
			}
			for name := range got {
				if _, ok := want[name]; !ok {
					t.Errorf("%s: run by tollgate only", name)
				}
			}
			if opaStatus != tgStatus {
				t.Errorf("--format json: exit status opa %d, tollgate %d", opaStatus, tgStatus)
			}
			failing := slices.ContainsFunc(slices.Collect(maps.Values(want)), func(v string) bool { return v != "PASS" })
			if wantFailing := filepath.Base(dir) == "failing"; failing != wantFailing {
				t.Fatalf("failing tests in %s: %v, want %v (verdicts %v)", dir, failing, wantFailing, want)
			}

			// The same text, plain and verbose.
			for _, args := range [][]string{{dir}, {"-v", dir}} {
				opaOut, opaStatus := opaTest(t, opa, args...)
				tgOut, tgStatus := tollgatePolicyTest(t, args...)
				if opaStatus != tgStatus {
					t.Errorf("%v: exit status opa %d, tollgate %d", args, opaStatus, tgStatus)
				}
				if o, g := normalizedText(opaOut), normalizedText(tgOut); !slices.Equal(o, g) {
					t.Errorf("%v: output differs\nopa:\n%s\ntollgate:\n%s", args, opaOut, tgOut)
				}
			}

			// Coverage: the same report, or, with a failing test, the same
			// exit status and no report from either.
			opaOut, opaStatus = opaTest(t, opa, "--coverage", dir)
			tgOut, tgStatus = tollgatePolicyTest(t, "--coverage", dir)
			if opaStatus != tgStatus {
				t.Errorf("--coverage: exit status opa %d, tollgate %d", opaStatus, tgStatus)
			}
			if failing {
				if strings.Contains(opaOut, `"coverage"`) || strings.Contains(tgOut, `"coverage"`) {
					t.Errorf("coverage reported despite failing tests:\nopa:\n%s\ntollgate:\n%s", opaOut, tgOut)
				}
				return
			}
			opaTotal, opaFiles := coverageReport(t, "opa", dir, opaOut)
			tgTotal, tgFiles := coverageReport(t, "tollgate", dir, tgOut)
			if opaTotal != tgTotal {
				t.Errorf("coverage: opa %.2f%%, tollgate %.2f%%", opaTotal, tgTotal)
			}
			for name, c := range opaFiles {
				if g, ok := tgFiles[name]; !ok || g != c {
					t.Errorf("coverage of %s: opa %.2f%%, tollgate %.2f%% (reported: %v)", name, c, g, ok)
				}
			}
			if len(tgFiles) != len(opaFiles) {
				t.Errorf("coverage of %d files by opa, %d by tollgate", len(opaFiles), len(tgFiles))
			}

			// A threshold above the coverage fails both with status 2.
			if opaTotal < 100 {
				above := fmt.Sprintf("%.2f", min(opaTotal+0.5, 100))
				_, opaStatus = opaTest(t, opa, "--coverage", "--threshold", above, dir)
				_, tgStatus = tollgatePolicyTest(t, "--coverage", "--threshold", above, dir)
				if opaStatus != 2 || tgStatus != 2 {
					t.Errorf("--threshold %s above %.2f%%: exit status opa %d, tollgate %d, want 2", above, opaTotal, opaStatus, tgStatus)
				}
			}
		})
	}
}

// TestPolicyTestMatchesOPABelowThreshold: the coverage threshold fails both
// the same way, on a policy that is not fully covered (the examples are).
func TestPolicyTestMatchesOPABelowThreshold(t *testing.T) {
	opa := parityOPA(t)
	dir := partlyCoveredPolicy(t)
	// Met: both print the same report. Not met: both print nothing on
	// standard output (the shortfall goes to standard error) and exit 2.
	for _, c := range []struct {
		threshold string
		status    int
	}{{"50", 0}, {"71.42", 0}, {"71.43", 2}, {"100", 2}} {
		opaOut, opaStatus := opaTest(t, opa, "--threshold", c.threshold, dir)
		tgOut, tgStatus := tollgatePolicyTest(t, "--threshold", c.threshold, dir)
		if opaStatus != c.status || tgStatus != c.status {
			t.Errorf("--threshold %s (implies --coverage): exit status opa %d, tollgate %d, want %d", c.threshold, opaStatus, tgStatus, c.status)
		}
		if c.status != 0 {
			if opaOut != "" || tgOut != "" {
				t.Errorf("--threshold %s not met: output\nopa:\n%s\ntollgate:\n%s", c.threshold, opaOut, tgOut)
			}
			continue
		}
		opaTotal, _ := coverageReport(t, "opa", dir, opaOut)
		tgTotal, _ := coverageReport(t, "tollgate", dir, tgOut)
		if opaTotal != tgTotal || opaTotal >= 100 {
			t.Errorf("coverage: opa %.2f%%, tollgate %.2f%%, want equal and below 100", opaTotal, tgTotal)
		}
	}
}

// partlyCoveredPolicy is a policy whose tests cover 5 of its 7 lines.
func partlyCoveredPolicy(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	write := func(name, src string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("authz.rego", `package registry.authz

allowed contains {"type": "repository", "name": s.name, "action": "pull"} if {
	some s in input.scopes
	input.identity.subject == "alice"
}

allowed contains {"type": "repository", "name": s.name, "action": "push"} if {
	some s in input.scopes
	input.identity.subject == "admin"
}
`)
	write("authz_test.rego", `package registry.authz_test

import data.registry.authz

test_alice_pulls if {
	authz.allowed == {{"type": "repository", "name": "a", "action": "pull"}} with input as {"identity": {"subject": "alice"}, "scopes": [{"name": "a"}]}
}
`)
	return dir
}

// TestPolicyTestMoreFlagsMatchOPA: --coverage-runs (which implies
// --coverage), --sort and -m/--max-errors do what they do in opa test: the
// same output, standard error and exit status.
func TestPolicyTestMoreFlagsMatchOPA(t *testing.T) {
	opa := parityOPA(t)
	covered := partlyCoveredPolicy(t)
	broken := policyDir(t, map[string]string{"authz.rego": `package registry.authz

a := f(1)

b := g(2)

c := h(3)
`})
	for _, c := range []struct {
		dir  string
		args []string
	}{
		{covered, []string{"--coverage"}},
		{covered, []string{"--coverage-runs", "index_excluded", "--coverage-runs", "early_exit"}},
		{covered, []string{"--coverage-runs", "early_exit"}},
		{covered, []string{"--coverage", "--coverage-runs", ""}},
		{covered, []string{"--coverage", "--coverage-runs", "index_excluded,early_exit"}},
		{covered, []string{"--coverage-runs", "everything"}},
		{"../../policies/default", []string{"--format", "json", "--sort", "duration"}},
		{"../../policies/default", []string{"--sort", "duration"}},
		{"../../policies/default", []string{"--sort", "name"}},
		{broken, nil},
		{broken, []string{"-m", "1"}},
		{broken, []string{"--max-errors", "2"}},
	} {
		opaOut, opaErr, opaStatus := opaTestStderr(t, opa, slices.Concat([]string{"-s", parityInputSchema}, c.args, []string{c.dir})...)
		tgOut, tgErr, tgStatus := tollgatePolicyTestStderr(t, append([]string{c.dir}, c.args...)...)
		tgErr = strings.TrimPrefix(tgErr, "tollgate: ")
		if opaStatus != tgStatus {
			t.Errorf("%v: exit status opa %d, tollgate %d", c.args, opaStatus, tgStatus)
		}
		if o, g := normalizedOutput(t, opaOut), normalizedOutput(t, tgOut); !slices.Equal(o, g) {
			t.Errorf("%v: output differs\nopa:\n%s\ntollgate:\n%s", c.args, opaOut, tgOut)
		}
		// A bad flag value is refused by both, in each one's words.
		badValue := strings.HasPrefix(opaErr, "Error: invalid")
		if opaStatus == 1 && !badValue && opaErr != tgErr || opaStatus == 0 && opaErr != "" && !strings.HasPrefix(tgErr, opaErr) {
			t.Errorf("%v: standard error differs\nopa:\n%s\ntollgate:\n%s", c.args, opaErr, tgErr)
		}
	}
}

// parityCorpus are the policy directories of testdata/opa-parity (and the
// failing fixture) with the flags both runners get: every kind of verdict,
// exit status and loading opa test knows.
var parityCorpus = []struct {
	dir    string
	args   []string
	status int // of both, without --coverage
}{
	{"skipped", nil, 2},
	{"skipped", []string{"-z"}, 0},
	{"skipped", []string{"--fail-on-empty"}, 2},
	{"empty", nil, 0},
	{"empty", []string{"--fail-on-empty"}, 1},
	{"v0", nil, 1}, // a parse error
	{"v0", []string{"--v0-compatible"}, 0},
	{"v0", []string{"--v0-compatible", "--capabilities", "v0.34.0"}, 0},
	{"stray", nil, 1}, // notes/ is not JSON: a loading error
	{"stray", []string{"--ignore", "notes"}, 0},
	{"stray", []string{"--ignore", "notes", "-p", "1", "--count", "2"}, 0},
	{"bundle", []string{"-b"}, 0},
	{"bundle", []string{"-b", "--run", "home"}, 0},
	{"bundle", []string{"-b", "--capabilities", "v0.34.0"}, 1}, // v1 syntax is newer
	{"../../../../policies/testdata/failing", nil, 2},
	{"../../../../policies/testdata/failing", []string{"-z"}, 2},
}

// The intended difference: tollgate applies its input schema unless told
// otherwise, opa only with -s, so opa gets -s with the same schema.
const parityInputSchema = "../../policies/schema/input.json"

// TestPolicyTestCorpusMatchesOPA: on each directory of the corpus, with
// each output (plain, -v, --format json, --coverage), opa test and
// tollgate policy test (given its flags after the path) exit with the same
// status and print the same output but for durations and test order.
func TestPolicyTestCorpusMatchesOPA(t *testing.T) {
	opa := parityOPA(t)
	for _, c := range parityCorpus {
		dir := filepath.Join("testdata/opa-parity", c.dir)
		t.Run(strings.Join(append([]string{filepath.Base(c.dir)}, c.args...), " "), func(t *testing.T) {
			for _, output := range [][]string{nil, {"-v"}, {"--format", "json"}, {"--coverage"}} {
				args := slices.Concat(c.args, output)
				opaOut, opaStatus := opaTest(t, opa, slices.Concat([]string{"-s", parityInputSchema}, args, []string{dir})...)
				tgOut, tgStatus := tollgatePolicyTest(t, append([]string{dir}, args...)...)
				if opaStatus != tgStatus {
					t.Errorf("%v: exit status opa %d, tollgate %d", args, opaStatus, tgStatus)
				}
				if output == nil && opaStatus != c.status {
					t.Errorf("%v: exit status %d, want %d", args, opaStatus, c.status)
				}
				if o, g := normalizedOutput(t, opaOut), normalizedOutput(t, tgOut); !slices.Equal(o, g) {
					t.Errorf("%v: output differs\nopa:\n%s\ntollgate:\n%s", args, opaOut, tgOut)
				}
			}
		})
	}

	// Benchmarks: the same benchmarks in the same format, numbers aside.
	args := []string{"--bench", "--format", "gobench", "-b", "--run", "home"}
	dir := "testdata/opa-parity/bundle"
	opaOut, opaStatus := opaTest(t, opa, append(args, dir)...)
	tgOut, tgStatus := tollgatePolicyTest(t, append([]string{dir}, args...)...)
	numbers := regexp.MustCompile(`[ \t]*[0-9.]+`) // with the padding that depends on their width
	opaOut, tgOut = numbers.ReplaceAllString(opaOut, " N"), numbers.ReplaceAllString(tgOut, " N")
	if opaStatus != 0 || tgStatus != 0 || opaOut != tgOut || !strings.Contains(opaOut, "BenchmarkDataRegistryAuthzTestTestHomeNamespace") {
		t.Errorf("%v: exit status opa %d, tollgate %d; output\nopa:\n%s\ntollgate:\n%s", args, opaStatus, tgStatus, opaOut, tgOut)
	}
}

// normalizedOutput is normalizedText, or for JSON output (--format json,
// --coverage; one document per --count) the documents without durations,
// lists sorted.
func normalizedOutput(t *testing.T, out string) []string {
	t.Helper()
	var docs []any
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var doc any
		if dec.Decode(&doc) != nil {
			return normalizedText(out)
		}
		docs = append(docs, withoutDurations(doc))
	}
	if len(docs) == 0 {
		return normalizedText(out)
	}
	b, err := json.MarshalIndent(docs, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(string(b), "\n")
}

func withoutDurations(v any) any {
	switch v := v.(type) {
	case map[string]any:
		delete(v, "duration")
		for k, x := range v {
			v[k] = withoutDurations(x)
		}
	case []any:
		for i, x := range v {
			v[i] = withoutDurations(x)
		}
		slices.SortFunc(v, func(a, b any) int {
			x, _ := json.Marshal(a)
			y, _ := json.Marshal(b)
			return bytes.Compare(x, y)
		})
	}
	return v
}
