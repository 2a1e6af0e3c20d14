package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/test/oidctest"
	"github.com/tollgate/tollgate/test/redistest"
)

// ssoClient is the broker's client at the corporate provider.
var ssoClient = oidctest.Client{ID: "tollgate-sso", Secret: rand.Text(), Device: true}

// ssoIdentity is a connector "sso" offering device login with the provider;
// sessions are re-validated when their last check is revalidate old; the
// client secret comes from the environment (SSO_CLIENT_SECRET) or secretFile.
func ssoIdentity(issuer, revalidate, secretFile string) string {
	return ssoIdentityGrace(issuer, revalidate, secretFile, "0s")
}

// ssoIdentityGrace is ssoIdentity serving the last validated identity for
// grace past the re-validation time while the provider cannot be reached.
func ssoIdentityGrace(issuer, revalidate, secretFile, grace string) string {
	secret := "client_secret_env: SSO_CLIENT_SECRET"
	if secretFile != "" {
		secret = fmt.Sprintf("client_secret_file: %q", secretFile)
	}
	return fmt.Sprintf(`  - name: sso
    type: oidc
    issuers:
      - issuer: %q
        audience: %s
        groups_prefix: "oidc:"
        timeout: 2s
    device_login:
      client_id: %s
      %s
      revalidate_after: %s
      grace: %s
`, issuer, oidcAudience, ssoClient.ID, secret, revalidate, grace)
}

// ssoBroker starts a provider (device codes live ttl seconds) and a broker
// trusting it, whose policy makes group registry-dev developer in team.
func ssoBroker(t *testing.T, deviceTTL int) (*oidctest.Provider, *broker) {
	t.Helper()
	p := oidctest.Start(t, oidctest.Options{Clients: []oidctest.Client{ssoClient}, DeviceTTL: deviceTTL})
	b := startBrokerWith(t, brokerOptions{
		identity:   ssoIdentity(p.Issuer, "1s", ""),
		policyData: oidcPolicyData,
		env:        []string{"SSO_CLIENT_SECRET=" + ssoClient.Secret},
		extra:      "throttle: {max_failures_per_address: 5, window: 1m}\n",
	})
	return p, b
}

// postJSON posts a form to the broker and decodes its JSON answer.
func (b *broker) postJSON(t *testing.T, path string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := httpClient.PostForm(b.url(path), form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("POST %s: %s, not JSON: %q", path, resp.Status, raw)
	}
	return resp.StatusCode, body
}

func (b *broker) deviceStart(t *testing.T) (handle, userCode string) {
	t.Helper()
	status, body := b.postJSON(t, "/login/device", url.Values{"service": {flavors[1].service}})
	handle, _ = body["device_code"].(string)
	userCode, _ = body["user_code"].(string)
	if status != http.StatusOK || handle == "" || userCode == "" || body["verification_uri"] == nil || body["interval"] != 5.0 {
		t.Fatalf("POST /login/device: %d %v", status, body)
	}
	return handle, userCode
}

func (b *broker) devicePoll(t *testing.T, handle string) (int, map[string]any) {
	t.Helper()
	return b.postJSON(t, "/login/device/token", url.Values{"service": {flavors[1].service}, "device_code": {handle}})
}

// refreshGrant asks for push and pull on team/app with a refresh token.
func (b *broker) refreshGrant(t *testing.T, refresh string) (int, tokenResponse, string) {
	t.Helper()
	return b.postToken(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh},
		"service": {flavors[1].service}, "client_id": {"e2e"}, "scope": {"repository:team/app:pull,push"}})
}

// deviceLogin signs account in with groups and returns the session's refresh token and id.
func deviceLogin(t *testing.T, p *oidctest.Provider, b *broker, account string, groups ...string) (string, string) {
	t.Helper()
	handle, code := b.deviceStart(t)
	p.ApproveDevice(code, account, map[string]any{"groups": groups, "name": account})
	status, body := b.devicePoll(t, handle)
	rt, _ := body["refresh_token"].(string)
	sid, _ := body["session_id"].(string)
	if status != http.StatusOK || rt == "" || sid == "" || body["subject"] != account || body["expires_in"] != float64(720*3600) {
		t.Fatalf("poll after approval: %d %v", status, body)
	}
	return rt, sid
}

var pushPull = []access{{"repository", "team/app", []string{"pull", "push"}}}

