package deploy

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/tollgate/tollgate/test/testenv"
)

// A unitEmulation is a service unit's main process started as systemd
// would start it on a machine whose PID 1 is not systemd.
type unitEmulation struct {
	settings map[string][]string // the [Service] section, in order of appearance
	cred     *syscall.Credential
	env      []string
	log      testenv.SyncBuffer
	pid      int
	exited   chan struct{}
	err      error // once exited is closed
}

// notEmulated are the settings the emulation knows and leaves to systemd:
// the sandboxing (checked by systemd-analyze verify) and the restart policy.
var notEmulated = []string{"Type", "Restart", "RestartSec", "TimeoutStopSec", "NoNewPrivileges",
	"CapabilityBoundingSet", "AmbientCapabilities", "Protect", "Private", "Restrict", "LockPersonality",
	"MemoryDenyWriteExecute", "RemoveIPC", "SystemCallArchitectures", "SystemCallFilter", "ProcSubset"}

// emulated are the settings the emulation applies.
var emulated = []string{"User", "Group", "DynamicUser", "ExecStart", "ExecReload", "UMask", "Environment",
	"ConfigurationDirectory", "ConfigurationDirectoryMode", "StateDirectory", "StateDirectoryMode"}

// startUnit starts the unit file's ExecStart, its paths rewritten into the
// install root, and waits until it serves on the root's address.
func startUnit(t *testing.T, inst *installRoot, path string) *unitEmulation {
	t.Helper()
	settings, err := readServiceSection(path)
	if err != nil {
		t.Fatal(err)
	}
	u := &unitEmulation{settings: settings, exited: make(chan struct{})}
	home := u.credentials(t)
	u.env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + home, "LANG=C.UTF-8"}
	u.makeDirectories(t, inst)
	for _, e := range settings["Environment"] {
		u.env = append(u.env, strings.Fields(e)...) // no quoted values in our unit
	}
	cmd := u.command(t, inst.rewrite(u.one(t, "ExecStart")))
	cmd.Stdout, cmd.Stderr = &u.log, &u.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("ExecStart: %v", err)
	}
	u.pid = cmd.Process.Pid
	go func() { u.err = cmd.Wait(); close(u.exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-u.exited
	})
	waitServing(t, u, inst.addr)
	return u
}

// reload runs ExecReload as systemd does: as the unit's user, $MAINPID
// being the main process.
func (u *unitEmulation) reload(t *testing.T) {
	t.Helper()
	line := strings.ReplaceAll(u.one(t, "ExecReload"), "$MAINPID", strconv.Itoa(u.pid))
	if out, err := u.command(t, line).CombinedOutput(); err != nil {
		t.Fatalf("ExecReload %s: %v\n%s", line, err, out)
	}
}

