package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// printPolicy is a module added to the default policy that prints the whole
// input of every decision and grants nothing.
const printPolicy = `package registry.authz

allowed contains {"type": "print", "name": "print", "action": "print"} if {
	print("e2e print, input:", input)
	false
}
`

// tokenWithRequestID asks for a pull token as user (whose password, or a
// robot's secret, is secret) with the X-Request-ID id, and fails unless it
// was granted.
func tokenWithRequestID(t *testing.T, b *broker, user, secret, id string) {
	t.Helper()
	q := url.Values{"service": {flavors[0].service}, "scope": {"repository:team/app:pull"}}
	req, err := http.NewRequest(http.MethodGet, b.url("/token?"+q.Encode()), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(user, secret)
	req.Header.Set("X-Request-ID", id)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token for %s: %s", user, resp.Status)
	}
}

// policyPrints returns the "policy print" records of a broker's JSON log.
func policyPrints(t *testing.T, b *broker) []map[string]any {
	t.Helper()
	f, err := os.Open(b.proc.log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "policy print" {
			recs = append(recs, rec)
		}
	}
	return recs
}

// A policy's print() output is in the broker's log at debug level, on a
// line with the request's id; at info level it is not. The input it prints
// holds no password nor robot secret: the log of a policy that prints its
// whole input never shows one.
func TestBrokerLogsPolicyPrintAtDebugWithoutSecrets(t *testing.T) {
	robots := filepath.Join(t.TempDir(), "robots.json")
	robotSecret := robotCredential(t, "create", "--file", robots, "--scope", "repository:team/*:pull", "--expires", "1h", "ci")
	// The same policy for the opa: section, as a bundle directory OPA's
	// file loader reads.
	bundleDir := filepath.Join(t.TempDir(), "bundle")
	writePolicy(t, bundleDir, testPolicyData)
	if err := os.WriteFile(filepath.Join(bundleDir, "print.rego"), []byte(printPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	opaSection := fmt.Sprintf("opa:\n  bundles:\n    authz: {resource: %q}\n", "file://"+bundleDir)
	for _, c := range []struct{ name, level, opa string }{
		{"policy.source at debug", "debug", ""},
		{"policy.source at info", "info", ""},
		{"opa section at debug", "debug", opaSection},
		{"opa section at info", "info", opaSection},
	} {
		level := c.level
		t.Run(c.name, func(t *testing.T) {
			b := startBrokerWith(t, brokerOptions{
				logLevel:    level,
				policyFiles: map[string]string{"print.rego": printPolicy},
				opa:         c.opa,
				identity:    fmt.Sprintf("  - {name: robot, type: robot, file: %q}\n", robots),
			})
			tokenWithRequestID(t, b, "alice", b.passwords["alice"], "print-alice-1")
			tokenWithRequestID(t, b, "robot-ci", robotSecret, "print-robot-1")

			log := b.proc.logWith(t, `"msg":"token","request_id":"print-robot-1"`) // both requests' lines are out
			for user, secret := range map[string]string{"alice": b.passwords["alice"], "robot-ci": robotSecret} {
				if strings.Contains(string(log), secret) {
					t.Errorf("the log shows %s's secret", user)
				}
			}
			prints := map[string]string{}
			for _, rec := range policyPrints(t, b) {
				id, _ := rec["request_id"].(string)
				prints[id], _ = rec["output"].(string)
			}
			if level == "info" {
				if len(prints) != 0 {
					t.Errorf("at info level the log has policy prints: %v", prints)
				}
				return
			}
			for id, want := range map[string]string{"print-alice-1": `"subject": "alice"`, "print-robot-1": `"subject": "robot-ci"`} {
				if out := prints[id]; !strings.HasPrefix(out, "e2e print, input: ") || !strings.Contains(out, want) {
					t.Errorf("request %s: policy print %q, want the input with %s (all: %v)", id, out, want, prints)
				}
			}
		})
	}
}
