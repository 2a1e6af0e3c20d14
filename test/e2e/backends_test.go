package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/test/ldaptest"
	"github.com/tollgate/tollgate/test/oidctest"
	"github.com/tollgate/tollgate/test/redistest"
)

// scrape is the broker's /metrics.
func scrape(t *testing.T, b *broker) string {
	t.Helper()
	resp, err := httpClient.Get(b.url("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s\n%s", resp.Status, body)
	}
	return string(body)
}

// backendState is one backend's series on /metrics: up, and the number of
// calls by outcome. A missing series fails the test.
type backendState struct {
	up                   float64
	ok, errors, timeouts int
}

func backendOf(t *testing.T, metrics, backend, name string) backendState {
	t.Helper()
	labels := fmt.Sprintf(`backend=%q,name=%q`, backend, name)
	value := func(series string) float64 {
		t.Helper()
		for _, line := range strings.Split(metrics, "\n") {
			if v, ok := strings.CutPrefix(line, series+" "); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("%s: %v", line, err)
				}
				return f
			}
		}
		t.Fatalf("/metrics has no %s:\n%s", series, grepLines(metrics, "tollgate_backend_"))
		return 0
	}
	count := func(outcome string) int {
		return int(value(fmt.Sprintf(`tollgate_backend_request_duration_seconds_count{%s,outcome=%q}`, labels, outcome)))
	}
	return backendState{up: value("tollgate_backend_up{" + labels + "}"), ok: count("ok"), errors: count("error"), timeouts: count("timeout")}
}

