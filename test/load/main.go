// Command load drives a registry token endpoint on this machine with a mix of
// token requests and reports tokens/s, latency percentiles, errors and the
// server's resident memory. It talks to loopback addresses only.
//
// Examples:
//
//	go run ./test/load -url http://127.0.0.1:5001/token -user alice -password-file pw.txt \
//	    -mix password=1 -c 8 -n 100000 -duration 10s -pid $(pidof tollgate)
//	go run ./test/load -url http://127.0.0.1:5001/token -mix anonymous=1 -rate 3000 -duration 10s
//	go run ./test/load -url http://127.0.0.1:5001/token -users-file users.txt -repos 10000 \
//	    -mix distinct=1 -n 1000000 -duration 10m -pid 1234 -rss-every 5s
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Hard limits: every run ends, whatever the flags say.
const (
	maxRequests    = 50_000_000
	maxDuration    = 30 * time.Minute
	maxConcurrency = 4096
	requestTimeout = 30 * time.Second
)

type options struct {
	url          string
	service      string
	n            int64
	duration     time.Duration
	concurrency  int
	rate         float64
	mix          string
	user         string
	password     string
	passwordFile string
	usersFile    string
	repos        int
	pid          int
	rssEvery     time.Duration
	warmup       int
	jsonOut      bool
}

func main() {
	var o options
	flag.StringVar(&o.url, "url", "http://127.0.0.1:5001/token", "token endpoint; the host must be a loopback address")
	flag.StringVar(&o.service, "service", "registry.bench", "service parameter")
	flag.Int64Var(&o.n, "n", 100_000, "stop after this many requests")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "stop after this long")
	flag.IntVar(&o.concurrency, "c", 8, "concurrent clients (each one keep-alive connection)")
	flag.Float64Var(&o.rate, "rate", 0, "target requests/s over all clients (0: as fast as the server answers); latency then counts from the scheduled start")
	flag.StringVar(&o.mix, "mix", "password=1,anonymous=1", "request kinds and weights: password, anonymous, refresh, distinct, anonymous-distinct, password-distinct")
	flag.StringVar(&o.user, "user", "alice", "user of the password and refresh kinds")
	flag.StringVar(&o.password, "password", "", "password of -user (prefer -password-file)")
	flag.StringVar(&o.passwordFile, "password-file", "", "file whose first line is the password of -user")
	flag.StringVar(&o.usersFile, "users-file", "", "distinct kind: file of `user password` lines")
	flag.IntVar(&o.repos, "repos", 1000, "distinct kind: repositories per user (USER/repoN); anonymous-distinct and password-distinct: repositories cycled over (library/repoN, USER/repoN)")
	flag.IntVar(&o.pid, "pid", 0, "server process whose VmRSS (from /proc/PID/status) is reported")
	flag.DurationVar(&o.rssEvery, "rss-every", 0, "also print VmRSS at this interval during the run")
	flag.IntVar(&o.warmup, "warmup", 0, "requests sent (and not measured) before the run, one per kind at least")
	flag.BoolVar(&o.jsonOut, "json", false, "print the result as one JSON object")
	flag.Parse()
	res, err := run(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(2)
	}
	if o.jsonOut {
		_ = json.NewEncoder(os.Stdout).Encode(res)
		return
	}
	res.print(os.Stdout)
}

// Result is what one run measured. Latencies are in microseconds.
type Result struct {
	Requests   int64            `json:"requests"`
	Errors     int64            `json:"errors"`
	ErrorKinds map[string]int64 `json:"error_kinds,omitempty"`
	Seconds    float64          `json:"seconds"`
	TokensPerS float64          `json:"tokens_per_s"`
	P50us      float64          `json:"p50_us"`
	P99us      float64          `json:"p99_us"`
	P999us     float64          `json:"p999_us"`
	MaxUs      float64          `json:"max_us"`
	// ServerCPUus is the server's CPU time (user+system) per successful
	// request: steadier than tokens/s on a shared machine.
	ServerCPUus float64 `json:"server_cpu_us_per_token,omitempty"`
	RSSStartKB  int64   `json:"rss_start_kib,omitempty"`
	RSSEndKB    int64   `json:"rss_end_kib,omitempty"`
	RSSPeakKB   int64   `json:"rss_peak_kib,omitempty"`
	RSSSamples  []int64 `json:"rss_samples_kib,omitempty"`
}

