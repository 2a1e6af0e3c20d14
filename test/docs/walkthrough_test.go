package docs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/test/testenv"
)

// TestPolicyWalkthroughWorks does what policies/README.md's "From zero to a
// shipped policy" tells a new author: the Rego it shows, added to a copy of
// the shipped policy, formats clean, checks, passes its tests (and its test
// fails without the rule, as the page says), and grants what it promises.
// The page's commands run in TestEveryExampleRuns; this adds its code, and
// replays a decision log that a real `opa run` wrote while serving the
// shipped policy, as the page's "decisions.log" may be.
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

	replayOPALog(t, dir, run)
}

// replayOPALog serves the shipped policy with the real opa binary, its
// decision log on the console, asks it for three decisions, and replays
// that log through the walkthrough's policy: exactly rel's push changes.
func replayOPALog(t *testing.T, dir string, run func(...string) (string, error)) {
	port := testenv.FreePort(t)
	var stdout bytes.Buffer
	opa := exec.Command(testenv.Tool(t, "opa"), "run", "--server", "--addr", fmt.Sprintf("127.0.0.1:%d", port),
		"--set", "decision_logs.console=true", "--log-format", "json", "--ignore", "*_test.rego",
		filepath.Join(repoRoot(), "policies", "default"))
	opa.Stdout, opa.Stderr = &stdout, &stdout // its console decision log goes to standard error
	if err := opa.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			opa.Process.Signal(syscall.SIGTERM)
			opa.Wait()
		}
	}
	t.Cleanup(stop)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := testenv.WaitOK(base+"/health", 30*time.Second); err != nil {
		t.Fatalf("opa run: %v", err)
	}
	for _, r := range []struct{ subject, group, repo string }{
		{"rel", "release", "team/release/app"}, // denied by the shipped policy, granted by the walkthrough's
		{"rel", "release", "team/app"},         // denied by both
		{"bob", "", "bob/tools"},               // a personal namespace: granted by both
	} {
		in := map[string]any{"input": map[string]any{
			"service":  "registry.example.com",
			"identity": map[string]any{"subject": r.subject, "name": r.subject, "groups": []string{r.group}, "connector": "local", "anonymous": false, "claims": map[string]any{}},
			"scopes":   []map[string]any{{"type": "repository", "name": r.repo, "actions": []string{"pull", "push"}}},
			"client":   map[string]any{"ip": "127.0.0.1"},
		}}
		body, _ := json.Marshal(in)
		resp, err := http.Post(base+"/v1/data/registry/authz/allowed", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("opa run answered %s", resp.Status)
		}
	}
	stop()
	var log strings.Builder
	for _, line := range strings.Split(stdout.String(), "\n") {
		if strings.Contains(line, `"decision_id"`) {
			log.WriteString(line + "\n")
		}
	}
	if n := strings.Count(log.String(), "\n"); n != 3 {
		t.Fatalf("opa run logged %d decisions, want 3:\n%s", n, stdout.String())
	}
	write(t, filepath.Join(dir, "decisions.log"), log.String())
	out, err := run("policy", "test", "--against-log", "decisions.log", "mine")
	if exitCode(err) != 2 || !strings.Contains(out, "team/release/app") || strings.Contains(out, "bob/tools") || strings.Contains(out, "team/app ") {
		t.Errorf("replaying opa run's log through the walkthrough's policy: exit %d, want 2 naming only rel's push to team/release/app:\n%s", exitCode(err), out)
	}
	if out, err := run("policy", "test", "--against-log", "decisions.log", "--allow-changes", "mine"); err != nil {
		t.Errorf("--allow-changes: %v\n%s", err, out)
	}
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