// TestDeviceLogin runs single sign-on through the broker against a real
// OIDC provider: device authorization, approval, a session-bound refresh
// token that grants what the user's groups allow, re-validation that
// follows the provider (groups, disabled accounts, one refresh at a time),
// logout, and the polling rules of RFC 8628.
func TestDeviceLogin(t *testing.T) {
	p, b := ssoBroker(t, 3)

	t.Run("approve, poll, refresh grant with the user's grants", func(t *testing.T) {
		rt, sid := deviceLogin(t, p, b, "dana", "registry-dev")
		status, body, raw := b.refreshGrant(t, rt)
		if status != http.StatusOK {
			t.Fatalf("refresh grant: %d %s", status, raw)
		}
		expectAccess(t, body.AccessToken, pushPull)

		logData := []byte(b.proc.logWith(t, `"session_id":"`+sid+`"`)) // the token line names the session
		store := filepath.Join(b.dir, "state", "sessions.json")
		stored, err := os.ReadFile(store)
		if err != nil || !strings.Contains(string(stored), sid) {
			t.Fatalf("session %s not in %s: %v", sid, store, err)
		}
		if fi, _ := os.Stat(store); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", store, fi.Mode().Perm())
		}
		issued := p.RefreshTokens()
		if len(issued) == 0 {
			t.Fatal("the provider issued no refresh token")
		}
		for _, tok := range append(issued, rt) {
			for name, data := range map[string][]byte{"session store": stored, "broker log": logData} {
				if strings.Contains(string(data), tok) {
					t.Errorf("the %s holds a refresh token in clear", name)
				}
			}
		}
	})

	t.Run("a group removed at the provider loses push at the next re-validation", func(t *testing.T) {
		rt, _ := deviceLogin(t, p, b, "erin", "registry-dev")
		p.SetClaims("erin", map[string]any{"groups": []string{"visitors"}})
		if status, body, raw := b.refreshGrant(t, rt); status != http.StatusOK {
			t.Fatalf("refresh grant before re-validation: %d %s", status, raw)
		} else {
			expectAccess(t, body.AccessToken, pushPull) // the last check is fresh
		}
		time.Sleep(1100 * time.Millisecond)
		status, body, raw := b.refreshGrant(t, rt)
		if status != http.StatusOK {
			t.Fatalf("refresh grant after re-validation: %d %s", status, raw)
		}
		expectAccess(t, body.AccessToken, nil)
		if ok, _ := p.Refreshes("erin"); ok != 1 {
			t.Errorf("the provider saw %d refreshes, want 1", ok)
		}
	})

	t.Run("concurrent refreshes re-validate once and keep the grant alive", func(t *testing.T) {
		rt, _ := deviceLogin(t, p, b, "finn", "registry-dev")
		for round := 1; round <= 2; round++ {
			time.Sleep(1100 * time.Millisecond)
			refreshTogether(t, round, rt, b)
			if ok, _ := p.Refreshes("finn"); ok != round {
				t.Fatalf("round %d: the provider saw %d refreshes, want %d", round, ok, round)
			}
		}
	})

	t.Run("a disabled account gets 401 and its session ends", func(t *testing.T) {
		rt, sid := deviceLogin(t, p, b, "gail", "registry-dev")
		p.DisableAccount("gail")
		time.Sleep(1100 * time.Millisecond)
		for i := 0; i < 2; i++ {
			if status, _, raw := b.refreshGrant(t, rt); status != http.StatusUnauthorized {
				t.Fatalf("refresh %d of a disabled account: %d %s", i, status, raw)
			}
		}
		stored, _ := os.ReadFile(filepath.Join(b.dir, "state", "sessions.json"))
		if strings.Contains(string(stored), sid) {
			t.Errorf("session %s of a disabled account is still stored", sid)
		}
	})

	t.Run("a session revoked with the CLI is refused at the next refresh", func(t *testing.T) {
		rt, sid := deviceLogin(t, p, b, "jo", "registry-dev")
		if out := tollgate(t, "", "session", "list", "--user", "jo", "--config", b.config); !strings.Contains(out, sid) || !strings.Contains(out, "oidc:registry-dev") {
			t.Fatalf("session list does not show %s:\n%s", sid, out)
		}
		tollgate(t, "", "session", "revoke", sid, "--config", b.config)
		if status, _, raw := b.refreshGrant(t, rt); status != http.StatusUnauthorized {
			t.Fatalf("refresh after revocation: %d %s", status, raw)
		}
	})

	t.Run("logout ends the session, twice is fine", func(t *testing.T) {
		rt, _ := deviceLogin(t, p, b, "hal", "registry-dev")
		for i := 0; i < 2; i++ {
			if status, body := b.postJSON(t, "/logout", url.Values{"refresh_token": {rt}}); status != http.StatusOK {
				t.Fatalf("logout %d: %d %v", i, status, body)
			}
		}
		if status, _, raw := b.refreshGrant(t, rt); status != http.StatusUnauthorized {
			t.Fatalf("refresh after logout: %d %s", status, raw)
		}
		if status, _ := b.postJSON(t, "/logout", url.Values{"refresh_token": {"not-a-token"}}); status != http.StatusBadRequest {
			t.Errorf("logout with garbage: %d, want 400", status)
		}
	})

	t.Run("pending, slow_down, denied, expired", func(t *testing.T) {
		handle, _ := b.deviceStart(t)
		if status, body := b.devicePoll(t, handle); status != 400 || body["error"] != "authorization_pending" {
			t.Fatalf("first poll: %d %v", status, body)
		}
		if status, body := b.devicePoll(t, handle); status != 400 || body["error"] != "slow_down" {
			t.Fatalf("second poll at once: %d %v", status, body)
		}

		handle, code := b.deviceStart(t)
		p.DenyDevice(code)
		if status, body := b.devicePoll(t, handle); status != 400 || body["error"] != "access_denied" {
			t.Fatalf("poll after denial: %d %v", status, body)
		}

		handle, _ = b.deviceStart(t)
		time.Sleep(3100 * time.Millisecond)
		if status, body := b.devicePoll(t, handle); status != 400 || body["error"] != "expired_token" {
			t.Fatalf("poll after expiry: %d %v", status, body)
		}
	})

	t.Run("provider down at re-validation: 503, never the old grant", func(t *testing.T) {
		rt, _ := deviceLogin(t, p, b, "lee", "registry-dev")
		p.Stop()
		defer p.Start() // the provider comes back for the last subtest (its grants are gone)
		time.Sleep(1100 * time.Millisecond)
		if status, _, raw := b.refreshGrant(t, rt); status != http.StatusServiceUnavailable {
			t.Fatalf("refresh while the provider is down: %d %s", status, raw)
		}
	})

	t.Run("replayed and guessed device codes are refused and throttled", func(t *testing.T) {
		handle, code := b.deviceStart(t)
		p.ApproveDevice(code, "kim", map[string]any{"groups": []string{"registry-dev"}})
		if status, body := b.devicePoll(t, handle); status != http.StatusOK {
			t.Fatalf("poll after approval: %d %v", status, body)
		}
		if status, body := b.devicePoll(t, handle); status != 400 || body["error"] != "invalid_grant" {
			t.Fatalf("replayed device code: %d %v", status, body)
		}
		forged := handle[:len(handle)-4] + "AAAA"
		for i := 1; i < 5; i++ {
			if status, body := b.devicePoll(t, forged); status != 400 || body["error"] != "invalid_grant" {
				t.Fatalf("guess %d: %d %v", i, status, body)
			}
		}
		if status, body := b.devicePoll(t, forged); status != http.StatusTooManyRequests {
			t.Fatalf("guess after the limit: %d %v, want 429", status, body)
		}
	})

}

