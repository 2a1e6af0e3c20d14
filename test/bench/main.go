// Command bench is what `make bench` runs: the Go benchmarks beside the code,
// then the same loopback load (test/load) against tollgate (ES256 and RS256),
// the minimal parse-and-sign endpoint (test/ceiling) and, when DOCKER_AUTH
// names its binary, cesanta/docker_auth with an equivalent configuration, in
// alternating rounds. It prints one table and which performance targets of
// issue 7 were met. Ratios are the median of per-round ratios: each round runs
// a server and what it is compared with back to back, so a neighbour's compile
// job slows both, not one. Every server listens on 127.0.0.1 only.
//
// Examples:
//
//	go run ./test/bench
//	DOCKER_AUTH=/tmp/docker_auth go run ./test/bench -rounds 5 -duration 5s
//	go run ./test/bench -micro=false -pairs 0
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tollgate/tollgate/policies"
)

type options struct {
	rounds        int
	duration      time.Duration
	concurrency   int
	pairs         int64
	users         int
	distinctRepos int
	distinctUsers int
	distinctCost  int
	micro         bool
	benchtime     string
	benchCount    int
	dockerAuth    string
	keep          bool
	soak          time.Duration // > 0: the soak instead of the benchmark
	soakRound     time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.rounds, "rounds", 5, "alternating rounds of the load runs (medians are reported)")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "length of each load run")
	flag.IntVar(&o.concurrency, "c", 8, "concurrent loopback clients")
	flag.Int64Var(&o.pairs, "pairs", 1_000_000, "memory run: distinct (user, repository) pairs requested (0 skips it)")
	flag.IntVar(&o.users, "users", 100, "memory run: distinct users (bcrypt cost 10 each)")
	flag.IntVar(&o.distinctRepos, "distinct-repos", 100_000, "distinct scenarios: repositories cycled over, so that neither token reuse nor the decision cache answers")
	flag.IntVar(&o.distinctUsers, "distinct-users", 10_000, "distinct-users scenario: htpasswd users cycled over (0 skips the scenario)")
	flag.IntVar(&o.distinctCost, "distinct-cost", 4, "bcrypt cost of the distinct-users scenario's users (10,000 logins at cost 10 would take minutes per server and round)")
	flag.BoolVar(&o.micro, "micro", true, "run the Go micro-benchmarks first")
	flag.StringVar(&o.benchtime, "benchtime", "1s", "go test -benchtime for the micro-benchmarks")
	flag.IntVar(&o.benchCount, "bench-count", 3, "go test -count for the micro-benchmarks (the median is reported)")
	flag.StringVar(&o.dockerAuth, "docker-auth", os.Getenv("DOCKER_AUTH"), "docker_auth binary to compare with (default $DOCKER_AUTH)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (configs, keys, logs)")
	flag.DurationVar(&o.soak, "soak", 0, "run the soak instead (make soak): mixed load for this long with reloads, key rotations, policy and user changes between runs")
	flag.DurationVar(&o.soakRound, "soak-round", 30*time.Second, "soak: length of each load run")
	flag.Parse()
	if o.soak > 0 {
		if o.soak > 40*time.Minute || o.soakRound < time.Second || o.soakRound > o.soak {
			fmt.Fprintln(os.Stderr, "bench: want -soak up to 40m and -soak-round between 1s and -soak")
			os.Exit(2)
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		ctx, cancel := context.WithTimeout(ctx, o.soak+10*time.Minute) // bounded: setup, runs, the last run
		defer cancel()
		if err := soak(ctx, o, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "soak:", err)
			os.Exit(1)
		}
		return
	}
	if o.rounds < 1 || o.rounds > 20 || o.duration <= 0 || o.duration > 2*time.Minute || o.concurrency < 1 || o.concurrency > 512 ||
		o.distinctRepos < 1 || o.distinctRepos > 10_000_000 || o.distinctUsers < 0 || o.distinctUsers > 100_000 ||
		o.distinctCost < bcrypt.MinCost || o.distinctCost > 12 {
		fmt.Fprintln(os.Stderr, "bench: want -rounds 1..20, -duration up to 2m, -c 1..512, -distinct-repos 1..10000000, -distinct-users 0..100000, -distinct-cost 4..12")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Everything the benchmark does ends within this bound.
	ctx, cancel := context.WithTimeout(ctx, 45*time.Minute)
	defer cancel()
	if _, err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// row is one line of the table.
type row struct {
	target, key, scenario string
	rate                  float64 // tokens/s, or ops/s for a micro-benchmark
	p50, p99, p999        float64 // µs; for a micro-benchmark p50 is the time per op
	cpuUs                 float64 // server CPU time per token, µs
	errors                int64
	rssMiB                float64
	vsDocker, vsCeiling   float64 // medians of the per-round ratios of tokens/s
	growth                float64 // memory run: RSS growth over the second half
	note                  string
}

// loadResult mirrors test/load's JSON output.
type loadResult struct {
	Requests   int64            `json:"requests"`
	Errors     int64            `json:"errors"`
	ErrorKinds map[string]int64 `json:"error_kinds"`
	Seconds    float64          `json:"seconds"`
	TokensPerS float64          `json:"tokens_per_s"`
	P50us      float64          `json:"p50_us"`
	P99us      float64          `json:"p99_us"`
	P999us     float64          `json:"p999_us"`
	CPUus      float64          `json:"server_cpu_us_per_token"`
	RSSStartKB int64            `json:"rss_start_kib"`
	RSSEndKB   int64            `json:"rss_end_kib"`
	RSSPeakKB  int64            `json:"rss_peak_kib"`
	RSSSamples []int64          `json:"rss_samples_kib"`
}

type env struct {
	o        options
	root     string // repository root
	work     string
	bin      string // directory of built binaries
	password string
	procs    []*exec.Cmd
}

// run measures everything, prints the table and the targets to w and
// returns the table's rows.
func run(ctx context.Context, o options, w io.Writer) ([]row, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "tollgate-bench-")
	if err != nil {
		return nil, err
	}
	e := &env{o: o, root: root, work: work, bin: filepath.Join(work, "bin")}
	defer e.cleanup()

	var rows []row
	if o.micro {
		step("Go benchmarks (go test -bench, -benchtime %s, median of -count %d)", o.benchtime, max(1, o.benchCount))
		if rows, err = e.micro(ctx); err != nil {
			return nil, err
		}
	}
	step("building tollgate, test/ceiling and test/load")
	for name, pkg := range map[string]string{"tollgate": "./cmd/tollgate", "ceiling": "./test/ceiling", "load": "./test/load"} {
		if err := e.goCmd(ctx, "build", "-o", filepath.Join(e.bin, name), pkg); err != nil {
			return nil, err
		}
	}
	step("fixture: ES256 and RS256 keys (tollgate keygen), bcrypt cost-10 users, default policy")
	if err := e.fixture(ctx); err != nil {
		return nil, err
	}
	targets, startup, err := e.start(ctx)
	if err != nil {
		return nil, err
	}
	load, err := e.rounds(ctx, targets)
	if err != nil {
		return nil, err
	}
	rows = append(rows, load...)
	extra, err := e.halfPeakAndMemory(ctx, targets, load)
	if err != nil {
		return nil, err
	}
	rows = append(rows, extra...)
	fmt.Fprintln(w)
	printTable(w, rows, o)
	fmt.Fprintln(w)
	printTargets(w, rows, startup)
	return rows, nil
}

