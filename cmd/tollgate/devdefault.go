package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/identity/htpasswd"
	"github.com/tollgate/tollgate/internal/atomicfile"
	"github.com/tollgate/tollgate/internal/config"
	"github.com/tollgate/tollgate/policies"
)

// The development default: everything lives in one state directory, made on
// first start and reused after, so `make run` works on a fresh machine.
const (
	devListen   = "127.0.0.1:5001"
	devService  = "localhost:5000"
	devIssuer   = "tollgate-dev"
	devRegistry = "localhost:5000"
)

var devUsers = []struct{ name, role string }{
	{"alice", `developer in project "team", maintainer of the public project "library"`},
	{"bob", `guest in project "team"`},
}

type devSetup struct {
	stateDir  string
	config    string
	registry  string
	passwords [][2]string
	// changes says what this start changed in a configuration saved by an
	// earlier one; the banner prints it.
	changes []string
}

// devConfig makes (on first start) and loads the development configuration.
func devConfig(stateDir, listen string) (*config.Config, *devSetup, error) {
	dir, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("state directory: %w", err)
	}
	// Checked where the links lead, and used from there on, so a link
	// swapped after the check does not redirect the files below.
	if dir, err = filepath.EvalSymlinks(dir); err != nil {
		return nil, nil, fmt.Errorf("state directory: %w", err)
	}
	if err := checkDevState(dir); err != nil {
		return nil, nil, err
	}
	d := &devSetup{stateDir: dir, config: filepath.Join(dir, "config.yaml"), registry: filepath.Join(dir, "registry.yml")}
	requested := listen
	if listen == "" {
		listen = devListen
	}
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, nil, fmt.Errorf("--listen: %w", err)
	}
	steps := []func() error{
		func() error { return d.ensureKey() },
		func() error { return d.ensureUsers() },
		func() error { return d.ensurePolicy() },
		func() error { return d.ensureConfig(listen, port) },
		func() error { return d.followListen(requested) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, nil, fmt.Errorf("development state in %s: %w", dir, err)
		}
	}
	cfg, err := config.Load(d.config)
	if err != nil {
		return nil, nil, err
	}
	if err := d.writeRegistryConfig(cfg); err != nil {
		return nil, nil, err
	}
	return cfg, d, nil
}

// configuredService is the default service of the broker configuration a
// command finds: --config, or else the development state in --state-dir
// when an earlier start made one (this never makes one). "" when there is
// neither, so the command keeps its own default.
func configuredService(c *cli.Context) (string, error) {
	path := c.String("config")
	if path == "" {
		dir, err := filepath.Abs(c.String("state-dir"))
		if err != nil {
			return "", err
		}
		if dir, err = filepath.EvalSymlinks(dir); errors.Is(err, fs.ErrNotExist) {
			return "", nil
		} else if err != nil {
			return "", fmt.Errorf("state directory: %w", err)
		}
		// The same rules as serve's: what others can write is not trusted.
		if err := checkDevState(dir); err != nil {
			return "", err
		}
		path = filepath.Join(dir, "config.yaml")
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return "", nil
		}
	}
	cfg, err := config.Load(path)
	if err != nil {
		return "", fmt.Errorf("the default service: %w", err)
	}
	for _, s := range cfg.Services {
		if s.Default || len(cfg.Services) == 1 {
			return s.Name, nil
		}
	}
	return "", fmt.Errorf("%s has several services and none is default: choose one with --service", path)
}

func (d *devSetup) ensureKey() error {
	keys := filepath.Join(d.stateDir, "keys")
	if m, _ := filepath.Glob(filepath.Join(keys, "*.key")); len(m) > 0 {
		return nil
	}
	keyPEM, certPEM, err := broker.GenerateKey(broker.KeyEC, "tollgate development signer", time.Now().Add(-time.Minute), 5*365*24*time.Hour)
	if err != nil {
		return err
	}
	return broker.WriteKeyPair(keys, "dev", keyPEM, certPEM)
}

func (d *devSetup) ensureUsers() error {
	file := filepath.Join(d.stateDir, "htpasswd")
	pwFile := filepath.Join(d.stateDir, "passwords.txt")
	if _, err := os.Stat(file); err == nil {
		return d.readPasswords(pwFile)
	}
	var sb strings.Builder
	for _, u := range devUsers {
		pw := rand.Text()[:16]
		if err := htpasswd.Set(file, u.name, pw, 10); err != nil {
			return err
		}
		d.passwords = append(d.passwords, [2]string{u.name, pw})
		fmt.Fprintf(&sb, "%s %s\n", u.name, pw)
	}
	// A new file, renamed into place: a passwords.txt left from an earlier
	// start is replaced, never written into.
	return atomicfile.Write(pwFile, []byte(sb.String()), 0o600)
}

func (d *devSetup) readPasswords(file string) error {
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if user, pw, ok := strings.Cut(sc.Text(), " "); ok {
			d.passwords = append(d.passwords, [2]string{user, pw})
		}
	}
	return sc.Err()
}

// ensurePolicy copies the embedded default policy into the state directory,
// where it can be edited: the broker reloads it on change.
func (d *devSetup) ensurePolicy() error {
	dst := filepath.Join(d.stateDir, "policy")
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	src := policies.DefaultFS()
	return fs.WalkDir(src, ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dst, p)
		if e.IsDir() {
			return os.Mkdir(target, 0o755)
		}
		data, err := fs.ReadFile(src, p)
		if err != nil {
			return err
		}
		return createFile(target, data, 0o644)
	})
}