// command makes an Exec line's process: its user, groups, environment and
// UMask. Exec prefixes, quoting and specifiers are not emulated.
func (u *unitEmulation) command(t *testing.T, line string) *exec.Cmd {
	t.Helper()
	if line == "" || strings.ContainsAny(line, `"'%$\`) || strings.ContainsAny(line[:1], "-@+!:") {
		t.Fatalf("the emulation does not handle prefixes, quotes or specifiers: %s", line)
	}
	umask := "0022" // systemd's default
	if v := u.settings["UMask"]; len(v) > 0 {
		umask = v[len(v)-1]
	}
	args := append([]string{"-c", `umask "$0" && exec "$@"`, umask}, strings.Fields(line)...)
	cmd := exec.Command("/bin/sh", args...)
	cmd.Env = u.env
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.cred, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// credentials resolves User=, Group= or DynamicUser= and returns the home
// directory; a dynamic user gets an unused uid of systemd's dynamic range.
func (u *unitEmulation) credentials(t *testing.T) (home string) {
	t.Helper()
	if v := u.settings["DynamicUser"]; len(v) > 0 && v[len(v)-1] == "yes" {
		for id := 61184; id < 65519; id++ {
			if _, err := user.LookupId(strconv.Itoa(id)); err != nil {
				u.cred = &syscall.Credential{Uid: uint32(id), Gid: uint32(id), Groups: []uint32{}}
				return "/"
			}
		}
		t.Fatal("no free uid in the dynamic range")
	}
	name := u.one(t, "User")
	usr, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("User=%s: %v (the documented install creates it)", name, err)
	}
	gid := usr.Gid
	if g := u.settings["Group"]; len(g) > 0 {
		grp, err := user.LookupGroup(g[len(g)-1])
		if err != nil {
			t.Fatalf("Group=%s: %v", g[len(g)-1], err)
		}
		gid = grp.Gid
	}
	// systemd gives a User= its groups from /etc/group (initgroups).
	var groups []uint32
	ids, _ := usr.GroupIds()
	for _, id := range ids {
		n, _ := strconv.ParseUint(id, 10, 32)
		groups = append(groups, uint32(n))
	}
	uid, _ := strconv.ParseUint(usr.Uid, 10, 32)
	g, _ := strconv.ParseUint(gid, 10, 32)
	u.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(g), Groups: groups}
	u.env = append(u.env, "USER="+name, "LOGNAME="+name)
	return usr.HomeDir
}

// makeDirectories does what systemd does for ConfigurationDirectory= and
// StateDirectory= before starting: create a missing one with its mode
// (0755 by default); leave the configuration directory's owner alone, and
// give the state directory's tree to the unit's user when its top is not
// already theirs. An existing directory keeps its mode.
func (u *unitEmulation) makeDirectories(t *testing.T, inst *installRoot) {
	t.Helper()
	for _, d := range []struct{ setting, base, env string }{
		{"ConfigurationDirectory", "etc", "CONFIGURATION_DIRECTORY"},
		{"StateDirectory", "var/lib", "STATE_DIRECTORY"},
	} {
		names := u.settings[d.setting]
		if len(names) == 0 {
			continue
		}
		mode := uint64(0o755)
		if m := u.settings[d.setting+"Mode"]; len(m) > 0 {
			var err error
			if mode, err = strconv.ParseUint(m[len(m)-1], 8, 32); err != nil {
				t.Fatalf("%sMode: %v", d.setting, err)
			}
		}
		var paths []string
		for _, name := range strings.Fields(strings.Join(names, " ")) {
			p := filepath.Join(inst.root, d.base, name)
			paths = append(paths, p)
			if err := os.Mkdir(p, os.FileMode(mode)); err != nil && !os.IsExist(err) {
				t.Fatal(err)
			} else if err == nil {
				os.Chmod(p, os.FileMode(mode)) // the mode as set, whatever our umask
			}
			if d.setting == "StateDirectory" {
				chownTree(t, p, int(u.cred.Uid), int(u.cred.Gid))
			}
		}
		u.env = append(u.env, d.env+"="+strings.Join(paths, ":"))
	}
}

func chownTree(t *testing.T, dir string, uid, gid int) {
	t.Helper()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) == uid && int(st.Gid) == gid {
		return
	}
	err = filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// one returns a setting that must appear exactly once.
func (u *unitEmulation) one(t *testing.T, key string) string {
	t.Helper()
	if v := u.settings[key]; len(v) == 1 {
		return v[0]
	}
	t.Fatalf("the unit has %d %s= lines, want one", len(u.settings[key]), key)
	return ""
}

// readServiceSection reads a unit's [Service] settings and refuses one the
// emulation neither applies nor knows to leave to systemd, so that a new
// setting in the unit makes this test learn it.
func readServiceSection(path string) (map[string][]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	settings := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case line[0] == '[':
			section = line
			continue
		case section != "[Service]":
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || strings.HasSuffix(line, `\`) {
			return nil, fmt.Errorf("%s: cannot read %q", path, line)
		}
		if !known(key) {
			return nil, fmt.Errorf("%s: the emulation does not know %s=: apply it or list it in notEmulated", path, key)
		}
		settings[key] = append(settings[key], value)
	}
	return settings, sc.Err()
}

func known(key string) bool {
	for _, k := range emulated {
		if key == k {
			return true
		}
	}
	for _, prefix := range notEmulated {
		if strings.HasPrefix(key, prefix) {
			return true
		}
	}
	return false
}
