package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/test/testenv"
)

func TestDevServeMakesItsStateAndUsesTheDefaultPolicy(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	state := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	app := newApp()
	var out testenv.SyncBuffer
	app.Writer, app.ErrWriter = io.Discard, &out
	started := time.Now()
	go func() {
		done <- app.RunContext(ctx, []string{"tollgate", "serve", "--state-dir", state, "--listen", addr})
	}()
	exited := false
	defer func() {
		cancel()
		if exited {
			return
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	// The first start makes a key and bcrypt hashes: slow under -race on a
	// loaded machine. The limit only stops a hung test; a serve that exits
	// fails at once with what it printed.
	var ready time.Duration
	for deadline := time.Now().Add(90 * time.Second); ready == 0 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		select {
		case err := <-done:
			exited = true
			t.Fatalf("serve exited before it was ready: %v\n%s", err, out.String())
		default:
		}
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				ready = time.Since(started)
			}
		}
	}
	if ready == 0 {
		t.Fatalf("dev broker never became ready; it printed:\n%s", out.String())
	}
	t.Logf("dev broker ready after %v (first start: key, bcrypt users, policy copy)", ready)

	pw := map[string]string{}
	data, _ := os.ReadFile(filepath.Join(state, "passwords.txt"))
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		u, p, _ := strings.Cut(line, " ")
		pw[u] = p
	}
	if len(pw["alice"]) < 16 || len(pw["bob"]) < 16 {
		t.Fatalf("generated passwords: %q", data)
	}
	grant := func(user, scope string) string {
		req, _ := http.NewRequest("GET", "http://"+addr+"/token?scope="+scope, nil)
		req.SetBasicAuth(user, pw[user])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct{ Token string }
		json.NewDecoder(resp.Body).Decode(&body)
		parts := strings.Split(body.Token, ".")
		if resp.StatusCode != 200 || len(parts) != 3 {
			t.Fatalf("%s %s: %d", user, scope, resp.StatusCode)
		}
		payload, _ := decodeSegment(parts[1])
		return string(payload)
	}
	if got := grant("alice", "repository:team/app:pull,push"); !strings.Contains(got, `"actions":["pull","push"]`) {
		t.Fatalf("alice on team: %s", got)
	}
	if got := grant("bob", "repository:team/app:pull,push"); !strings.Contains(got, `"actions":["pull"]`) || strings.Contains(got, "push") {
		t.Fatalf("bob on team: %s", got)
	}
	for _, f := range []string{"config.yaml", "registry.yml", "registry-bundle.pem", "policy/authz.rego", "policy/data.json"} {
		if _, err := os.Stat(filepath.Join(state, f)); err != nil {
			t.Errorf("dev state lacks %s: %v", f, err)
		}
	}
}

func decodeSegment(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