func (d *devSetup) ensureConfig(listen, port string) error {
	if _, err := os.Stat(d.config); err == nil {
		return nil
	}
	cfg := fmt.Sprintf(`# tollgate development configuration, written on first start.
# Edit it freely; see README.md for every setting.
listen: %q
state_dir: .
services:
  - name: %q
    default: true
    issuer: %q
    realm: %q
    token_ttl: 5m
    keys: keys
identity:
  - {name: local, type: htpasswd, file: htpasswd}
policy:
  source: policy
log: {level: info, format: json}
`, listen, devService, devIssuer, devRealm(port))
	return createFile(d.config, []byte(cfg), 0o600)
}

// devRealm is the realm of a development broker on port: clients reach it
// by name, as they refuse loopback IP literals (see realmWarning).
func devRealm(port string) string { return "http://localhost:" + port + "/token" }

// followListen makes a configuration saved by an earlier start follow a
// --listen that differs from its listen: its development realms name the
// old port, and a registry would send every client to a broker that is
// not there. Realms someone changed by hand are left alone. The file keeps
// its comments and is replaced atomically, like every file we write here.
func (d *devSetup) followListen(listen string) error {
	if listen == "" {
		return nil
	}
	data, err := os.ReadFile(d.config)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", d.config, err)
	}
	if len(doc.Content) == 0 {
		return nil // empty: nothing saved to follow
	}
	saved := mappingValue(doc.Content[0], "listen")
	if saved == nil || saved.Value == listen {
		return nil
	}
	_, oldPort, _ := net.SplitHostPort(saved.Value)
	_, newPort, _ := net.SplitHostPort(listen)
	change := fmt.Sprintf("--listen %s differs from the saved listen %s: updated listen in %s", listen, saved.Value, d.config)
	saved.Value = listen
	if services := mappingValue(doc.Content[0], "services"); services != nil {
		for i, svc := range services.Content {
			realm := mappingValue(svc, "realm")
			switch {
			case realm == nil:
			case realm.Value == devRealm(oldPort):
				realm.Value = devRealm(newPort)
				change += fmt.Sprintf(", and services[%d].realm to %s (registry.yml too: restart the registry to use it)", i, realm.Value)
			default:
				change += fmt.Sprintf("; services[%d].realm %s is left as it is: it is not the development realm of the old port", i, realm.Value)
			}
		}
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return err
	}
	if err := atomicfile.Write(d.config, out.Bytes(), 0o600); err != nil {
		return err
	}
	d.changes = append(d.changes, change)
	return nil
}

// mappingValue is the value of key in the YAML mapping m, or nil.
func mappingValue(m *yaml.Node, key string) *yaml.Node {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// createFile writes a new file (O_EXCL): it never writes into a file, or
// through a link, that appeared after the state directory was checked.
func createFile(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeRegistryConfig writes a distribution configuration that trusts this
// broker, and the certificate bundle it points at.
func (d *devSetup) writeRegistryConfig(cfg *config.Config) error {
	services, err := cfg.LoadServices()
	if err != nil {
		return err
	}
	svc := services[0]
	bundle := filepath.Join(d.stateDir, "registry-bundle.pem")
	if err := atomicfile.Write(bundle, svc.Keys.CertBundle(time.Now()), 0o644); err != nil {
		return err
	}
	reg := fmt.Sprintf(`# A distribution (2.8 or 3.x) configuration that trusts the development broker.
version: 0.1
log: {level: info}
storage:
  filesystem: {rootdirectory: %q}
  delete: {enabled: true}
http:
  addr: %q
%s`, filepath.Join(d.stateDir, "registry-data"), devRegistry, registryAuthSection(svc, bundle))
	return atomicfile.Write(d.registry, []byte(reg), 0o644)
}

func registryAuthSection(svc *broker.Service, bundle string) string {
	return fmt.Sprintf(`auth:
  token:
    realm: %q
    service: %q
    issuer: %q
    rootcertbundle: %q
`, svc.Realm, svc.Name, svc.Issuer, bundle)
}

func (d *devSetup) printBanner(w io.Writer, addr string) {
	pw := map[string]string{}
	for _, p := range d.passwords {
		pw[p[0]] = p[1]
	}
	fmt.Fprintf(w, "\ntollgate development broker listening on %s\n", addr)
	for _, c := range d.changes {
		fmt.Fprintf(w, "changed: %s\n", c)
	}
	fmt.Fprintf(w, "state directory: %s (config.yaml, keys/, htpasswd, policy/)\n\n", d.stateDir)
	fmt.Fprintf(w, "users (passwords are also in %s):\n", filepath.Join(d.stateDir, "passwords.txt"))
	for _, u := range devUsers {
		fmt.Fprintf(w, "  %-6s %-18s %s\n", u.name, pw[u.name], u.role)
	}
	fmt.Fprintf(w, `
1. start a registry that trusts this broker (in another terminal):
     docker-registry serve %[1]s      # Debian's distribution 2.8
     registry serve %[1]s             # or distribution 3.x

2. push as alice, then pull anonymously from the public project library:
     crane auth login %[2]s -u alice -p %[3]s
     tar -cf layer.tar README.md && crane append -f layer.tar -t %[2]s/team/app:v1
     crane append -f layer.tar -t %[2]s/library/hello:v1
     crane auth logout %[2]s
     crane ls %[2]s/library/hello    # anonymous: allowed, library is public
     crane ls %[2]s/team/app         # anonymous: denied, team is private

3. policies live in %[4]s: edit data.json and the broker reloads it within seconds.
`, d.registry, devRegistry, pw["alice"], filepath.Join(d.stateDir, "policy"))
}
