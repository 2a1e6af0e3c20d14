package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/test/redistest"
)

// startReplica starts a second broker from a's files (keys, users, policy)
// with its own port, as a replica behind a load balancer would run.
func startReplica(t *testing.T, a *broker) *broker {
	t.Helper()
	cfg, err := os.ReadFile(a.config)
	if err != nil {
		t.Fatal(err)
	}
	b := *a
	b.port = freePort(t)
	b.dir = filepath.Join(t.TempDir(), "replica")
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b.config = filepath.Join(b.dir, "config.yaml")
	replica := strings.Replace(string(cfg), fmt.Sprintf(`listen: "127.0.0.1:%d"`, a.port), fmt.Sprintf(`listen: "127.0.0.1:%d"`, b.port), 1)
	if err := os.WriteFile(b.config, []byte(replica), 0o600); err != nil {
		t.Fatal(err)
	}
	b.proc = startProcess(t, "tollgate", b.dir, nil, tollgateBin, "serve", "--config", b.config)
	waitFor200(t, b.proc, b.url("/readyz"))
	return &b
}

// TestReplicasShareLockoutAndRevocation: two replicas behind the test's own
// round-robin share failed-login counters and refresh-token revocations
// through a real redis-server; with Redis down they keep serving.
func TestReplicasShareLockoutAndRevocation(t *testing.T) {
	redis := redistest.Start(t)
	a := startBrokerWith(t, brokerOptions{extra: fmt.Sprintf(
		"redis: {addr: %q, prefix: \"e2e:\"}\nthrottle: {max_failures_per_user: 4, max_failures_per_address: 100}\n", redis.Addr())})
	b := startReplica(t, a)
	replicas := []*broker{a, b}
	next := 0
	roundRobin := func() *broker { r := replicas[next%2]; next++; return r }
	svc := flavors[0].service

	status := func(r *broker, user, password string) int {
		t.Helper()
		return basicStatus(t, r, user, password)
	}

	// Four failures for alice, two on each replica: over the shared limit.
	for i := range 4 {
		if got := status(roundRobin(), "alice", fmt.Sprintf("guess-%d", i)); got != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i, got)
		}
	}
	for _, r := range replicas {
		if got := status(r, "alice", a.passwords["alice"]); got != http.StatusTooManyRequests {
			t.Fatalf("alice on %d after 4 shared failures: %d, want 429 (each replica saw only 2)", r.port, got)
		}
	}
	if got := status(roundRobin(), "bob", a.passwords["bob"]); got != http.StatusOK {
		t.Fatalf("bob is not slowed by alice's attackers: %d", got)
	}

	// A refresh token from one replica, revoked by the CLI, is refused by both.
	_, tok, raw := a.postToken(t, url.Values{"grant_type": {"password"}, "username": {"bob"}, "password": {a.passwords["bob"]},
		"service": {svc}, "access_type": {"offline"}})
	if tok.RefreshToken == "" {
		t.Fatalf("no refresh token: %s", raw)
	}
	grant := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "service": {svc}}
	if code, _, raw := b.postToken(t, grant); code != http.StatusOK {
		t.Fatalf("refresh on the other replica: %d %s", code, raw)
	}
	tollgate(t, "", "token", "revoke", "--config", a.config, "--subject", "bob")
	for _, r := range replicas {
		if code, _, raw := r.postToken(t, grant); code != http.StatusUnauthorized || !strings.Contains(raw, "revoked") {
			t.Fatalf("revoked refresh token on %d: %d %s", r.port, code, raw)
		}
	}

	// Redis down: both replicas keep serving (revocations unchecked, logged).
	redis.Stop()
	for _, r := range replicas {
		if got := status(r, "admin", a.passwords["admin"]); got != http.StatusOK {
			t.Fatalf("replica %d with Redis down: %d", r.port, got)
		}
	}
}
