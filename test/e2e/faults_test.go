package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/test/ldaptest"
	"github.com/tollgate/tollgate/test/oidctest"
)

// faultCaller is one kind of caller of the fault test and what it may get.
type faultCaller struct {
	name, user string
	// allowed is the only access list this caller may ever be granted.
	allowed string
	// mayBeUnavailable: a 503 is expected while its backend is down.
	mayBeUnavailable bool
}

// TestFaultsUnderLoad injects faults while clients ask for tokens without
// pause: slapd killed and restarted, the bundle server failing, a key
// rotation, a SIGHUP, the OIDC provider stopped, and finally SIGTERM. No
// request gets a grant it should not, the only failures are the expected
// 503s of LDAP users while slapd is down, and the broker's memory stays
// flat. OIDC callers keep working while their provider is down, through a
// reload too: the keys are cached and unchanged connectors are kept.
func TestFaultsUnderLoad(t *testing.T) {
	dir := ldaptest.Start(t, "", ldapDirectory)
	idp := oidctest.Start(t, oidctest.Options{Alg: "RS256", Clients: []oidctest.Client{devCI}})
	bs := startBundleServer(t)

	// The shipped default policy with the test users and the LDAP group.
	src := filepath.Join(t.TempDir(), "policy")
	data := strings.Replace(testPolicyData, `"team":    {"public": false, "members": {"alice": "developer", "bob": "guest"}, "groups": {}}`,
		`"team":    {"public": false, "members": {"alice": "developer", "bob": "guest"}, "groups": {"registry-dev": "developer", "oidc:registry-dev": "developer"}}`, 1)
	if data == testPolicyData {
		t.Fatal("test data changed shape: the LDAP group was not added")
	}
	writePolicy(t, src, data)
	bundle := filepath.Join(t.TempDir(), "bundle.tar.gz")
	tollgate(t, "", "bundle", "build", "-o", bundle, "--revision", "v1", src)
	raw, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	bs.publish(raw, "v1")

	b := startBrokerWith(t, brokerOptions{
		identity:     ldapIdentity(dir.URL(), "1s") + oidcIdentity(idp.Issuer, ""),
		env:          []string{"TOLLGATE_E2E_LDAP_BIND=" + ldaptest.ReaderPass},
		policySource: bs.url,
		policy:       "  polling: {min_delay: 100ms, max_delay: 300ms}\n",
		extra:        "credential_cache: {size: 100, ttl: 200ms}\nthrottle: {enabled: false}\n",
		decisionTTL:  "200ms",
	})
	b.passwords["erin"] = "erin-ldap-pw"
	bearer := idp.Token(devCI, oidcAudience)
	svc := flavors[0].service
	callers := []faultCaller{
		{"htpasswd developer", "alice", "repository:team/app:pull,push", false},
		{"htpasswd guest", "bob", "repository:team/app:pull", false},
		{"LDAP developer", "erin", "repository:team/app:pull,push", true},
		{"anonymous", "", "", false},
		{"OIDC developer", "", "repository:team/app:pull,push", false},
	}

	ctx, stop := context.WithTimeout(context.Background(), 90*time.Second)
	defer stop()
	var (
		mu          sync.Mutex
		bad         []string
		counts      = map[string]int{}
		terminating atomic.Bool
		ldapDown    atomic.Bool
	)
	report := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(bad) < 20 {
			bad = append(bad, fmt.Sprintf(format, args...))
		}
	}
	q := url.Values{"service": {svc}, "scope": {"repository:team/app:pull,push"}}
	var wg sync.WaitGroup
	for _, c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ctx.Err() == nil && n < 200_000; n++ { // bounded in count and time
				req, _ := http.NewRequest(http.MethodGet, b.url("/token?"+q.Encode()), nil)
				if c.user != "" {
					req.SetBasicAuth(c.user, b.passwords[c.user])
				}
				if c.name == "OIDC developer" {
					req.Header.Set("Authorization", "Bearer "+bearer)
				}
				downBefore := ldapDown.Load()
				resp, err := httpClient.Do(req)
				if err != nil {
					if !terminating.Load() {
						report("%s: %v", c.name, err)
					}
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				mu.Lock()
				counts[c.name+" "+strconv.Itoa(resp.StatusCode)]++
				mu.Unlock()
				switch {
				case resp.StatusCode == http.StatusServiceUnavailable && c.mayBeUnavailable && (downBefore || ldapDown.Load()):
					continue
				case resp.StatusCode != http.StatusOK:
					report("%s: %d %s", c.name, resp.StatusCode, body)
					continue
				}
				var tr tokenResponse
				if err := json.Unmarshal(body, &tr); err != nil {
					report("%s: %v", c.name, err)
					continue
				}
				claims, err := parseToken(tr.Token)
				if err != nil {
					report("%s: %v", c.name, err)
					continue
				}
				if got := strings.Join(normalize(claims.Access), " "); got != c.allowed {
					report("%s was granted %q, may only get %q", c.name, got, c.allowed)
				}
			}
		}()
	}

	pid := b.proc.cmd.Process.Pid
	rssStart := rssKiB(t, pid)
	step := func(what string, fn func()) {
		t.Logf("fault: %s", what)
		fn()
		time.Sleep(700 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	step("slapd killed", func() { ldapDown.Store(true); dir.Stop() })
	step("slapd restarted", func() { dir.Restart(); time.Sleep(300 * time.Millisecond); ldapDown.Store(false) })
	step("bundle server failing", func() { bs.fail(http.StatusBadGateway) })
	step("bundle server back", func() { bs.publish(raw, "v1") })
	step("key rotation and SIGHUP", func() {
		tollgate(t, "", "keygen", "--out", b.keys, "--name", "b", "--not-before", time.Now().Add(-time.Second).UTC().Format(time.RFC3339))
		if err := b.proc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	})
	step("SIGHUP again", func() { b.proc.cmd.Process.Signal(syscall.SIGHUP) })
	step("OIDC provider stopped", func() { idp.Stop() })
	// A reload keeps unchanged connectors, with the keys they fetched.
	step("SIGHUP with the OIDC provider down", func() { b.proc.cmd.Process.Signal(syscall.SIGHUP) })
	rssEnd := rssKiB(t, pid)

	terminating.Store(true)
	if err := b.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.proc.done:
	case <-time.After(15 * time.Second):
		t.Error("the broker did not exit after SIGTERM")
	}
	stop()
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	t.Logf("answers by caller and status: %v", counts)
	t.Logf("broker RSS: %d KiB at the start of the faults, %d KiB after", rssStart, rssEnd)
	for _, msg := range bad {
		t.Error(msg)
	}
	for _, c := range callers {
		if counts[c.name+" 200"] == 0 {
			t.Errorf("%s never got a token", c.name)
		}
	}
	if rssEnd > rssStart+64*1024 {
		t.Errorf("RSS grew from %d KiB to %d KiB during the faults", rssStart, rssEnd)
	}
	if code := b.proc.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
}

// rssKiB reads a process's resident set size from /proc.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