// TestDeviceLoginAcrossReplicas: two brokers share sessions through a real
// redis-server. Either answers a poll for a handle the other gave out; when
// both get refreshes of one session at the moment it is due, the provider
// sees one refresh (its rotation would end the grant at a second use of the
// same token); a revocation with the CLI is refused by both.
func TestDeviceLoginAcrossReplicas(t *testing.T) {
	redis := redistest.Start(t)
	p := oidctest.Start(t, oidctest.Options{Clients: []oidctest.Client{ssoClient}})
	dir := t.TempDir()
	secretFile, keyFile := filepath.Join(dir, "sso-secret"), filepath.Join(dir, "session-key")
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if os.WriteFile(secretFile, []byte(ssoClient.Secret+"\n"), 0o600) != nil || os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)), 0o600) != nil {
		t.Fatal("writing the secrets")
	}
	a := startBrokerWith(t, brokerOptions{
		identity:   ssoIdentity(p.Issuer, "1s", secretFile),
		policyData: oidcPolicyData,
		extra:      fmt.Sprintf("redis: {addr: %q, prefix: \"e2e:\"}\nsessions: {key_file: %q}\n", redis.Addr(), keyFile),
	})
	b := startReplica(t, a)

	handle, code := a.deviceStart(t)
	p.ApproveDevice(code, "ivy", map[string]any{"groups": []string{"registry-dev"}})
	status, body := b.devicePoll(t, handle)
	rt, _ := body["refresh_token"].(string)
	sid, _ := body["session_id"].(string)
	if status != http.StatusOK || rt == "" {
		t.Fatalf("poll on the other replica: %d %v", status, body)
	}
	for round := 1; round <= 2; round++ {
		time.Sleep(1100 * time.Millisecond)
		refreshTogether(t, round, rt, a, b)
		if ok, failed := p.Refreshes("ivy"); ok != round || failed != 0 {
			t.Fatalf("round %d: the provider saw %d refreshes and %d failed ones, want %d and 0", round, ok, failed, round)
		}
	}
	// The session in Redis holds the provider's refresh token encrypted.
	stored := redisValues(t, redis.Addr())
	if !strings.Contains(stored, sid) {
		t.Fatalf("session %s is not in redis:\n%s", sid, stored)
	}
	for _, tok := range append(p.RefreshTokens(), rt) {
		if strings.Contains(stored, tok) {
			t.Errorf("redis holds a refresh token in clear")
		}
	}
	if out := tollgate(t, "", "session", "list", "--config", a.config); !strings.Contains(out, sid) {
		t.Fatalf("session list does not show %s:\n%s", sid, out)
	}
	tollgate(t, "", "session", "revoke", "--user", "ivy", "--config", a.config)
	for _, r := range []*broker{a, b} {
		if status, _, raw := r.refreshGrant(t, rt); status != http.StatusUnauthorized {
			t.Fatalf("refresh after revocation: %d %s", status, raw)
		}
	}

	// A grant revoked at the provider (the account stays enabled): the
	// re-validation on one replica ends the session for both.
	handle, code = b.deviceStart(t)
	p.ApproveDevice(code, "max", map[string]any{"groups": []string{"registry-dev"}})
	if status, body = a.devicePoll(t, handle); status != http.StatusOK {
		t.Fatalf("poll for max: %d %v", status, body)
	}
	rt, _ = body["refresh_token"].(string)
	for _, r := range []*broker{a, b} {
		if status, _, raw := r.refreshGrant(t, rt); status != http.StatusOK {
			t.Fatalf("refresh before the revocation at the provider: %d %s", status, raw)
		}
	}
	p.RevokeGrants("max")
	time.Sleep(1100 * time.Millisecond)
	for _, r := range []*broker{a, b} {
		if status, _, raw := r.refreshGrant(t, rt); status != http.StatusUnauthorized {
			t.Fatalf("refresh after the grant was revoked at the provider: %d %s", status, raw)
		}
	}

}