func (r *Result) print(w io.Writer) {
	fmt.Fprintf(w, "requests %d in %.2fs: %.0f tokens/s, errors %d\n", r.Requests, r.Seconds, r.TokensPerS, r.Errors)
	for k, v := range r.ErrorKinds {
		fmt.Fprintf(w, "  error %s: %d\n", k, v)
	}
	fmt.Fprintf(w, "latency p50 %s  p99 %s  p99.9 %s  max %s\n", us(r.P50us), us(r.P99us), us(r.P999us), us(r.MaxUs))
	if r.ServerCPUus > 0 {
		fmt.Fprintf(w, "server CPU %s per token\n", us(r.ServerCPUus))
	}
	if r.RSSEndKB > 0 {
		fmt.Fprintf(w, "server RSS start %.1f MiB, end %.1f MiB, peak %.1f MiB\n",
			float64(r.RSSStartKB)/1024, float64(r.RSSEndKB)/1024, float64(r.RSSPeakKB)/1024)
	}
}

func us(v float64) string {
	if v >= 1000 {
		return strconv.FormatFloat(v/1000, 'f', 2, 64) + "ms"
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + "µs"
}

// checkLoopback refuses any target that is not this machine's loopback.
func checkLoopback(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("-url %q: want http://127.0.0.1:PORT/...", raw)
	}
	host := u.Hostname()
	if host == "localhost" {
		return u, nil // the dialer below still checks the address it connects to
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("-url %q: refusing a host that is not a loopback address", raw)
	}
	return u, nil
}

// loopbackDialer dials only loopback addresses, whatever a name resolves to.
func loopbackDialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if host == "localhost" {
			host = "127.0.0.1"
		}
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("refusing to dial %s: not loopback", addr)
		}
		return d.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
	}
}

// kind builds one request of a request kind; i numbers the request.
type kind struct {
	name  string
	build func(i int64) (*http.Request, error)
}

type credential struct{ user, password string }

func basic(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

func readPassword(o options) (string, error) {
	if o.passwordFile == "" {
		return o.password, nil
	}
	b, err := os.ReadFile(o.passwordFile)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimRight(line, "\r"), nil
}

func readUsers(path string) ([]credential, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []credential
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 {
			out = append(out, credential{f[0], f[1]})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no `user password` lines", path)
	}
	return out, nil
}

// buildKinds turns -mix into a weighted list of request builders.
func buildKinds(ctx context.Context, o options, u *url.URL, client *http.Client) ([]kind, error) {
	pw, err := readPassword(o)
	if err != nil {
		return nil, err
	}
	get := func(scope, auth string) (*http.Request, error) {
		q := url.Values{"service": {o.service}, "scope": {scope}}
		r, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String()+"?"+q.Encode(), nil)
		if err == nil && auth != "" {
			r.Header.Set("Authorization", auth)
		}
		return r, err
	}
	var kinds []kind
	for _, part := range strings.Split(o.mix, ",") {
		name, w, _ := strings.Cut(strings.TrimSpace(part), "=")
		weight := 1
		if w != "" {
			if weight, err = strconv.Atoi(w); err != nil || weight < 0 || weight > 100 {
				return nil, fmt.Errorf("-mix %q: weight of %s must be 0..100", o.mix, name)
			}
		}
		var k kind
		switch name {
		case "password":
			if pw == "" {
				return nil, errors.New("-mix password needs -password-file or -password")
			}
			auth := basic(o.user, pw)
			k = kind{name, func(int64) (*http.Request, error) { return get("repository:team/app:pull,push", auth) }}
		case "anonymous":
			k = kind{name, func(int64) (*http.Request, error) { return get("repository:library/hello:pull", "") }}
		case "refresh":
			if pw == "" {
				return nil, errors.New("-mix refresh needs -password-file or -password (to obtain the refresh token)")
			}
			rt, err := obtainRefreshToken(ctx, client, u, o.service, o.user, pw)
			if err != nil {
				return nil, err
			}
			body := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "service": {o.service},
				"client_id": {"tollgate-load"}, "scope": {"repository:team/app:pull"}}.Encode()
			k = kind{name, func(int64) (*http.Request, error) {
				r, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(body))
				if err == nil {
					r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				}
				return r, err
			}}
		case "anonymous-distinct", "password-distinct":
			// Each request names the next of -repos repositories, so with
			// enough of them neither token reuse nor the decision cache answers.
			// Anonymous pulls from the public project library; the password
			// user pushes to its own namespace.
			auth, project, actions := "", "library", "pull"
			if name == "password-distinct" {
				if pw == "" {
					return nil, errors.New("-mix password-distinct needs -password-file or -password")
				}
				auth, project, actions = basic(o.user, pw), o.user, "pull,push"
			}
			repos := int64(max(o.repos, 1))
			var next atomic.Int64
			k = kind{name, func(int64) (*http.Request, error) {
				return get(fmt.Sprintf("repository:%s/repo%d:%s", project, (next.Add(1)-1)%repos, actions), auth)
			}}
		case "distinct":
			if o.usersFile == "" {
				return nil, errors.New("-mix distinct needs -users-file")
			}
			users, err := readUsers(o.usersFile)
			if err != nil {
				return nil, err
			}
			auths := make([]string, len(users))
			for i, c := range users {
				auths[i] = basic(c.user, c.password)
			}
			repos := int64(max(o.repos, 1))
			nu := int64(len(users))
			// Request i asks for pair i: every user in turn, each time a new repository,
			// so n requests touch min(n, users*repos) distinct (user, repository) pairs.
			var pairs atomic.Int64 // its own counter, so other kinds in the mix do not skip pairs
			k = kind{name, func(int64) (*http.Request, error) {
				i := pairs.Add(1) - 1
				ui, ri := i%nu, (i/nu)%repos
				return get(fmt.Sprintf("repository:%s/repo%d:pull,push", users[ui].user, ri), auths[ui])
			}}
		default:
			return nil, fmt.Errorf("-mix: unknown kind %q (password, anonymous, refresh, distinct, anonymous-distinct, password-distinct)", name)
		}
		for range weight {
			kinds = append(kinds, k)
		}
	}
	if len(kinds) == 0 {
		return nil, errors.New("-mix: no request kind with a weight above 0")
	}
	return kinds, nil
}

