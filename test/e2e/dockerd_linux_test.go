package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/test/testenv"
)

// dockerd is a Docker daemon started by a test in a temporary directory,
// with the containerd it starts and manages itself: nothing of the
// machine's /var/lib/docker, /run/docker.sock or /etc/docker is used.
type dockerd struct {
	root       string // data-root, exec-root, config and the daemon's socket
	socket     string // the Docker API
	containerd string // its containerd's socket, for ctr
	proc       *process
}

// startDockerd starts Debian's dockerd (docker.io) as root and waits for
// its API. It runs no container and creates no network: no iptables rules,
// no bridge, the runc runtime, rlimits the machine allows raising to.
func startDockerd(t *testing.T) *dockerd {
	t.Helper()
	bin := tool(t, "dockerd")
	needTools(t, "containerd", "runc", "ctr", "docker")
	if os.Geteuid() != 0 {
		testenv.Missing(t, "dockerd needs root")
	}
	// Not t.TempDir: unix socket paths are limited to 108 bytes, and the
	// containerd socket sits three levels down in exec-root.
	root, err := os.MkdirTemp("", "e2e-dockerd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeMounted(t, root) })
	d := &dockerd{
		root:       root,
		socket:     filepath.Join(root, "docker.sock"),
		containerd: filepath.Join(root, "exec", "containerd", "containerd.sock"),
	}
	// An empty daemon.json, so that the machine's /etc/docker/daemon.json
	// (registry mirrors, another data-root) cannot change the test.
	config := filepath.Join(root, "daemon.json")
	if err := os.WriteFile(config, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	d.proc = startProcess(t, "dockerd", root, nil, bin,
		"--config-file", config,
		"--data-root", filepath.Join(root, "data"),
		"--exec-root", filepath.Join(root, "exec"),
		"--pidfile", filepath.Join(root, "dockerd.pid"),
		"--host", "unix://"+d.socket,
		"--iptables=false", "--ip6tables=false", "--bridge=none",
		"--default-runtime", "runc",
		"--default-ulimit", "nofile=4096:4096", "--default-ulimit", "nproc=4096:4096",
	)
	// Registered after startProcess, so it runs before its kill: stopped
	// with SIGTERM, dockerd stops its containerd and undoes its mounts.
	t.Cleanup(func() {
		_ = d.proc.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.proc.done:
		case <-time.After(20 * time.Second):
			t.Errorf("dockerd still running 20s after SIGTERM; killed")
		}
	})
	api := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", d.socket)
	}}}
	waitUntil(t, d.proc, "Docker API on "+d.socket, func() error {
		resp, err := api.Get("http://docker/_ping")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /_ping: %s", resp.Status)
		}
		if _, err := os.Stat(d.containerd); err != nil {
			return fmt.Errorf("containerd socket: %w", err)
		}
		return nil
	})
	t.Logf("dockerd ready %v after start", time.Since(start).Round(10*time.Millisecond))
	return d
}

// client returns a client with an isolated home (its own DOCKER_CONFIG)
// whose docker and ctr talk to this daemon and its containerd.
func (d *dockerd) client(t *testing.T) *client {
	c := newClient(t)
	c.extra = []string{
		"DOCKER_HOST=unix://" + d.socket,
		// The classic builder: a FROM scratch build then needs nothing
		// but the daemon (BuildKit would want its own frontend image).
		"DOCKER_BUILDKIT=0",
		"CONTAINERD_ADDRESS=" + d.containerd,
		"CONTAINERD_NAMESPACE=tollgate-e2e",
	}
	return c
}

// removeMounted unmounts whatever is still mounted under dir (dockerd
// bind-mounts its data-root onto itself and, when killed, leaves it so),
// deepest first, then removes dir.
func removeMounted(t testing.TB, dir string) {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Errorf("remove %s: %v", dir, err)
		return
	}
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		// The mount point is field 5, with spaces and the like escaped in octal.
		p := unescapeMountinfo(fields[4])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	f.Close()
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", p, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Errorf("remove %s: %v", dir, err)
	}
}

func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
