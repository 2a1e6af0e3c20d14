package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/test/testenv"
)

// policyDirs are every policy in the repository with Rego tests, and the
// deliberately failing fixture.
func policyDirs(t *testing.T) []string {
	t.Helper()
	dirs := []string{"../../policies/default", "../../policies/testdata/failing"}
	examples, _ := filepath.Glob("../../policies/examples/*")
	for _, d := range examples {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

var testLine = regexp.MustCompile(`(?m)^(data\.\S+): (PASS|FAIL|ERROR|SKIPPED)\b`)

// verdicts reads `-v` output: test name -> PASS/FAIL/ERROR/SKIPPED.
func verdicts(out string) map[string]string {
	m := map[string]string{}
	for _, g := range testLine.FindAllStringSubmatch(out, -1) {
		m[g[1]] = g[2]
	}
	return m
}

func coverage(t *testing.T, out string) float64 {
	t.Helper()
	var c struct {
		Coverage *float64 `json:"coverage"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &c); err != nil || c.Coverage == nil {
		t.Fatalf("no coverage in %q: %v", out, err)
	}
	return *c.Coverage
}

func opaExit(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestPolicyTestMatchesOPA: `tollgate policy test` and the real `opa test`
// give the same verdict for every test, the same exit status and the same
// coverage on every policy in the repository, the failing fixture included.
func TestPolicyTestMatchesOPA(t *testing.T) {
	opa := testenv.Tool(t, "opa")
	for _, dir := range policyDirs(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			opaOut, opaErr := exec.Command(opa, "test", "-v", dir).CombinedOutput()
			tgOut, tgErr := run(t, "", "policy", "test", "-v", dir)
			want, got := verdicts(string(opaOut)), verdicts(tgOut)
			if len(want) == 0 {
				t.Fatalf("opa found no tests in %s:\n%s", dir, opaOut)
			}
			for name, v := range want {
				if got[name] != v {
					t.Errorf("%s: opa %s, tollgate %q", name, v, got[name])
				}
			}
			if len(got) != len(want) {
				t.Errorf("tollgate ran %d tests, opa %d", len(got), len(want))
			}
			if o, g := opaExit(opaErr), exitCode(tgErr); o != g {
				t.Errorf("exit status: opa %d, tollgate %d", o, g)
			}

			opaCov, opaErr := exec.Command(opa, "test", "--coverage", dir).Output()
			tgCov, tgErr := run(t, "", "policy", "test", "--coverage", dir)
			if o, g := opaExit(opaErr), exitCode(tgErr); o != g {
				t.Errorf("exit status with --coverage: opa %d, tollgate %d", o, g)
			}
			if opaErr != nil { // a failing test: neither reports coverage
				if strings.Contains(tgCov, `"coverage"`) {
					t.Errorf("tollgate reported coverage despite failures:\n%s", tgCov)
				}
				return
			}
			if o, g := coverage(t, string(opaCov)), coverage(t, tgCov); o != g {
				t.Errorf("coverage: opa %.2f%%, tollgate %.2f%%", o, g)
			}
		})
	}
}
