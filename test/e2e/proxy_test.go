package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startNginx runs a real nginx on a free loopback port as a reverse proxy
// in front of b, appending the client's address to X-Forwarded-For as
// ingress controllers do. It returns the proxy's base URL.
func startNginx(t *testing.T, b *broker) string {
	t.Helper()
	bin := tool(t, "nginx")
	dir := t.TempDir()
	port := freePort(t)
	for _, d := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events {}
http {
  access_log off;
  client_body_temp_path %[1]s/client_body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
    listen 127.0.0.1:%[2]d;
    location / {
      proxy_pass http://127.0.0.1:%[3]d;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }
}
`, dir, port, b.port)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProcess(t, "nginx", dir, nil, bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", confPath)
	base := fmt.Sprintf("http://localhost:%d", port)
	waitFor200(t, p, base+"/healthz")
	return base
}

// clientFrom is an HTTP client whose connections come from the loopback
// address ip (all of 127.0.0.0/8 is this machine's).
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp4", strings.Replace(addr, "localhost", "127.0.0.1", 1))
		},
	}}
}

// TestClientsBehindAProxy: behind a real nginx in trusted_proxies, each
// client is throttled, logged and seen by the policy under its own address,
// so one attacker cannot lock out everyone behind the proxy; a forged
// X-Forwarded-For, through the proxy or sent straight to the broker, does not
// let a client take another's address.
func TestClientsBehindAProxy(t *testing.T) {
	decisions := filepath.Join(t.TempDir(), "decisions.log")
	b := startBrokerWith(t, brokerOptions{
		extra:  "trusted_proxies: [127.0.0.1]\nthrottle: {max_failures_per_user: 100, max_failures_per_address: 5}\n",
		policy: fmt.Sprintf("  decision_log: {enabled: true, path: %q}\n", decisions),
	})
	proxy := startNginx(t, b)
	direct := fmt.Sprintf("http://127.0.0.1:%d", b.port)
	const victim, attacker, spoofer = "127.0.0.5", "127.0.0.66", "127.0.0.77"

	login := func(from, base, user, password, spoofed string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+"/token?service="+flavors[0].service+"&scope=repository:team/app:pull", nil)
		req.SetBasicAuth(user, password)
		if spoofed != "" {
			req.Header.Set("X-Forwarded-For", spoofed)
		}
		resp, err := clientFrom(from).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	// The attacker, through the proxy, claiming to be the victim.
	for i := range 5 {
		if got := login(attacker, proxy, fmt.Sprint("user", i), "guess", victim); got != http.StatusUnauthorized {
			t.Fatalf("attacker's guess %d: %d", i, got)
		}
	}
	if got := login(attacker, proxy, "alice", b.passwords["alice"], victim); got != http.StatusTooManyRequests {
		t.Fatalf("the attacker after 5 failures: %d, want 429", got)
	}
	// Another client, straight to the broker, naming the victim's address.
	for i := range 5 {
		login(spoofer, direct, fmt.Sprint("user", i), "guess", victim)
	}
	if got := login(spoofer, direct, "alice", b.passwords["alice"], victim); got != http.StatusTooManyRequests {
		t.Fatalf("the spoofer after 5 failures: %d, want 429", got)
	}
	// The victim, behind the same proxy, is untouched.
	if got := login(victim, proxy, "alice", b.passwords["alice"], ""); got != http.StatusOK {
		t.Fatalf("a client behind the proxy while another is locked: %d, want 200", got)
	}

	log := b.proc.logWith(t, `"client_ip":"`+victim+`","status":200`) // the victim's address for its request
	for _, ip := range []string{attacker, spoofer} {
		if !strings.Contains(string(log), `"client_ip":"`+ip+`"`) {
			t.Errorf("the broker's log does not name %s", ip)
		}
	}
	dl, _ := os.ReadFile(decisions)
	if !strings.Contains(string(dl), `"client":{"ip":"`+victim+`"`) {
		t.Fatalf("the policy input of the victim's request does not hold its address:\n%s", dl)
	}
}
