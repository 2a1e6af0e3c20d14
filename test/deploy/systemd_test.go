package deploy

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/test/testenv"
)

// TestSystemdInstallServesTokens runs the commands of docs/operations.md's
// "Install with systemd" as written, in a temporary root, and starts the
// unit they installed as systemd would: its ExecStart as its User and
// Group, with its directories, modes and UMask (unitEmulation). It then
// asks the unit for tokens (the documentation's curl), and checks that
// `systemctl reload` (ExecReload) still reloads by SIGHUP.
//
// PID 1 is not systemd on the test machines, so systemctl lines are
// emulated and the sandboxing (ProtectSystem= and the like) is not applied;
// systemd-analyze verify checks those settings (TestSystemdUnitVerifies).
func TestSystemdInstallServesTokens(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Missing(t, "the systemd install runs as root (it creates the system user and runs the unit as it)")
	}
	for _, tool := range []string{"systemd-sysusers", "runuser", "curl"} {
		testenv.Tool(t, tool)
	}
	steps := installSteps(t)
	inst := newInstallRoot(t)
	var tokenOut string
	for _, step := range steps {
		if args, ok := strings.CutPrefix(step, "systemctl "); ok {
			inst.systemctl(t, strings.Fields(args))
			continue
		}
		if out := inst.sh(t, step); strings.Contains(step, "curl ") {
			tokenOut = out
		}
	}
	if inst.unit == nil {
		t.Fatal("the documented install never starts the unit (systemctl enable --now tollgate)")
	}
	// The first block ends asking for alice's token; the second adds bob
	// and reloads.
	if sub := tokenSubject(t, tokenOut); sub != "alice" {
		t.Fatalf("the documented curl got a token for %q, want alice:\n%s", sub, tokenOut)
	}
	// The htpasswd connector reads its file again on its own, within a
	// second of the change.
	waitLog(t, inst.unit, `"users":2`, 1)
	out := inst.sh(t, `curl -fsS -u "bob:$PASSWORD" 'http://127.0.0.1:5001/token?service=registry.example.com'`)
	if sub := tokenSubject(t, out); sub != "bob" {
		t.Fatalf("after htpasswd add as root and a reload, bob's token is for %q:\n%s\n%s", sub, out, inst.unit.log.String())
	}

	// `systemctl reload` is ExecReload, a SIGHUP that reloads the
	// configuration: one more "configuration reloaded" line.
	before := strings.Count(inst.unit.log.String(), "configuration reloaded")
	inst.systemctl(t, []string{"reload", "tollgate"})
	waitLog(t, inst.unit, "configuration reloaded", before+1)
}

// waitLog waits until the unit's log holds text at least want times.
func waitLog(t *testing.T, u *unitEmulation, text string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(u.log.String(), text) < want {
		if time.Now().After(deadline) {
			t.Fatalf("the unit's log does not hold %q %d times after 10s:\n%s", text, want, u.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// installSteps returns the shell of the ```sh blocks of docs/operations.md's
// "Install with systemd", cut at each systemctl line (which comes back as
// its own step).
func installSteps(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(root(t), "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## Install with systemd\n")
	if !ok {
		t.Fatal(`docs/operations.md has no "## Install with systemd"`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var steps []string
	var cur strings.Builder
	flush := func() {
		if strings.TrimSpace(cur.String()) != "" {
			steps = append(steps, cur.String())
		}
		cur.Reset()
	}
	in := false
	sc := bufio.NewScanner(strings.NewReader(section))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "```"):
			in = !in && line == "```sh"
			flush()
		case in && strings.HasPrefix(line, "systemctl "):
			flush()
			steps = append(steps, line)
		case in:
			cur.WriteString(line + "\n")
		}
	}
	if len(steps) < 5 {
		t.Fatalf("found %d steps in docs/operations.md's systemd install: the extraction is broken", len(steps))
	}
	return steps
}

// An installRoot is the machine the documented commands install into: a
// temporary directory standing for /, the binary and the repository's
// files in the working directory, and the unit once started.
type installRoot struct {
	root, work string
	addr       string // the free loopback address standing for 127.0.0.1:5001
	unit       *unitEmulation
}

func newInstallRoot(t *testing.T) *installRoot {
	t.Helper()
	base := t.TempDir()
	inst := &installRoot{root: filepath.Join(base, "root"), work: filepath.Join(base, "work"),
		addr: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))}
	// The unit's user must reach the root, as it reaches / on a machine.
	for _, dir := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{"etc/systemd/system", "usr/lib/sysusers.d", "usr/local/bin", "var/lib"} {
		if err := os.MkdirAll(filepath.Join(inst.root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(inst.work, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(build(t), filepath.Join(inst.work, "bin", "tollgate")); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"deploy", "policies"} {
		if err := os.Symlink(filepath.Join(root(t), dir), filepath.Join(inst.work, dir)); err != nil {
			t.Fatal(err)
		}
	}
	return inst
}

var absPaths = regexp.MustCompile(`(^|[\s='"])/(etc|usr|var)/`)

// rewrite maps the absolute paths of a command or setting into the root,
// and the documented listen address to a free one.
func (inst *installRoot) rewrite(s string) string {
	s = absPaths.ReplaceAllString(s, "${1}"+inst.root+"/${2}/")
	return strings.ReplaceAll(s, "127.0.0.1:5001", inst.addr)
}

// sh runs a documented step as root and returns its output.
func (inst *installRoot) sh(t *testing.T, script string) string {
	t.Helper()
	cmd := exec.Command("sh", "-ec", inst.rewrite(script))
	cmd.Dir = inst.work
	cmd.Env = append(os.Environ(), "PASSWORD=correct horse",
		"PATH="+filepath.Join(inst.root, "usr/local/bin")+":"+os.Getenv("PATH"))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		log := ""
		if inst.unit != nil {
			log = "\nthe unit's log:\n" + inst.unit.log.String()
		}
		t.Fatalf("documented step failed: %v\n%s\n%s%s%s", err, script, out.String(), errOut.String(), log)
	}
	return out.String()
}

// systemctl does what systemctl would with the installed tollgate.service.
func (inst *installRoot) systemctl(t *testing.T, args []string) {
	t.Helper()
	switch strings.Join(args, " ") {
	case "daemon-reload":
	case "enable --now tollgate", "start tollgate":
		if inst.unit != nil {
			t.Fatal("the unit is already running")
		}
		inst.unit = startUnit(t, inst, filepath.Join(inst.root, "etc/systemd/system/tollgate.service"))
	case "reload tollgate":
		if inst.unit == nil {
			t.Fatal("systemctl reload before the unit started")
		}
		inst.unit.reload(t)
	default:
		t.Fatalf("the emulation does not know systemctl %s", strings.Join(args, " "))
	}
}

// tokenSubject decodes the subject of the token in a /token answer.
func tokenSubject(t *testing.T, answer string) string {
	t.Helper()
	var resp struct{ Token string }
	if err := json.Unmarshal([]byte(answer), &resp); err != nil || resp.Token == "" {
		t.Fatalf("not a token answer (%v): %q", err, answer)
	}
	parts := strings.Split(resp.Token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", resp.Token)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct{ Sub string }
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims.Sub
}

// waitServing waits for /readyz, or fails with the log when the process
// ended first.
func waitServing(t *testing.T, u *unitEmulation, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-u.exited:
			t.Fatalf("the unit exited: %v\n%s", u.err, u.log.String())
		default:
		}
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the unit is not ready after 30s:\n%s", u.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