func step(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "==> "+format+"\n", args...)
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run from inside the tollgate module")
	}
	return filepath.Dir(mod), nil
}

func (e *env) goCmd(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = e.root, os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

func (e *env) cleanup() {
	for _, p := range e.procs {
		if p.Process != nil {
			_ = p.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, p := range e.procs {
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = p.Process.Kill()
		}
	}
	if e.o.keep {
		fmt.Fprintln(os.Stderr, "work directory kept:", e.work)
		return
	}
	_ = os.RemoveAll(e.work)
}

// --- micro-benchmarks ---

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op(?:\s+([\d.]+) B/op\s+(\d+) allocs/op)?`)

func (e *env) micro(ctx context.Context) ([]row, error) {
	runs := []struct{ pkg, pattern string }{
		{"./scope", "BenchmarkParse"},
		{"./identity", "BenchmarkCredentialCacheHit|BenchmarkChainLoginCached"},
		{"./policies", "BenchmarkDefaultPolicy|BenchmarkDecisionCachedParallel"}, // DefaultPolicyDistinct too
		{"./broker", "BenchmarkSign|BenchmarkTokenHandler"},
	}
	var rows []row
	for _, r := range runs {
		cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", r.pattern, "-benchmem", "-benchtime", e.o.benchtime,
			"-count", strconv.Itoa(max(1, e.o.benchCount)), r.pkg)
		cmd.Dir = e.root
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = io.MultiWriter(&out, os.Stderr), os.Stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("go test -bench %s %s: %w", r.pattern, r.pkg, err)
		}
		// One row per benchmark: the median time of its -count runs.
		var names []string
		times, notes := map[string][]float64{}, map[string]string{}
		for _, line := range strings.Split(out.String(), "\n") {
			m := benchLine.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			ns, _ := strconv.ParseFloat(m[2], 64)
			if _, seen := times[m[1]]; !seen {
				names = append(names, m[1])
			}
			times[m[1]] = append(times[m[1]], ns)
			if m[4] != "" {
				notes[m[1]] = m[3] + " B/op, " + m[4] + " allocs/op"
			}
		}
		for _, name := range names {
			ns := median(times[name])
			note := notes[name]
			if len(times[name]) > 1 {
				note = strings.TrimPrefix(fmt.Sprintf("%s; runs %s-%s", note, fmtDur(slices.Min(times[name])/1000), fmtDur(slices.Max(times[name])/1000)), "; ")
			}
			rows = append(rows, row{target: "go test", scenario: name, rate: 1e9 / ns, p50: ns / 1000, note: note})
		}
	}
	return rows, nil
}

// --- fixture ---

const (
	service = "registry.bench"
	issuer  = "tollgate-bench"
)

func (e *env) fixture(ctx context.Context) error {
	tg := filepath.Join(e.bin, "tollgate")
	for _, k := range []struct{ dir, typ string }{{"keys-es", "ec"}, {"keys-rs", "rsa"}} {
		cmd := exec.CommandContext(ctx, tg, "keygen", "--out", filepath.Join(e.work, k.dir), "--type", k.typ, "--name", "bench")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("tollgate keygen: %v: %s", err, out)
		}
	}
	e.password = rand.Text()
	if err := os.WriteFile(filepath.Join(e.work, "alice.pw"), []byte(e.password+"\n"), 0o600); err != nil {
		return err
	}
	htp := filepath.Join(e.work, "htpasswd")
	cmd := exec.CommandContext(ctx, tg, "htpasswd", "add", "--cost", "10", htp, "alice")
	cmd.Stdin = strings.NewReader(e.password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("tollgate htpasswd add: %v: %s", err, out)
	}
	// Many distinct users for the memory run (cost 10, like alice), and for
	// the distinct-users scenario (cost -distinct-cost).
	creds, err := makeUsers(htp, filepath.Join(e.work, "users.txt"), "user%04d", e.o.users, 10)
	if err != nil {
		return err
	}
	dcreds, err := makeUsers(htp, filepath.Join(e.work, "distinct-users.txt"), "duser%05d", e.o.distinctUsers, e.o.distinctCost)
	if err != nil {
		return err
	}
	creds = append(creds, dcreds...)
	aliceHash, err := htpasswdHash(htp, "alice")
	if err != nil {
		return err
	}

	// The shipped default policy, with alice a developer in the private project
	// team and a maintainer of the public project library.
	pol := filepath.Join(e.work, "policy")
	if err := os.MkdirAll(pol, 0o755); err != nil {
		return err
	}
	if err := fs.WalkDir(policies.DefaultFS(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".rego") || strings.HasSuffix(path, "_test.rego") {
			return err
		}
		b, err := fs.ReadFile(policies.DefaultFS(), path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(pol, filepath.Base(path)), b, 0o644)
	}); err != nil {
		return err
	}
	data := `{"registry": {"projects": {
  "team":    {"public": false, "members": {"alice": "developer"}},
  "library": {"public": true,  "members": {"alice": "maintainer"}}
}, "system_admins": {"users": [], "groups": []}}}
`
	if err := os.WriteFile(filepath.Join(pol, "data.json"), []byte(data), 0o644); err != nil {
		return err
	}

	// docker_auth's key is the same RSA key, in the PKCS#1 form libtrust reads.
	rsKey, err := os.ReadFile(filepath.Join(e.work, "keys-rs", "bench.key"))
	if err != nil {
		return err
	}
	block, _ := pem.Decode(rsKey)
	if block == nil {
		return errors.New("keys-rs/bench.key: no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return err
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return errors.New("keys-rs/bench.key: not RSA")
	}
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)})
	if err := os.WriteFile(filepath.Join(e.work, "docker_auth.key"), pkcs1, 0o600); err != nil {
		return err
	}
	var da strings.Builder
	fmt.Fprintf(&da, "server:\n  addr: %q\ntoken:\n  issuer: %q\n  expiration: 300\n  certificate: %q\n  key: %q\nusers:\n  \"\": {}\n  alice:\n    password: %q\n",
		"127.0.0.1:PORT", issuer, filepath.Join(e.work, "keys-rs", "bench.crt"), filepath.Join(e.work, "docker_auth.key"), aliceHash)
	for _, c := range creds {
		fmt.Fprintf(&da, "  %s:\n    password: %q\n", c.user, c.hash)
	}
	// The default policy's grants, as first-match ACL entries.
	da.WriteString(`acl:
  - match: {account: "alice", name: "team/*"}
    actions: ["pull", "push"]
  - match: {account: "alice", name: "library/*"}
    actions: ["pull", "push"]
  - match: {name: "library/*"}
    actions: ["pull"]
  - match: {account: "/.+/", name: "${account}/*"}
    actions: ["*"]
`)
	return os.WriteFile(filepath.Join(e.work, "docker_auth.yml.tmpl"), []byte(da.String()), 0o600)
}

type cred struct{ user, pw, hash string }

// makeUsers hashes n users named by format (in parallel), appends them to the
// htpasswd file htp and writes their `user password` lines to list.
func makeUsers(htp, list, format string, n, cost int) ([]cred, error) {
	creds := make([]cred, n)
	sem := make(chan struct{}, 4)
	errc := make(chan error, len(creds))
	for i := range creds {
		creds[i] = cred{user: fmt.Sprintf(format, i), pw: rand.Text()}
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			h, err := bcrypt.GenerateFromPassword([]byte(creds[i].pw), cost)
			creds[i].hash = string(h)
			errc <- err
		}()
	}
	for range creds {
		if err := <-errc; err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(htp, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	var users bytes.Buffer
	for _, c := range creds {
		fmt.Fprintf(f, "%s:%s\n", c.user, c.hash)
		fmt.Fprintf(&users, "%s %s\n", c.user, c.pw)
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return creds, os.WriteFile(list, users.Bytes(), 0o600)
}

func htpasswdHash(path, user string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if u, h, ok := strings.Cut(line, ":"); ok && u == user {
			return strings.TrimSpace(h), nil
		}
	}
	return "", fmt.Errorf("%s: no user %s", path, user)
}

// noReuse names tollgate with token_reuse: 0s, which signs every token: what
// the request path costs on top of the signature (docs/decisions/0011).
const noReuse = "tollgate (no reuse)"

// isTollgate reports whether a target is tollgate, with or without reuse.
func isTollgate(t string) bool { return t == "tollgate" || t == noReuse }

func tollgateConfig(addr, keys, dir string, reuse time.Duration) string {
	return fmt.Sprintf(`listen: %q
state_dir: %q
services:
  - name: %q
    default: true
    issuer: %q
    realm: "http://%s/token"
    token_ttl: 5m
    token_reuse: %s
    keys: %q
identity:
  - {name: local, type: htpasswd, file: htpasswd}
policy:
  source: policy
log: {level: info, format: json}
`, addr, dir, service, issuer, addr, reuse, keys)
}

// --- servers ---

type target struct {
	name, key string
	url       string
	pid       int
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func (e *env) spawn(name string, args ...string) (*exec.Cmd, error) {
	// tollgate writes one decision line per token to stderr. A pipe read by
	// this process, or a file, would measure the reader or the disk: the
	// output goes to /dev/null (start a server by hand with -keep's configs to
	// read its log).
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = e.work
	cmd.Stdout, cmd.Stderr = devnull, devnull
	cmd.SysProcAttr = dieWithParent()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s %s: %w", filepath.Base(args[0]), name, err)
	}
	e.procs = append(e.procs, cmd)
	return cmd, nil
}

// waitReady polls url until it answers 200, for at most 30 seconds.
func waitReady(ctx context.Context, url string) (time.Duration, error) {
	start := time.Now()
	client := &http.Client{Timeout: time.Second}
	for time.Since(start) < 30*time.Second {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start), nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, fmt.Errorf("%s not ready after 30s", url)
}

func (e *env) start(ctx context.Context) ([]target, time.Duration, error) {
	var targets []target
	var startup time.Duration
	for _, k := range []struct {
		name, key, dir string
		reuse          time.Duration
	}{{"tollgate", "ES256", "keys-es", time.Second}, {"tollgate", "RS256", "keys-rs", time.Second},
		{noReuse, "ES256", "keys-es", 0}, {noReuse, "RS256", "keys-rs", 0}} {
		addr, err := freeAddr()
		if err != nil {
			return nil, 0, err
		}
		cfg := filepath.Join(e.work, fmt.Sprintf("tollgate-%s-reuse%s.yaml", k.dir, k.reuse))
		if err := os.WriteFile(cfg, []byte(tollgateConfig(addr, k.dir, e.work, k.reuse)), 0o644); err != nil {
			return nil, 0, err
		}
		cmd, err := e.spawn(k.key, filepath.Join(e.bin, "tollgate"), "serve", "--config", cfg)
		if err != nil {
			return nil, 0, err
		}
		ready, err := waitReady(ctx, "http://"+addr+"/readyz")
		if err != nil {
			return nil, 0, fmt.Errorf("%s %s: %w (log in %s)", k.name, k.key, err, e.work)
		}
		step("%s %s ready on %s in %s", k.name, k.key, addr, ready.Round(time.Millisecond))
		startup = max(startup, ready)
		targets = append(targets, target{k.name, k.key, "http://" + addr + "/token", cmd.Process.Pid})
	}
	for _, k := range []struct{ key, dir string }{{"ES256", "keys-es"}, {"RS256", "keys-rs"}} {
		addr, err := freeAddr()
		if err != nil {
			return nil, 0, err
		}
		cmd, err := e.spawn(k.key, filepath.Join(e.bin, "ceiling"), "-listen", addr, "-key", filepath.Join(e.work, k.dir, "bench.key"),
			"-issuer", issuer, "-service", service)
		if err != nil {
			return nil, 0, err
		}
		if _, err := waitReady(ctx, "http://"+addr+"/token?scope=repository:library/hello:pull"); err != nil {
			return nil, 0, fmt.Errorf("ceiling %s: %w", k.key, err)
		}
		targets = append(targets, target{"ceiling", k.key, "http://" + addr + "/token", cmd.Process.Pid})
	}
	if e.o.dockerAuth != "" {
		addr, err := freeAddr()
		if err != nil {
			return nil, 0, err
		}
		tmpl, err := os.ReadFile(filepath.Join(e.work, "docker_auth.yml.tmpl"))
		if err != nil {
			return nil, 0, err
		}
		cfg := filepath.Join(e.work, "docker_auth.yml")
		if err := os.WriteFile(cfg, bytes.Replace(tmpl, []byte("127.0.0.1:PORT"), []byte(addr), 1), 0o600); err != nil {
			return nil, 0, err
		}
		cmd, err := e.spawn("RS256", e.o.dockerAuth, "-logtostderr", cfg)
		if err != nil {
			return nil, 0, fmt.Errorf("start docker_auth %s: %w", e.o.dockerAuth, err)
		}
		if _, err := waitReady(ctx, "http://"+addr+"/auth?service="+service); err != nil {
			return nil, 0, fmt.Errorf("docker_auth: %w (log in %s)", err, e.work)
		}
		step("docker_auth ready on %s", addr)
		targets = append(targets, target{"docker_auth", "RS256", "http://" + addr + "/auth", cmd.Process.Pid})
	} else {
		step("DOCKER_AUTH not set: no docker_auth comparison (see docs/performance.md)")
	}
	return targets, startup, nil
}

// --- load ---

// scenario is a load run: a request mix, on which targets it runs, the load
// tool's extra arguments and its warm-up (requests before the measurement).
type scenario struct {
	name, mix string
	on        func(t target) bool
	args      func(e *env) []string // later flags win over load's defaults
	warm      func(o options, t target) int
	halfPeak  bool // also run at half of its peak rate (tollgate only)
}

// The ceiling answers any request without looking at credentials, so it
// takes the password load too: the same requests, the least work.
var scenarios = []scenario{
	{name: "password (bcrypt 10, repeated)", mix: "password=1", on: everywhere, halfPeak: true},
	{name: "anonymous public pull", mix: "anonymous=1", on: everywhere, halfPeak: true},
	{name: "refresh grant", mix: "refresh=1", on: func(t target) bool { return isTollgate(t.name) }},
	{name: "mix: password+anonymous+refresh+distinct", mix: "password=1,anonymous=1,refresh=1,distinct=1",
		on: func(t target) bool { return t.name == "tollgate" && t.key == "ES256" },
		// The distinct kind logs in every user: the warm-up pays their first
		// bcrypt (cached for a minute, so again each round), which a run of
		// a few seconds would otherwise measure.
		warm: func(o options, _ target) int { return 4 * o.users }},
	// Issue 20: every request names a new repository (and, in the last, a
	// new user too), so neither token reuse nor the decision cache answers.
	{name: distinctAnon, mix: "anonymous-distinct=1", on: everywhere, halfPeak: true,
		args: func(e *env) []string { return []string{"-repos", strconv.Itoa(e.o.distinctRepos)} }},
	{name: distinctPassword, mix: "password-distinct=1", on: es256OrDockerAuth, halfPeak: true,
		args: func(e *env) []string { return []string{"-repos", strconv.Itoa(e.o.distinctRepos)} }},
	{name: distinctUsers, mix: "distinct=1", on: es256OrDockerAuth, halfPeak: true,
		args: func(e *env) []string {
			return []string{"-users-file", filepath.Join(e.work, "distinct-users.txt"), "-repos", strconv.Itoa(max(1, e.o.distinctRepos/max(1, e.o.distinctUsers)))}
		},
		// One login per user before the run: tollgate's credential cache then
		// holds them all, as it would under a steady stream. docker_auth and
		// the ceiling cache nothing, so their warm-up would measure nothing.
		warm: func(o options, t target) int {
			if isTollgate(t.name) {
				return o.distinctUsers
			}
			return 8
		}},
}

const (
	distinctAnon     = "distinct repos: anonymous pull"
	distinctPassword = "distinct repos: password (alice, bcrypt 10)"
	distinctUsers    = "distinct users and repos: password (bcrypt -distinct-cost)"
)

func everywhere(target) bool { return true }

// es256OrDockerAuth: the password scenarios of issue 20 compare tollgate
// ES256 with its ceiling and with docker_auth, which signs RS256 only.
func es256OrDockerAuth(t target) bool { return t.key == "ES256" || t.name == "docker_auth" }

func (e *env) load(ctx context.Context, t target, mix string, extra ...string) (*loadResult, error) {
	args := []string{"-json", "-url", t.url, "-service", service, "-mix", mix, "-c", strconv.Itoa(e.o.concurrency),
		"-duration", e.o.duration.String(), "-n", "10000000", "-warmup", "8", "-pid", strconv.Itoa(t.pid),
		"-user", "alice", "-password-file", filepath.Join(e.work, "alice.pw"),
		"-users-file", filepath.Join(e.work, "users.txt"), "-repos", "1000"}
	args = append(args, extra...)
	cmd := exec.CommandContext(ctx, filepath.Join(e.bin, "load"), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("load %s %s %s: %v: %s", t.name, t.key, mix, err, errb.String())
	}
	var r loadResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return nil, fmt.Errorf("load output: %w: %s", err, out.String())
	}
	return &r, nil
}

// scenarioArgs are the load tool's arguments for s against t.
func (e *env) scenarioArgs(s scenario, t target) []string {
	warm := 8
	if s.warm != nil {
		warm = max(warm, s.warm(e.o, t))
	}
	args := []string{"-warmup", strconv.Itoa(warm)}
	if s.args != nil {
		args = append(args, s.args(e)...)
	}
	return args
}

type runKey struct{ target, key, scenario string }

// rounds runs every (scenario, target) once per round. Within a scenario the
// targets run back to back, each tollgate beside what it is compared with
// (ceiling of its key type, docker_auth next to tollgate RS256), and the
// order reverses every other round. A ratio is taken within each round and
// the median over the rounds is reported, with the median tokens/s.
func (e *env) rounds(ctx context.Context, targets []target) ([]row, error) {
	rank := func(t target) int { // tollgate, no reuse, ceiling: ES256, then RS256; docker_auth
		r := map[string]int{"tollgate": 0, noReuse: 1, "ceiling": 2, "docker_auth": 6}[t.name]
		if t.key == "RS256" && t.name != "docker_auth" {
			r += 3
		}
		return r
	}
	ordered := slices.Clone(targets)
	slices.SortStableFunc(ordered, func(a, b target) int { return rank(a) - rank(b) })
	results := map[runKey][]*loadResult{}
	vsDocker, vsCeiling := map[runKey][]float64{}, map[runKey][]float64{}
	var keys []runKey
	for r := range e.o.rounds {
		step("round %d of %d: %s per run, %d clients", r+1, e.o.rounds, e.o.duration, e.o.concurrency)
		for _, s := range scenarios {
			order := slices.Clone(ordered)
			if r%2 == 1 {
				slices.Reverse(order)
			}
			this := map[runKey]*loadResult{}
			for _, t := range order {
				if !s.on(t) || (s.name == distinctUsers && e.o.distinctUsers == 0) {
					continue
				}
				res, err := e.load(ctx, t, s.mix, e.scenarioArgs(s, t)...)
				if err != nil {
					return nil, err
				}
				fmt.Fprintf(os.Stderr, "    %-11s %s  %-42s %9.0f tokens/s  p99 %8.2f ms  %6.0f µs CPU/token  errors %d\n",
					t.name, t.key, s.name, res.TokensPerS, res.P99us/1000, res.CPUus, res.Errors)
				k := runKey{t.name, t.key, s.name}
				if r == 0 {
					keys = append(keys, k)
				}
				results[k] = append(results[k], res)
				this[k] = res
			}
			for k, res := range this {
				if !isTollgate(k.target) {
					continue
				}
				// docker_auth signs RS256 only: both key types of tollgate are compared with it.
				if d := this[runKey{"docker_auth", "RS256", k.scenario}]; d != nil && d.TokensPerS > 0 {
					vsDocker[k] = append(vsDocker[k], res.TokensPerS/d.TokensPerS)
				}
				if c := this[runKey{"ceiling", k.key, k.scenario}]; c != nil && c.TokensPerS > 0 {
					vsCeiling[k] = append(vsCeiling[k], res.TokensPerS/c.TokensPerS)
				}
			}
		}
	}
	var rows []row
	for _, k := range keys {
		rs := results[k]
		med := func(f func(*loadResult) float64) float64 {
			v := make([]float64, len(rs))
			for i, r := range rs {
				v[i] = f(r)
			}
			return median(v)
		}
		var errs int64
		var rss float64
		for _, r := range rs {
			errs += r.Errors
			rss = max(rss, float64(r.RSSPeakKB)/1024)
		}
		rows = append(rows, row{target: k.target, key: k.key, scenario: k.scenario,
			rate:   med(func(r *loadResult) float64 { return r.TokensPerS }),
			p50:    med(func(r *loadResult) float64 { return r.P50us }),
			p99:    med(func(r *loadResult) float64 { return r.P99us }),
			p999:   med(func(r *loadResult) float64 { return r.P999us }),
			cpuUs:  med(func(r *loadResult) float64 { return r.CPUus }),
			errors: errs, rssMiB: rss,
			vsDocker: median(vsDocker[k]), vsCeiling: median(vsCeiling[k]),
			note: spread(rs)})
	}
	return rows, nil
}

// median of v, 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// spread names the lowest and highest tokens/s of the rounds.
func spread(rs []*loadResult) string {
	if len(rs) < 2 {
		return ""
	}
	lo, hi := rs[0].TokensPerS, rs[0].TokensPerS
	for _, r := range rs {
		lo, hi = min(lo, r.TokensPerS), max(hi, r.TokensPerS)
	}
	return fmt.Sprintf("rounds %s-%s/s", fmtRate(lo), fmtRate(hi))
}

// halfPeakAndMemory measures latency at half the peak rate, and resident
// memory while many distinct (user, repository) pairs are requested.
func (e *env) halfPeakAndMemory(ctx context.Context, targets []target, load []row) ([]row, error) {
	var rows []row
	for _, t := range targets {
		if !isTollgate(t.name) {
			continue
		}
		for _, s := range scenarios {
			if !s.halfPeak || !s.on(t) || (s.name == distinctUsers && e.o.distinctUsers == 0) {
				continue
			}
			var peak float64
			for _, r := range load {
				if r.target == t.name && r.key == t.key && r.scenario == s.name {
					peak = r.rate
				}
			}
			if peak <= 0 {
				continue
			}
			step("%s %s %s at half the peak rate (%.0f/s)", t.name, t.key, s.name, peak/2)
			res, err := e.load(ctx, t, s.mix, append(e.scenarioArgs(s, t), "-rate", strconv.FormatFloat(peak/2, 'f', 0, 64))...)
			if err != nil {
				return nil, err
			}
			rows = append(rows, row{target: t.name, key: t.key, scenario: s.name + " @ 50% of peak", rate: res.TokensPerS,
				p50: res.P50us, p99: res.P99us, p999: res.P999us, cpuUs: res.CPUus, errors: res.Errors, rssMiB: float64(res.RSSPeakKB) / 1024})
		}
	}
	if e.o.pairs <= 0 {
		return rows, nil
	}
	t := targets[0] // tollgate ES256
	repos := max(1, int(e.o.pairs)/e.o.users)
	step("memory: %d distinct (user, repository) pairs (%d users x %d repositories) against tollgate %s", e.o.pairs, e.o.users, repos, t.key)
	res, err := e.load(ctx, t, "distinct=1", "-n", strconv.FormatInt(e.o.pairs, 10), "-duration", "20m", "-warmup", "0",
		"-repos", strconv.Itoa(repos), "-rss-every", "1s")
	if err != nil {
		return nil, err
	}
	quarter := func(q int) float64 { // RSS after q quarters of the run, MiB
		n := len(res.RSSSamples)
		if n == 0 {
			return 0
		}
		return float64(res.RSSSamples[min(n-1, q*n/4)]) / 1024
	}
	// Flat: once the caches have filled (the first quarter), the highest RSS
	// of the second half exceeds that of the second quarter by at most a
	// tenth. Peaks against peaks: the GC's sawtooth is not growth.
	peak := func(from, to int) int64 { // highest sample in quarters [from, to)
		n, m := len(res.RSSSamples), int64(0)
		for _, v := range res.RSSSamples[from*n/4 : to*n/4] {
			m = max(m, v)
		}
		return m
	}
	growth := 0.0
	if q2 := peak(1, 2); q2 > 0 {
		growth = float64(peak(2, 4))/float64(q2) - 1
	}
	rows = append(rows, row{target: t.name, key: t.key, scenario: fmt.Sprintf("distinct: %d (user, repo) pairs", res.Requests-res.Errors),
		rate: res.TokensPerS, p50: res.P50us, p99: res.P99us, p999: res.P999us, cpuUs: res.CPUus, errors: res.Errors,
		rssMiB: float64(res.RSSPeakKB) / 1024, growth: growth,
		note: fmt.Sprintf("RSS MiB at start %.0f, 1/4 %.0f, 1/2 %.0f, 3/4 %.0f, end %.0f; peak of 2nd half vs 2nd quarter %+.0f%%",
			float64(res.RSSStartKB)/1024, quarter(1), quarter(2), quarter(3), float64(res.RSSEndKB)/1024, growth*100)})
	return rows, nil
}

// --- output ---

func printTable(w io.Writer, rows []row, o options) {
	fmt.Fprintf(w, "%d loopback clients, %s per run, medians of %d alternating rounds (ratios: median of per-round ratios); go test rows: ops/s and time per op, median of %d runs\n\n", o.concurrency, o.duration, o.rounds, max(1, o.benchCount))
	fmt.Fprintln(w, "| server | key | scenario | tokens/s | p50 | p99 | p99.9 | CPU/token | errors | RSS MiB | vs docker_auth | of ceiling | note |")
	fmt.Fprintln(w, "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
	for _, r := range rows {
		opt := func(v float64, f func(float64) string) string {
			if v == 0 {
				return ""
			}
			return f(v)
		}
		ratio := func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) + "x" }
		pct := func(v float64) string { return strconv.FormatFloat(v*100, 'f', 0, 64) + "%" }
		mib := func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
		errs := ""
		if r.target != "go test" {
			errs = strconv.FormatInt(r.errors, 10)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.target, r.key, r.scenario, fmtRate(r.rate), opt(r.p50, fmtDur), opt(r.p99, fmtDur), opt(r.p999, fmtDur), opt(r.cpuUs, fmtDur),
			errs, opt(r.rssMiB, mib), opt(r.vsDocker, ratio), opt(r.vsCeiling, pct), r.note)
	}
}

func fmtRate(v float64) string {
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func fmtDur(us float64) string {
	switch {
	case us >= 1e6:
		return strconv.FormatFloat(us/1e6, 'f', 2, 64) + " s"
	case us >= 1000:
		return strconv.FormatFloat(us/1000, 'f', 2, 64) + " ms"
	case us >= 10:
		return strconv.FormatFloat(us, 'f', 1, 64) + " µs"
	}
	return strconv.FormatFloat(us*1000, 'f', 0, 64) + " ns"
}

// printTargets checks the figures against issue 7's targets.
func printTargets(w io.Writer, rows []row, startup time.Duration) {
	find := func(target, key, scenario string) *row {
		for i := range rows {
			if rows[i].target == target && rows[i].key == key && rows[i].scenario == scenario {
				return &rows[i]
			}
		}
		return nil
	}
	micro := func(name string) float64 {
		for _, r := range rows {
			if r.target == "go test" && r.scenario == name {
				return r.p50
			}
		}
		return 0
	}
	check := func(ok bool, format string, args ...any) {
		mark := "MISSED"
		if ok {
			mark = "met   "
		}
		fmt.Fprintf(w, "%s %s\n", mark, fmt.Sprintf(format, args...))
	}
	pw, anon := scenarios[0].name, scenarios[1].name
	fmt.Fprintln(w, "Targets (issue 7):")
	if find("docker_auth", "RS256", pw) != nil {
		for _, c := range []struct {
			key, scen string
			want      float64
		}{{"RS256", pw, 40}, {"ES256", pw, 250}, {"RS256", anon, 1.1}} {
			for _, tg := range []string{"tollgate", noReuse} {
				if r := find(tg, c.key, c.scen); r != nil {
					check(r.vsDocker >= c.want, "%s, %s %s: %.2fx docker_auth RS256 (want >= %gx)", c.scen, tg, c.key, r.vsDocker, c.want)
				}
			}
		}
	} else {
		fmt.Fprintln(w, "-      docker_auth ratios: not measured (set DOCKER_AUTH)")
	}
	for _, c := range []struct {
		key  string
		want float64
	}{{"ES256", 0.70}, {"RS256", 0.90}} {
		for _, s := range []string{anon, pw} {
			for _, tg := range []string{"tollgate", noReuse} {
				if r := find(tg, c.key, s); r != nil {
					check(r.vsCeiling >= c.want, "%s, %s %s: %.0f%% of the parse-and-sign ceiling (want >= %.0f%%)", s, tg, c.key, r.vsCeiling*100, c.want*100)
				}
			}
		}
	}
	for _, key := range []string{"ES256", "RS256"} {
		for _, s := range []string{pw, anon} {
			for _, tg := range []string{"tollgate", noReuse} {
				if r := find(tg, key, s+" @ 50% of peak"); r != nil {
					check(r.p99 < 5000 && r.errors == 0, "%s %s %s at half of the peak rate (%s/s): p99 %s (want < 5 ms)", tg, key, s, fmtRate(r.rate), fmtDur(r.p99))
				}
			}
		}
	}
	for _, u := range []string{"100", "10000"} {
		if v := micro("BenchmarkDefaultPolicy/users=" + u + "/cached"); v > 0 {
			check(v < 2, "cached policy decision, %s users: %s (want < 2 µs)", u, fmtDur(v))
		}
	}
	u100, u10k := micro("BenchmarkDefaultPolicy/users=100/uncached"), micro("BenchmarkDefaultPolicy/users=10000/uncached")
	if u100 > 0 && u10k > 0 {
		check(u100 < 100 && u10k < 100, "uncached default-policy decision: %s (100 users), %s (10,000 users) (want < 100 µs)", fmtDur(u100), fmtDur(u10k))
		check(u10k <= 1.5*u100, "10,000 users vs 100 users: %.2fx (want <= 1.5x)", u10k/u100)
	}
	for _, r := range rows {
		if strings.HasPrefix(r.scenario, "distinct: ") {
			check(r.rssMiB < 256 && r.growth <= 0.10 && r.errors == 0, "%s: peak RSS %.0f MiB, peak of the second half %+.0f%% of the second quarter's (want < 256 MiB and flat: <= +10%%)", r.scenario, r.rssMiB, r.growth*100)
		}
	}
	check(startup < time.Second, "serve ready (readyz 200) %s after start with the default policy (want < 1 s)", startup.Round(time.Millisecond))
	printDistinctTargets(w, find, micro, check)
}

// printDistinctTargets checks the distinct-request figures against issue 20's goals.
func printDistinctTargets(w io.Writer, find func(target, key, scenario string) *row, micro func(string) float64, check func(bool, string, ...any)) {
	fmt.Fprintln(w, "Targets (issue 20, every request different):")
	for _, tg := range []string{"tollgate", noReuse} {
		for _, s := range []string{distinctAnon, distinctPassword, distinctUsers} {
			if r := find(tg, "ES256", s); r != nil {
				check(r.vsCeiling >= 0.70, "%s, %s ES256: %.0f%% of the parse-and-sign ceiling (want >= 70%%)", s, tg, r.vsCeiling*100)
			}
		}
		if r := find(tg, "RS256", distinctAnon); r != nil && r.vsDocker > 0 {
			check(r.vsDocker >= 1.0, "%s, %s RS256: %.2fx docker_auth RS256 (want >= 1.0x)", distinctAnon, tg, r.vsDocker)
		}
		for _, key := range []string{"ES256", "RS256"} {
			for _, s := range []string{distinctAnon, distinctPassword, distinctUsers} {
				if r := find(tg, key, s+" @ 50% of peak"); r != nil {
					check(r.p99 < 5000 && r.errors == 0, "%s %s %s at half of the peak rate (%s/s): p99 %s (want < 5 ms)", tg, key, s, fmtRate(r.rate), fmtDur(r.p99))
				}
			}
		}
	}
	u100, u10k := micro("BenchmarkDefaultPolicyDistinct/users=100"), micro("BenchmarkDefaultPolicyDistinct/users=10000")
	if u100 > 0 && u10k > 0 {
		check(u10k <= 15, "uncached default-policy decision, distinct requests, 10,000 users and 1,000 projects: %s (want <= 15 µs)", fmtDur(u10k))
		check(u10k <= 1.5*u100, "distinct requests, 10,000 users vs 100 users: %.2fx (want flat: <= 1.5x)", u10k/u100)
	}
}
