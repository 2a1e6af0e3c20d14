package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/test/testenv"
)

const unformatted = `package x
import rego.v1

allow if {  input.a == 1
  input.b==2 }
deny contains "x" if true
`

// policy fmt formats as the real opa fmt does (same bytes, same exit
// statuses for -l and --fail), over every Rego file in the repository.
func TestPolicyFmtMatchesOpaFmt(t *testing.T) {
	opa := testenv.Lookup("opa")
	if opa == "" {
		testenv.Missing(t, "opa is not installed")
	}
	files, _ := filepath.Glob("../../policies/*/*.rego")
	more, _ := filepath.Glob("../../policies/examples/*/*.rego")
	dir := policyDir(t, map[string]string{"a.rego": unformatted})
	for _, f := range append(append(files, more...), filepath.Join(dir, "a.rego")) {
		want, err := exec.Command(opa, "fmt", f).Output()
		if err != nil {
			t.Fatalf("opa fmt %s: %v", f, err)
		}
		got, err := run(t, "", "policy", "fmt", f)
		if err != nil || got != string(want) {
			t.Errorf("%s: policy fmt differs from opa fmt (%v):\n%s\nopa:\n%s", f, err, got, want)
		}
	}
	// --fail without -l or -d stops at the first file that would change:
	// nothing printed, nothing written (-w included).
	for _, args := range [][]string{{"-l"}, {"-l", "--fail"}, {"--fail"}, {"-d", "--fail"}, {"-w", "--fail"}} {
		opaOut, err := exec.Command(opa, append(append([]string{"fmt"}, args...), dir)...).Output()
		var ee *exec.ExitError
		opaStatus := 0
		if errors.As(err, &ee) {
			opaStatus = ee.ExitCode()
		}
		out, err := run(t, "", append(append([]string{"policy", "fmt"}, args...), dir)...)
		if exitCode(err) != opaStatus {
			t.Errorf("%v: exit %d, opa fmt exits %d", args, exitCode(err), opaStatus)
		}
		if args[0] != "-d" && out != string(opaOut) { // -d: a unified diff, intended
			t.Errorf("%v: output\n%s\nopa fmt:\n%s", args, out, opaOut)
		}
		if src, _ := os.ReadFile(filepath.Join(dir, "a.rego")); string(src) != unformatted {
			t.Fatalf("%v rewrote the file:\n%s", args, src)
		}
	}
}

func TestPolicyFmtWritesListsAndDiffs(t *testing.T) {
	dir := policyDir(t, map[string]string{"a.rego": unformatted, "b.rego": "package y\n\nallow := true\n", "data.json": "{"})
	a := filepath.Join(dir, "a.rego")
	out, err := run(t, "", "policy", "fmt", "-l", dir)
	if err != nil || out != a+"\n" {
		t.Fatalf("-l: %v\n%s", err, out)
	}
	out, err = run(t, "", "policy", "fmt", "-d", dir)
	for _, want := range []string{"--- " + a + "\n", "@@ -1,6 +1,10 @@\n", "-allow if {  input.a == 1\n", "+\tinput.b == 2\n", "+deny contains \"x\"\n"} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("-d lacks %q (%v):\n%s", want, err, out)
		}
	}
	before, _ := os.ReadFile(a)
	if out, err := run(t, "", "policy", "fmt", "-w", dir); err != nil || out != "" {
		t.Fatalf("-w: %v\n%s", err, out)
	}
	after, _ := os.ReadFile(a)
	if bytes.Equal(before, after) || !strings.Contains(string(after), "\tinput.b == 2\n") {
		t.Fatalf("-w left\n%s", after)
	}
	if out, err := run(t, "", "policy", "fmt", "-l", "--fail", dir); err != nil || out != "" {
		t.Fatalf("formatted files: %v\n%s", err, out)
	}

	out, err = run(t, "package z\nallow if {input.x}\n", "policy", "fmt")
	if err != nil || out != "package z\n\nallow if input.x\n" {
		t.Errorf("stdin: %v\n%q", err, out)
	}
	if _, err := run(t, "package z\nallow if {", "policy", "fmt"); exitCode(err) != exitFmt {
		t.Errorf("a parse error: exit %d, want %d", exitCode(err), exitFmt)
	}
	v0 := policyDir(t, map[string]string{"v0.rego": "package v\nallow { input.x }\n"})
	if _, err := run(t, "", "policy", "fmt", v0); exitCode(err) != exitFmt {
		t.Errorf("v0 without --v0-compatible: exit %d, want %d", exitCode(err), exitFmt)
	}
	if out, err := run(t, "", "policy", "fmt", "--v0-compatible", v0); err != nil || !strings.Contains(out, "allow {\n\tinput.x\n}") {
		t.Errorf("--v0-compatible: %v\n%s", err, out)
	}
	if out, err := run(t, "", "policy", "fmt", "--v0-v1", v0); err != nil || !strings.Contains(out, "import rego.v1\n\nallow if input.x\n") {
		t.Errorf("--v0-v1: %v\n%s", err, out)
	}
}
