package docs

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/test/testenv"
)

// Set once by TestMain, read-only afterwards.
var (
	tollgateBin string
	buildErr    error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tollgate-docs-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "docs:", err)
		os.Exit(1)
	}
	tollgateBin = filepath.Join(dir, "tollgate")
	if out, err := exec.Command("go", "build", "-o", tollgateBin, "github.com/tollgate/tollgate/cmd/tollgate").CombinedOutput(); err != nil {
		buildErr = fmt.Errorf("go build ./cmd/tollgate: %w\n%s", err, out)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// repoRoot is the repository's top directory.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// cannotRun lists the examples that cannot run here, by a part of their
// text, and why. Keep it short: prefer examples that run.
var cannotRun = map[string]string{
	// Troubleshooting a production broker by its public name: the point of
	// the example is the host, which no test reaches.
	"https://auth.example.com":                    "asks a production broker at auth.example.com",
	"--registry-url https://registry.example.com": "checks clients reach a realm from registry.example.com",
	// A person approves the code at the identity provider: test/e2e runs
	// the device login with the real provider's pages.
	"tollgate login registry.example.com": "a person approves the device code at the identity provider",
}

// allExamples is every example of the documentation and of every --help.
func allExamples(t *testing.T) []Example {
	t.Helper()
	root := repoRoot()
	files := []string{filepath.Join(root, "README.md"), filepath.Join(root, "policies", "README.md")}
	more, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	var out []Example
	for _, f := range append(files, more...) {
		ex, err := MarkdownExamples(f)
		if err != nil {
			t.Fatal(err)
		}
		for i := range ex {
			ex[i].Source = strings.TrimPrefix(ex[i].Source, root+"/")
			ex[i].Block = strings.TrimPrefix(ex[i].Block, root+"/")
		}
		out = append(out, ex...)
	}
	return append(out, helpExamples(t, nil)...)
}

// helpExamples walks `tollgate [path...] --help` and every subcommand's.
func helpExamples(t *testing.T, path []string) []Example {
	t.Helper()
	help, err := exec.Command(tollgateBin, append(path, "--help")...).CombinedOutput()
	if err != nil {
		t.Fatalf("tollgate %s --help: %v\n%s", strings.Join(path, " "), err, help)
	}
	source := strings.Join(append(append([]string{"tollgate"}, path...), "--help"), " ")
	out := HelpExamples(source, string(help))
	for _, sub := range Subcommands(string(help)) {
		out = append(out, helpExamples(t, append(path[:len(path):len(path)], sub))...)
	}
	return out
}

// TestEveryExampleRuns runs each example in its own copy of a workspace
// that holds what the examples name, against running brokers.
func TestEveryExampleRuns(t *testing.T) {
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	examples := allExamples(t)
	if len(examples) < 40 {
		t.Fatalf("found %d examples: the extraction is broken", len(examples))
	}
	ws := newWorkspace(t)
	ran, skipped := 0, 0
	for _, block := range blocks(examples) {
		var runnable []Example
		for _, ex := range block {
			if why := skipReason(ex.Line); why != "" {
				t.Logf("not run (%s): %s: %s", why, ex.Source, ex.Line)
				skipped++
				continue
			}
			runnable = append(runnable, ex)
		}
		if len(runnable) == 0 {
			continue
		}
		t.Run(block[0].Block, func(t *testing.T) { ws.runBlock(t, runnable) })
		ran += len(runnable)
	}
	t.Logf("ran %d examples (%d more listed in cannotRun)", ran, skipped)
}

// blocks groups the examples by block, in their order.
func blocks(examples []Example) [][]Example {
	var out [][]Example
	for i, ex := range examples {
		if i == 0 || ex.Block != examples[i-1].Block {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], ex)
	}
	return out
}

func skipReason(line string) string {
	for part, why := range cannotRun {
		if strings.Contains(line, part) {
			return why
		}
	}
	return ""
}

// paths maps the absolute paths examples use into the workspace copy.
var paths = regexp.MustCompile(`(^|[\s='"])/(etc|run|var)/`)

// runBlock runs a block's examples in order with sh, in a fresh copy of
// the workspace.
func (ws *workspace) runBlock(t *testing.T, block []Example) {
	dir := filepath.Join(t.TempDir(), "w")
	if out, err := exec.Command("cp", "-a", ws.dir, dir).CombinedOutput(); err != nil {
		t.Fatalf("copy the workspace: %v\n%s", err, out)
	}
	for _, ex := range block {
		line := paths.ReplaceAllString(ex.Line, "${1}"+dir+"/${2}/")
		// The examples name the development broker's default port; the
		// test's broker listens on a free one.
		line = strings.ReplaceAll(line, "localhost:5001", ws.devAddr)
		if isServe(line) {
			ws.runServe(t, dir, ex, line)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, "sh", "-c", line)
		cmd.Dir, cmd.Env = dir, ws.env(dir)
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("%s: %s\n%v\n%s", ex.Source, ex.Line, err, out)
		}
	}
}

// isServe: a `tollgate serve` that runs until stopped (not --check).
func isServe(line string) bool {
	return regexp.MustCompile(`tollgate serve(\s|$)`).MatchString(line) && !strings.Contains(line, "--check")
}

// runServe starts a serving example on a free port, waits for /readyz and
// stops it: the example works when the broker becomes ready and exits 0 on
// SIGTERM.
func (ws *workspace) runServe(t *testing.T, dir string, ex Example, line string) {
	line, _, _ = strings.Cut(line, " #")
	port := freePort(t)
	cmd := exec.Command("sh", "-c", "exec "+strings.TrimSpace(line)+fmt.Sprintf(" --listen 127.0.0.1:%d", port))
	cmd.Dir, cmd.Env = dir, ws.env(dir)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	err := testenv.WaitReady(fmt.Sprintf("http://127.0.0.1:%d", port), 30*time.Second)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if werr := cmd.Wait(); err == nil && werr != nil {
		err = fmt.Errorf("after SIGTERM: %w", werr)
	}
	if err != nil {
		t.Errorf("%s: %s\n%v\n%s", ex.Source, ex.Line, err, out.String())
	}
}

// token asks a broker for a token; form nil means GET with Basic credentials.
func token(t *testing.T, base, user, password string, form url.Values, query string) map[string]any {
	t.Helper()
	var req *http.Request
	if form != nil {
		req, _ = http.NewRequest(http.MethodPost, base+"/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req, _ = http.NewRequest(http.MethodGet, base+"/token?"+query, nil)
		req.SetBasicAuth(user, password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("token from %s: %s %v %v", base, resp.Status, body, err)
	}
	return body
}