// redisValues reads every string and hash in the Redis at addr, for a test
// to look for what must not be there.
func redisValues(t *testing.T, addr string) string {
	t.Helper()
	ctx := context.Background()
	rdb := goredis.NewClient(&goredis.Options{Addr: addr})
	defer rdb.Close()
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("redis keys: %v %v", keys, err)
	}
	var out strings.Builder
	for _, k := range keys {
		switch rdb.Type(ctx, k).Val() {
		case "string":
			fmt.Fprintf(&out, "%s = %s\n", k, rdb.Get(ctx, k).Val())
		case "hash":
			fmt.Fprintf(&out, "%s = %v\n", k, rdb.HGetAll(ctx, k).Val())
		}
	}
	return out.String()
}

// TestDeviceLoginGraceServesLastValidatedIdentity: with a grace, a
// provider outage at re-validation keeps serving the identity of the last
// successful check (here: a group fewer than at login), never more.
func TestDeviceLoginGraceServesLastValidatedIdentity(t *testing.T) {
	p := oidctest.Start(t, oidctest.Options{Clients: []oidctest.Client{ssoClient}})
	b := startBrokerWith(t, brokerOptions{
		identity:   ssoIdentityGrace(p.Issuer, "1s", "", "1m"),
		policyData: oidcPolicyData,
		env:        []string{"SSO_CLIENT_SECRET=" + ssoClient.Secret},
	})
	rt, _ := deviceLogin(t, p, b, "nora", "registry-dev")
	p.SetClaims("nora", map[string]any{"groups": []string{"visitors"}})
	time.Sleep(1100 * time.Millisecond)
	if status, body, raw := b.refreshGrant(t, rt); status != http.StatusOK {
		t.Fatalf("refresh at re-validation: %d %s", status, raw)
	} else {
		expectAccess(t, body.AccessToken, nil)
	}
	p.Stop()
	time.Sleep(1100 * time.Millisecond)
	status, body, raw := b.refreshGrant(t, rt)
	if status != http.StatusOK {
		t.Fatalf("refresh within the grace: %d %s", status, raw)
	}
	expectAccess(t, body.AccessToken, nil) // not the push nora had at login
	b.proc.logWith(t, "serving the last validated identity")
}

// refreshTogether sends 8 refreshes of rt at once, spread over brokers,
// and requires every one to succeed.
func refreshTogether(t *testing.T, round int, rt string, brokers ...*broker) {
	t.Helper()
	var wg sync.WaitGroup
	statuses := make([]int, 8)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i], _, _ = brokers[i%len(brokers)].refreshGrant(t, rt)
		}()
	}
	wg.Wait()
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Fatalf("round %d: refresh %d answered %d", round, i, s)
		}
	}
}
