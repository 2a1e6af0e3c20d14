package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestSIGHUPReloadsWithoutDroppingRequests: under a token load, SIGHUP
// brings in a new service with its own key; a broken file is refused and
// the running configuration keeps serving; no request fails.
func TestSIGHUPReloadsWithoutDroppingRequests(t *testing.T) {
	b := startBroker(t)
	svc := flavors[0].service
	ctx, stop := context.WithTimeout(context.Background(), 60*time.Second)
	defer stop()
	var ok, failed atomic.Int64
	var firstFailure atomic.Value
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil && i < 100_000; i++ { // bounded in count and time
				req, _ := http.NewRequest(http.MethodGet, b.url("/token?service="+svc+"&scope=repository:team/app:pull"), nil)
				req.SetBasicAuth("alice", b.passwords["alice"])
				resp, err := httpClient.Do(req)
				if err == nil {
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != http.StatusOK {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("%v %v", err, resp))
					continue
				}
				ok.Add(1)
			}
		}()
	}
	hup := func() {
		t.Helper()
		if err := b.proc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	status := func(service string) int {
		resp, err := httpClient.Get(b.url("/token?service=" + service))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	// A new service with its own key.
	const newService = "registry-new.test"
	newKeys := filepath.Join(b.dir, "new-keys")
	tollgate(t, "", "keygen", "--out", newKeys, "--name", "n")
	cfg, err := os.ReadFile(b.config)
	if err != nil {
		t.Fatal(err)
	}
	added := strings.Replace(string(cfg), "services:\n", fmt.Sprintf("services:\n  - {name: %s, issuer: other, realm: %q, keys: %q}\n", newService, b.realm(), newKeys), 1)
	if status(newService) != http.StatusBadRequest {
		t.Fatal("the new service is known before the reload")
	}
	if err := os.WriteFile(b.config, []byte(added), 0o600); err != nil {
		t.Fatal(err)
	}
	hup()
	waitFor(t, "the new service after SIGHUP", func() bool { return status(newService) == http.StatusOK })

	// A broken file: refused, the running configuration stays.
	if err := os.WriteFile(b.config, []byte(added+"no_such_setting: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hup()
	waitFor(t, "the refused reload in the log", func() bool {
		log, _ := os.ReadFile(b.proc.log)
		return strings.Contains(string(log), "reload failed; keeping the running configuration")
	})
	if status(newService) != http.StatusOK {
		t.Fatal("a broken configuration replaced the running one")
	}
	time.Sleep(200 * time.Millisecond)
	stop()
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during reloads; first: %v", failed.Load(), ok.Load()+failed.Load(), firstFailure.Load())
	}
	t.Logf("%d token requests during two reloads, none failed", ok.Load())
}

// TestSIGTERMDrainsInFlightRequests: a request in flight when SIGTERM
// arrives (a slow bcrypt check) is answered in full,
// then the process exits cleanly.
func TestSIGTERMDrainsInFlightRequests(t *testing.T) {
	b := startBroker(t)
	// Cost 13 makes the password check take long enough to be in flight.
	tollgate(t, "slow-password\n", "htpasswd", "add", "--cost", "13", b.htpasswd, "slow")
	b.passwords["slow"] = "slow-password"
	time.Sleep(1500 * time.Millisecond) // the htpasswd file is polled every second

	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		req, _ := http.NewRequest(http.MethodGet, b.url("/token?service="+flavors[0].service), nil)
		req.SetBasicAuth("slow", "slow-password")
		resp, err := httpClient.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		resp.Body.Close()
		done <- result{status: resp.StatusCode}
	}()
	time.Sleep(100 * time.Millisecond)
	if err := b.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.status != http.StatusOK {
		t.Fatalf("the in-flight request: %d %v", r.status, r.err)
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Fatalf("the request took %v: it was not in flight during SIGTERM; raise the bcrypt cost", took)
	}
	select {
	case <-b.proc.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the broker did not exit after draining")
	}
	if code := b.proc.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	log, _ := os.ReadFile(b.proc.log)
	if !strings.Contains(string(log), "draining in-flight requests") {
		t.Errorf("the log does not say it drained:\n%s", log)
	}
}

// TestEditingTheConfigurationReloadsIt: a new key added to a service's key
// directory, with a changed configuration, takes effect without a signal.
func TestEditingTheConfigurationReloadsIt(t *testing.T) {
	b := startBroker(t)
	const newService = "registry-edited.test"
	cfg, err := os.ReadFile(b.config)
	if err != nil {
		t.Fatal(err)
	}
	added := strings.Replace(string(cfg), "services:\n", fmt.Sprintf("services:\n  - {name: %s, issuer: other, realm: %q, keys: %q}\n", newService, b.realm(), b.keys), 1)
	if err := os.WriteFile(b.config, []byte(added), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the edited configuration to take effect", func() bool {
		resp, err := httpClient.Get(b.url("/token?service=" + newService))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