func obtainRefreshToken(ctx context.Context, client *http.Client, u *url.URL, service, user, pw string) (string, error) {
	body := url.Values{"grant_type": {"password"}, "username": {user}, "password": {pw}, "service": {service},
		"client_id": {"tollgate-load"}, "access_type": {"offline"}}.Encode()
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(body))
	if err != nil {
		return "", err
	}
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(r)
	if err != nil {
		return "", fmt.Errorf("obtain refresh token: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.RefreshToken == "" {
		return "", fmt.Errorf("obtain refresh token: status %d, no refresh_token (is the server tollgate with refresh tokens enabled?)", resp.StatusCode)
	}
	return out.RefreshToken, nil
}

// rssKiB reads VmRSS of pid from /proc; 0 when unknown.
func rssKiB(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// cpuTicks reads the user+system CPU time of pid from /proc, in clock ticks
// of 1/100 s (USER_HZ on Linux); -1 when unknown.
func cpuTicks(pid int) int64 {
	if pid <= 0 {
		return -1
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// The command name (field 2) may hold spaces: count fields after its ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return -1
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return utime + stime
}

func run(ctx context.Context, o options) (*Result, error) {
	u, err := checkLoopback(o.url)
	if err != nil {
		return nil, err
	}
	if o.n <= 0 || o.n > maxRequests {
		return nil, fmt.Errorf("-n must be 1..%d", maxRequests)
	}
	if o.duration <= 0 || o.duration > maxDuration {
		return nil, fmt.Errorf("-duration must be above 0 and at most %s", maxDuration)
	}
	if o.concurrency <= 0 || o.concurrency > maxConcurrency {
		return nil, fmt.Errorf("-c must be 1..%d", maxConcurrency)
	}
	if o.rate < 0 || math.IsInf(o.rate, 0) || math.IsNaN(o.rate) {
		return nil, errors.New("-rate must be a positive number or 0")
	}
	client := &http.Client{
		Timeout: requestTimeout,
		Transport: &http.Transport{
			DialContext:         loopbackDialer(),
			MaxIdleConns:        o.concurrency,
			MaxIdleConnsPerHost: o.concurrency,
			MaxConnsPerHost:     o.concurrency,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()

	kinds, err := buildKinds(ctx, o, u, client)
	if err != nil {
		return nil, err
	}
	// Warm up: at least one request of every kind (fills the caches the way a
	// steady stream of clients would), not measured.
	warm := max(o.warmup, len(kinds))
	for i := range min(warm, 1_000_000) {
		k := kinds[i%len(kinds)]
		if _, err := do(client, k, int64(i)); err != nil && i < len(kinds) {
			return nil, fmt.Errorf("warm-up %s request: %w", k.name, err)
		}
	}
	return measure(ctx, o, client, kinds)
}

// do sends one request and reads the whole answer. Any status but 200 and any
// answer without a token is an error.
func do(client *http.Client, k kind, i int64) (string, error) {
	r, err := k.build(i)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(r)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Timeout") {
			return "timeout", err
		}
		return "transport", err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return "transport", err
	}
	if resp.StatusCode != http.StatusOK {
		return "status " + strconv.Itoa(resp.StatusCode), fmt.Errorf("%s: status %d: %.200s", k.name, resp.StatusCode, body)
	}
	if !strings.Contains(string(body), `"token"`) && !strings.Contains(string(body), `"access_token"`) {
		return "no token", fmt.Errorf("%s: answer without a token", k.name)
	}
	return "", nil
}

func measure(ctx context.Context, o options, client *http.Client, kinds []kind) (*Result, error) {
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	res := &Result{ErrorKinds: map[string]int64{}, RSSStartKB: rssKiB(o.pid)}
	cpuStart := cpuTicks(o.pid)
	res.RSSPeakKB = res.RSSStartKB

	var (
		next     atomic.Int64 // next request number
		errCount atomic.Int64
		mu       sync.Mutex
		wg       sync.WaitGroup
	)
	lat := make([][]float64, o.concurrency)

	// With -rate, a pacer hands out scheduled start times; latency counts from
	// the schedule, so a slow server cannot hide its queue (no coordinated omission).
	var sched chan time.Time
	if o.rate > 0 {
		sched = make(chan time.Time, o.concurrency)
		interval := time.Duration(float64(time.Second) / o.rate)
		go func() {
			defer close(sched)
			start := time.Now()
			for i := int64(0); i < o.n; i++ {
				at := start.Add(time.Duration(i) * interval)
				if d := time.Until(at); d > 0 {
					select {
					case <-time.After(d):
					case <-ctx.Done():
						return
					}
				}
				select {
				case sched <- at:
				case <-ctx.Done():
					return
				}
			}
		}()
	}

	stopRSS := make(chan struct{})
	rssDone := make(chan struct{})
	go func() {
		defer close(rssDone)
		every := o.rssEvery
		if every <= 0 {
			every = 250 * time.Millisecond
		}
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stopRSS:
				return
			case <-t.C:
			}
			v := rssKiB(o.pid)
			mu.Lock()
			res.RSSPeakKB = max(res.RSSPeakKB, v)
			if o.rssEvery > 0 && v > 0 {
				res.RSSSamples = append(res.RSSSamples, v)
				if !o.jsonOut {
					fmt.Fprintf(os.Stderr, "rss %.1f MiB after %d requests\n", float64(v)/1024, next.Load())
				}
			}
			mu.Unlock()
		}
	}()

	started := time.Now()
	for w := range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]float64, 0, 4096)
			for ctx.Err() == nil {
				var at time.Time
				if sched != nil {
					var ok bool
					if at, ok = <-sched; !ok {
						break
					}
				}
				i := next.Add(1) - 1
				if i >= o.n {
					break
				}
				if at.IsZero() {
					at = time.Now()
				}
				errKind, err := do(client, kinds[i%int64(len(kinds))], i)
				if ctx.Err() != nil && err != nil {
					next.Add(-1) // cut off by the end of the run: not counted
					break
				}
				mine = append(mine, float64(time.Since(at).Nanoseconds())/1000)
				if err != nil {
					errCount.Add(1)
					mu.Lock()
					if res.ErrorKinds[errKind] == 0 && !o.jsonOut {
						fmt.Fprintln(os.Stderr, "first error:", err)
					}
					res.ErrorKinds[errKind]++
					mu.Unlock()
				}
			}
			lat[w] = mine
		}()
	}
	wg.Wait()
	elapsed := time.Since(started)
	close(stopRSS)
	<-rssDone

	var all []float64
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	res.Requests = int64(len(all))
	res.Errors = errCount.Load()
	res.Seconds = elapsed.Seconds()
	if res.Seconds > 0 {
		res.TokensPerS = float64(res.Requests-res.Errors) / res.Seconds
	}
	res.P50us, res.P99us, res.P999us = percentile(all, 0.50), percentile(all, 0.99), percentile(all, 0.999)
	if len(all) > 0 {
		res.MaxUs = all[len(all)-1]
	}
	if cpuEnd := cpuTicks(o.pid); cpuStart >= 0 && cpuEnd >= 0 && res.Requests > res.Errors {
		res.ServerCPUus = float64(cpuEnd-cpuStart) * 1e4 / float64(res.Requests-res.Errors)
	}
	res.RSSEndKB = rssKiB(o.pid)
	res.RSSPeakKB = max(res.RSSPeakKB, res.RSSEndKB)
	if len(res.ErrorKinds) == 0 {
		res.ErrorKinds = nil
	}
	return res, nil
}

// percentile of sorted values (nearest rank).
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