func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// waitBackend scrapes until cond holds for the backend, or fails.
func waitBackend(t *testing.T, b *broker, backend, name, what string, cond func(backendState) bool) backendState {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := backendOf(t, scrape(t, b), backend, name)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: never %s: %+v", backend, name, what, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLDAPBackendMetrics: the directory's series exist before the first
// login (up 1, every outcome at 0); a login counts its calls; a client
// that hangs up while the directory is slow counts no failure; the
// directory down makes up 0, counts errors and answers 503.
func TestLDAPBackendMetrics(t *testing.T) {
	dir := ldaptest.Start(t, "", ldapDirectory)
	b := startBrokerWith(t, brokerOptions{
		identity:   ldapIdentity(dir.URL(), "2s"),
		policyData: ldapPolicyData,
		env:        []string{"TOLLGATE_E2E_LDAP_BIND=" + ldaptest.ReaderPass},
	})
	b.passwords["erin"], b.passwords["frank"], b.passwords["gina"] = "erin-ldap-pw", "frank-ldap-pw", "gina-ldap-pw"
	if st := backendOf(t, scrape(t, b), "ldap", "corp"); st != (backendState{up: 1}) {
		t.Fatalf("before any login: %+v, want up 1 and no calls", st)
	}

	if status := tokenStatus(t, b, "erin"); status != http.StatusOK {
		t.Fatalf("erin: %d", status)
	}
	st := backendOf(t, scrape(t, b), "ldap", "corp")
	if st.up != 1 || st.ok < 2 || st.errors+st.timeouts != 0 { // a search and a bind at least
		t.Fatalf("after a login: %+v", st)
	}

	// frank's client gives up while slapd hangs; slapd answers later.
	dir.Pause()
	req, _ := http.NewRequest(http.MethodGet, b.url("/token?scope=repository:team/app:pull"), nil)
	req.SetBasicAuth("frank", b.passwords["frank"])
	if _, err := (&http.Client{Timeout: 300 * time.Millisecond}).Do(req); err == nil {
		t.Fatal("the token request was answered while slapd was paused")
	}
	time.Sleep(200 * time.Millisecond)
	dir.Resume()
	after := waitBackend(t, b, "ldap", "corp", "done with frank's login", func(s backendState) bool { return s.ok >= st.ok+2 })
	if after.up != 1 || after.errors+after.timeouts != 0 {
		t.Fatalf("after a client hung up: %+v, want up 1 and no failure", after)
	}

	dir.Stop()
	if status := tokenStatus(t, b, "gina"); status != http.StatusServiceUnavailable {
		t.Fatalf("slapd down: token status %d, want 503", status)
	}
	if down := backendOf(t, scrape(t, b), "ldap", "corp"); down.up != 0 || down.errors == 0 {
		t.Fatalf("slapd down: %+v, want up 0 and errors counted", down)
	}
	dir.Restart()
	if status := tokenStatus(t, b, "gina"); status != http.StatusOK {
		t.Fatalf("slapd back: token status %d, want 200", status)
	}
	if back := backendOf(t, scrape(t, b), "ldap", "corp"); back.up != 1 {
		t.Fatalf("slapd back: %+v, want up 1", back)
	}
}

// TestOIDCBackendMetrics: each issuer's key fetches are counted from the
// start; the provider down when a token needs new keys makes up 0, counts
// the failure and answers 503.
func TestOIDCBackendMetrics(t *testing.T) {
	corp := oidctest.Start(t, oidctest.Options{Alg: "RS256", Clients: corpClients})
	b := startBrokerWith(t, brokerOptions{identity: oidcIdentity(corp.Issuer, ""), policyData: oidcPolicyData})
	st := waitBackend(t, b, "oidc", corp.Issuer, "fetched the keys at start", func(s backendState) bool { return s.ok >= 1 })
	if st.up != 1 || st.errors+st.timeouts != 0 {
		t.Fatalf("after the first fetch: %+v", st)
	}
	if a := oidcToken(t, b, "Bearer "+corp.Token(devCI, oidcAudience), "repository:team/app:pull"); a.status != http.StatusOK {
		t.Fatalf("token: %d %s", a.status, a.raw)
	}

	corp.Rotate()
	tok := corp.Token(devCI, oidcAudience) // signed with a key the broker has not fetched
	corp.Stop()
	time.Sleep(oidcRefetch)
	if a := oidcToken(t, b, "Bearer "+tok, "repository:team/app:pull"); a.status != http.StatusServiceUnavailable {
		t.Fatalf("provider down: %d %s, want 503", a.status, a.raw)
	}
	if down := backendOf(t, scrape(t, b), "oidc", corp.Issuer); down.up != 0 || down.errors+down.timeouts == 0 {
		t.Fatalf("provider down: %+v, want up 0 and the failure counted", down)
	}
}

// TestRedisBackendMetrics: Redis's series exist from the start; Redis
// down makes up 0 and counts errors while tokens are still issued
// (decision 0010); Redis back makes up 1.
func TestRedisBackendMetrics(t *testing.T) {
	redis := redistest.Start(t)
	b := startBrokerWith(t, brokerOptions{extra: fmt.Sprintf("redis: {addr: %q, prefix: \"e2e:\"}\n", redis.Addr())})
	st := backendOf(t, scrape(t, b), "redis", redis.Addr())
	if st.up != 1 || st.errors+st.timeouts != 0 {
		t.Fatalf("at start: %+v", st)
	}
	if got := basicStatus(t, b, "alice", b.passwords["alice"]); got != http.StatusOK {
		t.Fatalf("alice: %d", got)
	}
	waitBackend(t, b, "redis", redis.Addr(), "synced", func(s backendState) bool { return s.ok > st.ok })

	redis.Stop()
	down := waitBackend(t, b, "redis", redis.Addr(), "down", func(s backendState) bool { return s.up == 0 })
	if down.errors+down.timeouts == 0 {
		t.Fatalf("redis down: %+v, want the failures counted", down)
	}
	if got := basicStatus(t, b, "alice", b.passwords["alice"]); got != http.StatusOK {
		t.Fatalf("alice with Redis down: %d, want 200", got)
	}
	redis.Restart()
	waitBackend(t, b, "redis", redis.Addr(), "up again", func(s backendState) bool { return s.up == 1 })
}

// TestBundleBackendMetrics: the bundle server's series exist from the
// start, named by the URL; a server that fails makes up 0 and counts
// errors; one that answers again makes up 1.
func TestBundleBackendMetrics(t *testing.T) {
	bs := startBundleServer(t)
	bs.publish(revisionBundle(t, 1), "r1")
	b := startBrokerWith(t, brokerOptions{policySource: bs.url, policy: "  polling: {min_delay: 100ms, max_delay: 300ms}\n"})
	st := backendOf(t, scrape(t, b), "bundle", bs.url)
	if st.up != 1 || st.ok < 1 || st.errors+st.timeouts != 0 {
		t.Fatalf("after the first download: %+v", st)
	}
	bs.fail(http.StatusBadGateway)
	down := waitBackend(t, b, "bundle", bs.url, "down", func(s backendState) bool { return s.up == 0 })
	if down.errors == 0 {
		t.Fatalf("bundle server failing: %+v, want errors counted", down)
	}
	bs.publish(revisionBundle(t, 2), "r2")
	waitBackend(t, b, "bundle", bs.url, "up again", func(s backendState) bool { return s.up == 1 })
}

// checkEvery makes the broker check its directories and issuers on its own
// every second while they are down, and after 4 s without a call while up.
const checkEvery = "metrics: {backend_check_interval: 1s}\n"

// TestLDAPBackendUpAgainWithoutLogin: a directory that failed a login is
// checked on its own, so its up returns to 1 once it is back, with no
// login at all; and a directory that goes down with nobody logging in is
// seen down by the idle check.
func TestLDAPBackendUpAgainWithoutLogin(t *testing.T) {
	dir := ldaptest.Start(t, "", ldapDirectory)
	b := startBrokerWith(t, brokerOptions{
		identity:   ldapIdentity(dir.URL(), "2s"),
		policyData: ldapPolicyData,
		env:        []string{"TOLLGATE_E2E_LDAP_BIND=" + ldaptest.ReaderPass},
		extra:      checkEvery,
	})
	b.passwords["gina"] = "gina-ldap-pw"

	dir.Stop()
	if status := tokenStatus(t, b, "gina"); status != http.StatusServiceUnavailable {
		t.Fatalf("slapd down: token status %d, want 503", status)
	}
	down := backendOf(t, scrape(t, b), "ldap", "corp")
	if down.up != 0 {
		t.Fatalf("slapd down after a login: %+v, want up 0", down)
	}
	dir.Restart()
	back := waitBackend(t, b, "ldap", "corp", "up again without a login", func(s backendState) bool { return s.up == 1 })
	if back.ok <= down.ok {
		t.Fatalf("up again with no call counted: %+v after %+v", back, down)
	}

	dir.Stop()
	idle := waitBackend(t, b, "ldap", "corp", "seen down without a login", func(s backendState) bool { return s.up == 0 })
	if idle.errors+idle.timeouts <= back.errors+back.timeouts {
		t.Fatalf("down with no failure counted: %+v after %+v", idle, back)
	}
}

// TestOIDCBackendUpAgainWithoutToken: an issuer that failed a key fetch
// for a token is checked on its own (discovery and JWKS), so its up
// returns to 1 once it answers again, with no token at all.
func TestOIDCBackendUpAgainWithoutToken(t *testing.T) {
	corp := oidctest.Start(t, oidctest.Options{Alg: "RS256", Clients: corpClients})
	b := startBrokerWith(t, brokerOptions{identity: oidcIdentity(corp.Issuer, ""), policyData: oidcPolicyData, extra: checkEvery})
	waitBackend(t, b, "oidc", corp.Issuer, "fetched the keys at start", func(s backendState) bool { return s.ok >= 1 })

	corp.Rotate()
	tok := corp.Token(devCI, oidcAudience) // signed with a key the broker has not fetched
	corp.Stop()
	time.Sleep(oidcRefetch)
	if a := oidcToken(t, b, "Bearer "+tok, "repository:team/app:pull"); a.status != http.StatusServiceUnavailable {
		t.Fatalf("provider down: %d %s, want 503", a.status, a.raw)
	}
	down := backendOf(t, scrape(t, b), "oidc", corp.Issuer)
	if down.up != 0 {
		t.Fatalf("provider down after a token: %+v, want up 0", down)
	}
	corp.Start()
	back := waitBackend(t, b, "oidc", corp.Issuer, "up again without a token", func(s backendState) bool { return s.up == 1 })
	if back.ok <= down.ok {
		t.Fatalf("up again with no fetch counted: %+v after %+v", back, down)
	}
}
