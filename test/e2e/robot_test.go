package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// robotCredential runs `tollgate robot create|rotate` and returns the secret.
func robotCredential(t *testing.T, args ...string) string {
	t.Helper()
	out := tollgate(t, "", append([]string{"robot"}, args...)...)
	m := regexp.MustCompile(`(?m)^secret:\s+(\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no secret in:\n%s", out)
	}
	return m[1]
}

// tokenError asks for a token as user and returns the status and the
// broker's error message.
func tokenError(t *testing.T, b *broker, user string) (int, string) {
	t.Helper()
	status, raw, _ := b.askToken(t, flavors[1].service, user, "repository:team/app:pull")
	var body tokenResponse
	json.Unmarshal(raw, &body)
	msg := ""
	if len(body.Errors) > 0 {
		msg = body.Errors[0].Message
	}
	return status, msg
}

// TestRobotCredentials: crane works with a robot credential within its
// scopes and is refused outside them; rotation, revocation and expiry take
// effect without a restart, each refused with a message that says why.
func TestRobotCredentials(t *testing.T) {
	r := flavors[1]
	tool(t, r.bin)
	tool(t, "crane")
	robots := filepath.Join(t.TempDir(), "robots.json")
	// The test polls with credentials the broker has not loaded yet: each
	// poll is a failed login, which the default throttle would lock out.
	b := startBrokerWith(t, brokerOptions{
		identity: fmt.Sprintf("  - {name: robot, type: robot, file: %q}\n", robots),
		extra:    "throttle: {max_failures_per_user: 10000, max_failures_per_address: 10000}\n",
	})
	reg := startRegistry(t, r, b)

	// Shell metacharacters are refused at creation.
	for _, name := range []string{"team$ci", "team ci", "team;ci", "$(id)"} {
		if out, err := tollgateErr(t, "robot", "create", "--file", robots, "--scope", "repository:team/*:pull", "--expires", "1h", name); err == nil {
			t.Fatalf("robot name %q accepted:\n%s", name, out)
		}
	}

	const user = "robot-team-ci"
	b.passwords[user] = robotCredential(t, "create", "--file", robots, "--scope", "repository:team/*:pull,push", "--expires", "90d", "team-ci")
	ci := newClient(t)
	// The broker picks the new store up within its poll interval.
	waitFor(t, "the broker to load the robot", func() bool { code, _ := tokenError(t, b, user); return code == http.StatusOK })
	ci.login("crane", reg, b, user)
	ci.must("crane", "append", "-f", ci.layerTar(), "-t", reg.host()+"/team/app:ci")
	ci.must("crane", "manifest", reg.host()+"/team/app:ci")
	ci.mustFail(1, craneDenied, "crane", "append", "-f", ci.layerTar(), "-t", reg.host()+"/library/app:ci")
	ci.mustFail(1, craneDenied, "crane", "manifest", reg.host()+"/secret/app:x")

	// Rotation: the old secret fails, the new one works, no restart.
	old := b.passwords[user]
	b.passwords[user] = robotCredential(t, "rotate", "--file", robots, "team-ci")
	waitFor(t, "the rotated secret", func() bool { code, _ := tokenError(t, b, user); return code == http.StatusOK })
	req, _ := http.NewRequest(http.MethodGet, b.url("/token?scope=repository:team/app:pull"), nil)
	req.SetBasicAuth(user, old)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the old secret after rotation: %s", resp.Status)
	}
	ci.login("crane", reg, b, user)
	ci.must("crane", "append", "-f", ci.layerTar(), "-t", reg.host()+"/team/app:rotated")

	// Revocation: 401 that says so.
	tollgate(t, "", "robot", "revoke", "--file", robots, "team-ci")
	waitFor(t, "the revocation", func() bool {
		code, msg := tokenError(t, b, user)
		return code == http.StatusUnauthorized && strings.Contains(msg, "revoked")
	})
	ci.mustFail(1, regexp.MustCompile(`revoked`), "crane", "manifest", reg.host()+"/team/app:ci")

	// Expiry: a robot that lives two seconds.
	const short = "robot-short"
	b.passwords[short] = robotCredential(t, "create", "--file", robots, "--scope", "repository:team/*:pull", "--expires", "2s", "short")
	waitFor(t, "the short-lived robot", func() bool { code, _ := tokenError(t, b, short); return code == http.StatusOK })
	waitFor(t, "the expiry", func() bool {
		code, msg := tokenError(t, b, short)
		return code == http.StatusUnauthorized && strings.Contains(msg, "expired")
	})

	list := tollgate(t, "", "robot", "list", "--file", robots)
	for _, want := range []string{"robot-team-ci  revoked", "robot-short    expired", "repository:team/*:pull,push"} {
		if !strings.Contains(list, want) {
			t.Errorf("robot list lacks %q:\n%s", want, list)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
