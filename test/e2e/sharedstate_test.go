package e2e

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/test/redistest"
)

// resetLogin sends a login for user with a wrong password and resets the
// connection (RST, not FIN) while the broker is still checking it, as a
// client that aborts mid-request does.
func resetLogin(t testing.TB, b *broker, user string) {
	t.Helper()
	c, err := net.Dial("tcp", fmt.Sprintf("localhost:%d", b.port))
	if err != nil {
		t.Fatal(err)
	}
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":not-the-password"))
	fmt.Fprintf(c, "GET /token?service=%s HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic %s\r\n\r\n", flavors[0].service, auth)
	time.Sleep(15 * time.Millisecond) // the broker is in bcrypt now
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
}

// basicStatus is the status of a GET /token with Basic credentials.
func basicStatus(t testing.TB, b *broker, user, password string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.url("/token?service="+flavors[0].service), nil)
	req.SetBasicAuth(user, password)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRedisThrottleAndRevocationHoldThroughResetsAndOutages: a client that
// resets its connections mid-login must not switch off the shared lockout
// or revocation checks (a cancelled request is not a Redis outage), and a
// real outage or a restart that loses Redis's data must not switch them
// off either: failures are counted locally, revocations are checked against
// the copy synced from Redis.
func TestRedisThrottleAndRevocationHoldThroughResetsAndOutages(t *testing.T) {
	redis := redistest.Start(t)
	b := startBrokerWith(t, brokerOptions{extra: fmt.Sprintf(
		"redis: {addr: %q, prefix: \"e2e:\"}\nthrottle: {max_failures_per_user: 10, max_failures_per_address: 1000}\n", redis.Addr())})
	// The slow users' checks take a bcrypt of cost 10, long enough to
	// reset in; each of slow0-3 takes ten resets before its own lockout.
	for i := range 5 {
		tollgate(t, "slow-password\n", "htpasswd", "add", "--cost", "10", b.htpasswd, fmt.Sprint("slow", i))
	}
	// Waiting by logging in would count failures until the file is
	// reloaded: wait for the broker to say it has all nine users.
	waitUntil(t, b.proc, "the slow users are loaded", func() error {
		if log, _ := os.ReadFile(b.proc.log); !strings.Contains(string(log), `"users":9`) {
			return errors.New("htpasswd not reloaded with the slow users yet")
		}
		return nil
	})
	if got := basicStatus(t, b, "slow4", "slow-password"); got != http.StatusOK {
		t.Fatalf("slow4 with the right password: %d", got)
	}

	// 40 reset logins, interleaved with alice's wrong passwords: every
	// wrong password counts, and the 11th is refused.
	for i := 1; i <= 11; i++ {
		if i <= 10 {
			for u := range 4 {
				resetLogin(t, b, fmt.Sprint("slow", u))
			}
			time.Sleep(250 * time.Millisecond) // the broker finishes the aborted checks
		}
		got := basicStatus(t, b, "alice", fmt.Sprintf("guess-%d", i))
		want := http.StatusUnauthorized
		if i == 11 {
			want = http.StatusTooManyRequests
		}
		if got != want {
			t.Fatalf("wrong password %d for alice after connection resets: %d, want %d", i, got, want)
		}
	}

	// A revoked refresh token stays refused through resets.
	svc := flavors[0].service
	_, tok, raw := b.postToken(t, url.Values{"grant_type": {"password"}, "username": {"bob"}, "password": {b.passwords["bob"]},
		"service": {svc}, "access_type": {"offline"}})
	if tok.RefreshToken == "" {
		t.Fatalf("no refresh token: %s", raw)
	}
	grant := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "service": {svc}}
	tollgate(t, "", "token", "revoke", "--config", b.config, "--subject", "bob")
	refused := func(when string) {
		t.Helper()
		if code, _, raw := b.postToken(t, grant); code != http.StatusUnauthorized || !strings.Contains(raw, "revoked") {
			t.Fatalf("revoked refresh token %s: %d %s", when, code, raw)
		}
	}
	refused("right after the revocation")
	for range 3 {
		resetLogin(t, b, "slow4")
	}
	time.Sleep(250 * time.Millisecond)
	refused("after connection resets")

	// Redis down: the synced copy still refuses it, and failed logins are
	// counted by the replica itself.
	time.Sleep(2 * time.Second) // at most one sync period behind
	redis.Stop()
	refused("with Redis down")
	for i := 1; i <= 11; i++ {
		got := basicStatus(t, b, "carol", fmt.Sprintf("guess-%d", i))
		if want := map[bool]int{true: http.StatusTooManyRequests, false: http.StatusUnauthorized}[i == 11]; got != want {
			t.Fatalf("wrong password %d for carol with Redis down: %d, want %d", i, got, want)
		}
	}
	ready := do(t, http.MethodGet, b.url("/readyz"), "", nil)
	if !strings.Contains(string(ready.body), "shared state: stale") {
		t.Fatalf("/readyz with Redis down does not say the shared state is stale:\n%s", ready.body)
	}

	// Redis back, empty (no persistence): the revocation still holds.
	redis.Restart()
	refused("after Redis restarted without its data")
	waitUntil(t, b.proc, "/readyz says the shared state is in sync", func() error {
		r := do(t, http.MethodGet, b.url("/readyz"), "", nil)
		if !strings.Contains(string(r.body), "shared state: redis in sync") {
			return fmt.Errorf("/readyz:\n%s", r.body)
		}
		return nil
	})
	refused("once Redis is in sync again")
}
