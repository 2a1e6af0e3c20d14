// Package ldaptest runs a real OpenLDAP slapd for tests: on loopback ports,
// in a temporary directory, with the memberOf overlay, plain LDAP, StartTLS
// and LDAPS under a CA made for the test. Never a system service.
package ldaptest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/tollgate/tollgate/test/testenv"
)

// Suffix is the directory's base DN; Admin and AdminPassword its root account.
const (
	Suffix        = "dc=example,dc=org"
	Admin         = "cn=admin," + Suffix
	AdminPassword = "admin-secret"
	Reader        = "cn=reader," + Suffix
	ReaderPass    = "reader-secret"
	// PasswordPolicyDN is the default policy of Options.PasswordPolicy.
	PasswordPolicyDN = "cn=default-policy," + Suffix
)

// Server is a running slapd.
type Server struct {
	t       testing.TB
	dir     string
	bin     string
	conf    string
	port    int
	tlsPort int
	cmd     *exec.Cmd
	done    chan struct{} // closed when the running slapd has exited
	// CAFile is the PEM CA that signed the server certificate (for localhost).
	CAFile string
	// ClientCertFile and ClientKeyFile are a client certificate from the same CA.
	ClientCertFile, ClientKeyFile string
}

// Options change how slapd runs.
type Options struct {
	// RequireClientCert makes every TLS session present a certificate from CAFile.
	RequireClientCert bool
	// PasswordPolicy loads the ppolicy overlay with a default policy, so the
	// server keeps pwdChangedTime on every password change.
	PasswordPolicy bool
}

// URL is the plain ldap:// URL (StartTLS is offered on it).
func (s *Server) URL() string { return fmt.Sprintf("ldap://localhost:%d", s.port) }

// TLSURL is the ldaps:// URL.
func (s *Server) TLSURL() string { return fmt.Sprintf("ldaps://localhost:%d", s.tlsPort) }

