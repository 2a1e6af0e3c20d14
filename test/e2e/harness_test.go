// Package e2e tests tollgate end to end: the real tollgate binary, real
// registries (Debian's distribution 2.8 and distribution 3.x) started as
// processes on loopback ports, and real clients (crane, oras, skopeo, podman,
// docker with a dockerd of its own, ctr).
//
// Every component comes from scripts/install-test-deps.sh. A missing one
// skips the tests that need it, except under CI=true, where it fails them.
package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "tollgate-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)

	tollgateBin = filepath.Join(dir, "tollgate")
	out, err := exec.Command("go", "build", "-o", tollgateBin, "github.com/tollgate/tollgate/cmd/tollgate").CombinedOutput()
	if err != nil {
		buildErr = fmt.Errorf("go build ./cmd/tollgate: %w\n%s", err, out)
	}
	return m.Run()
}

// tool returns the path of an installed program. A missing one fails the
// test under CI=true (a skipped test in CI hides a broken set-up) and skips
// it otherwise; both name the install command.
func tool(t testing.TB, name string) string {
	t.Helper()
	return testenv.Tool(t, name)
}

// needTools checks every program a test runs before it starts anything.
func needTools(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		tool(t, name)
	}
}

// needTollgate fails the test when the broker did not build: that is a
// defect of the code under test, never a reason to skip.
func needTollgate(t testing.TB) {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int { return testenv.FreePort(t) }

// process is a server started for one test, its output kept in a file.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
}

// startProcess starts a server in dir. It is killed in t.Cleanup, and its
// log is printed there when the test failed.
func startProcess(t testing.TB, name, dir string, env []string, bin string, args ...string) *process {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = dieWithParent()
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Log(p.tail())
		}
	})
	return p
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tail returns the end of the process's log, for failure messages.
func (p *process) tail() string {
	data, _ := os.ReadFile(p.log)
	const max = 8000
	if len(data) > max {
		data = data[len(data)-max:]
	}
	return fmt.Sprintf("--- %s log (%s), last %d bytes ---\n%s", p.name, p.log, len(data), data)
}

// logWith returns the process's log once it holds want. A line reaches
// the file shortly after the request that logged it, not before the
// response (internal/logwrite): read the log after a request through this.
func (p *process) logWith(t testing.TB, want string) string {
	t.Helper()
	var log []byte
	waitUntil(t, p, fmt.Sprintf("%q in the log", want), func() error {
		log, _ = os.ReadFile(p.log)
		if !bytes.Contains(log, []byte(want)) {
			return errors.New("not logged")
		}
		return nil
	})
	return string(log)
}

// waitUntil polls check until it returns nil, the process dies, or 20
// seconds pass; it fails the test with the last error and the log.
func waitUntil(t testing.TB, p *process, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if p.exited() {
			t.Fatalf("%s exited before %s: %v\n%s", p.name, what, err, p.tail())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s after 20s: %v\n%s", p.name, what, err, p.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitFor200 waits until a GET of url answers 200, as waitUntil does.
func waitFor200(t testing.TB, p *process, url string) {
	t.Helper()
	waitUntil(t, p, "200 on "+url, func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	})
}