// Start runs slapd with the given extra schema (may be empty) and loads ldif
// (entries under Suffix; the suffix entry and the reader account are added
// here). It fails under CI=true when slapd is missing, and skips otherwise.
func Start(t testing.TB, extraSchema, ldif string) *Server {
	t.Helper()
	return StartWith(t, extraSchema, ldif, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, extraSchema, ldif string, o Options) *Server {
	t.Helper()
	bin := testenv.Tool(t, "slapd") // Debian's slapd, in /usr/sbin
	dir := t.TempDir()
	s := &Server{t: t, dir: dir, bin: bin, port: testenv.FreePort(t), tlsPort: testenv.FreePort(t)}
	s.CAFile = testenv.WriteTLS(t, dir)
	s.ClientCertFile, s.ClientKeyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	if extraSchema != "" {
		if err := os.WriteFile(filepath.Join(dir, "extra.schema"), []byte(extraSchema), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	verifyClient := "TLSVerifyClient never"
	if o.RequireClientCert {
		verifyClient = "TLSVerifyClient demand"
	}
	var ppolicyModule, ppolicyOverlay string
	if o.PasswordPolicy {
		ppolicyModule = "moduleload ppolicy"
		ppolicyOverlay = fmt.Sprintf("overlay ppolicy\nppolicy_default %q\n", PasswordPolicyDN)
	}
	var schema strings.Builder
	for _, f := range []string{"core", "cosine", "nis", "inetorgperson"} {
		fmt.Fprintf(&schema, "include /etc/ldap/schema/%s.schema\n", f)
	}
	if extraSchema != "" {
		fmt.Fprintf(&schema, "include %s\n", filepath.Join(dir, "extra.schema"))
	}
	conf := fmt.Sprintf(`%s
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
%[7]s
pidfile %[2]s/slapd.pid
argsfile %[2]s/slapd.args
TLSCACertificateFile %[2]s/ca.pem
TLSCertificateFile %[2]s/server.pem
TLSCertificateKeyFile %[2]s/server.key
%[6]s
database mdb
maxsize 104857600
suffix "%[3]s"
rootdn "%[4]s"
rootpw %[5]s
directory %[2]s/data
overlay memberof
%[8]s`, schema.String(), dir, Suffix, Admin, AdminPassword, verifyClient, ppolicyModule, ppolicyOverlay)
	s.conf = filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s.start()
	t.Cleanup(s.Stop)
	s.Add(fmt.Sprintf(`dn: %s
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: %s
objectClass: simpleSecurityObject
objectClass: organizationalRole
cn: reader
userPassword: %s
`, Suffix, Reader, ReaderPass))
	if o.PasswordPolicy {
		s.Add(`dn: ` + PasswordPolicyDN + `
objectClass: organizationalRole
objectClass: pwdPolicy
cn: default-policy
pwdAttribute: userPassword
`)
	}
	s.Add(ldif)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	log, err := os.OpenFile(filepath.Join(s.dir, "slapd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	// -d 0 keeps slapd in the foreground without debug output.
	s.cmd = exec.Command(s.bin, "-f", s.conf, "-d", "0",
		"-h", fmt.Sprintf("ldap://127.0.0.1:%d/ ldaps://127.0.0.1:%d/", s.port, s.tlsPort))
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	done := make(chan struct{})
	s.done = done
	go func(cmd *exec.Cmd) { _ = cmd.Wait(); log.Close(); close(done) }(s.cmd)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := ldap.DialURL(fmt.Sprintf("ldap://127.0.0.1:%d", s.port)); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	data, _ := os.ReadFile(filepath.Join(s.dir, "slapd.log"))
	s.t.Fatalf("slapd did not start:\n%s", data)
}

// Stop ends slapd; the data stays, so Restart brings the same directory back.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
		}
		s.cmd = nil
	}
}

// Restart starts slapd again on the same ports.
func (s *Server) Restart() { s.start() }

// admin returns a connection bound as the root account.
func (s *Server) admin() *ldap.Conn {
	s.t.Helper()
	c, err := ldap.DialURL(fmt.Sprintf("ldap://127.0.0.1:%d", s.port))
	if err != nil {
		s.t.Fatal(err)
	}
	if err := c.Bind(Admin, AdminPassword); err != nil {
		s.t.Fatal(err)
	}
	return c
}

// Add adds the entries of an LDIF text (blank-line separated, no
// continuation lines, "attr: value" lines only).
func (s *Server) Add(ldif string) {
	s.t.Helper()
	c := s.admin()
	defer c.Close()
	for _, block := range strings.Split(strings.TrimSpace(ldif), "\n\n") {
		block = strings.TrimSpace(block)
		if block == "" {
			continue
		}
		var req *ldap.AddRequest
		for _, line := range strings.Split(block, "\n") {
			if strings.HasPrefix(line, "#") {
				continue
			}
			attr, val, ok := strings.Cut(line, ": ")
			if !ok {
				s.t.Fatalf("bad LDIF line %q", line)
			}
			if attr == "dn" {
				req = ldap.NewAddRequest(val, nil)
				continue
			}
			req.Attribute(attr, []string{val})
		}
		// Merge repeated attributes into one.
		merged := map[string][]string{}
		var order []string
		for _, a := range req.Attributes {
			if _, seen := merged[a.Type]; !seen {
				order = append(order, a.Type)
			}
			merged[a.Type] = append(merged[a.Type], a.Vals...)
		}
		req.Attributes = nil
		for _, a := range order {
			req.Attribute(a, merged[a])
		}
		if err := c.Add(req); err != nil {
			s.t.Fatalf("add %s: %v", req.DN, err)
		}
	}
}

// Modify changes one attribute of an entry: op is "add", "delete" or "replace".
func (s *Server) Modify(dn, op, attr string, values ...string) {
	s.t.Helper()
	c := s.admin()
	defer c.Close()
	m := ldap.NewModifyRequest(dn, nil)
	switch op {
	case "add":
		m.Add(attr, values)
	case "delete":
		m.Delete(attr, values)
	case "replace":
		m.Replace(attr, values)
	default:
		s.t.Fatalf("unknown modify op %q", op)
	}
	if err := c.Modify(m); err != nil {
		s.t.Fatalf("modify %s: %v", dn, err)
	}
}

// Delete removes an entry.
func (s *Server) Delete(dn string) {
	s.t.Helper()
	c := s.admin()
	defer c.Close()
	if err := c.Del(ldap.NewDelRequest(dn, nil)); err != nil {
		s.t.Fatalf("delete %s: %v", dn, err)
	}
}

// Pause freezes slapd (SIGSTOP): connections stay open and requests go
// unanswered, as with a hung directory, until Resume. It returns once every
// thread of slapd has stopped: kill only queues the signal, and a busy
// thread could still answer a request sent right after it.
func (s *Server) Pause() {
	s.t.Helper()
	s.signal(syscall.SIGSTOP)
	tasks := fmt.Sprintf("/proc/%d/task", s.cmd.Process.Pid)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if allStopped(tasks) {
			return
		}
	}
	s.t.Fatal("slapd did not stop within 10 s of SIGSTOP")
}

// allStopped reports whether every thread under a /proc/PID/task directory
// is in state T (stopped by a signal).
func allStopped(tasks string) bool {
	ids, err := os.ReadDir(tasks)
	if err != nil || len(ids) == 0 {
		return false
	}
	for _, id := range ids {
		stat, err := os.ReadFile(filepath.Join(tasks, id.Name(), "stat"))
		if err != nil {
			return false
		}
		// pid (comm) state ...: comm may hold spaces, so read after the last ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 || i+2 >= len(stat) || stat[i+2] != 'T' {
			return false
		}
	}
	return true
}

// Resume lets a paused slapd answer again.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig os.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal slapd: %v", err)
	}
}
