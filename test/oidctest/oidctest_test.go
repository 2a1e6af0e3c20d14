package oidctest_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/test/oidctest"
)

// post sends a form to the provider and decodes its JSON answer.
func post(t *testing.T, endpoint string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(endpoint, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("%s: %s: %v", endpoint, resp.Status, err)
	}
	return resp.StatusCode, body
}

func idClaims(t *testing.T, tok any) map[string]any {
	t.Helper()
	s, _ := tok.(string)
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		t.Fatalf("id_token %q is not a JWT", s)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// The device flow of the test provider behaves as a real IdP's: pending
// until approved, tokens with the account's groups, refresh tokens rotated
// and their reuse revoking the grant, denial and disabled accounts refused.
func TestDeviceFlow(t *testing.T) {
	cli := oidctest.Client{ID: "tollgate", Secret: "s3cret", Device: true}
	p := oidctest.Start(t, oidctest.Options{Clients: []oidctest.Client{cli}, Accounts: map[string]map[string]any{
		"alice": {"groups": []string{"dev"}, "name": "Alice"},
	}})
	client := url.Values{"client_id": {cli.ID}, "client_secret": {cli.Secret}}
	with := func(kv ...string) url.Values {
		v := url.Values{}
		for k, vs := range client {
			v[k] = vs
		}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	start := func() (device, user string) {
		status, body := post(t, p.Issuer+"/device/auth", with("scope", "openid offline_access"))
		if status != 200 || body["user_code"] == nil || body["verification_uri"] == nil {
			t.Fatalf("device authorization: %d %v", status, body)
		}
		return body["device_code"].(string), body["user_code"].(string)
	}
	poll := func(device string) (int, map[string]any) {
		return post(t, p.Issuer+"/token", with("grant_type", "urn:ietf:params:oauth:grant-type:device_code", "device_code", device))
	}
	refresh := func(rt string) (int, map[string]any) {
		return post(t, p.Issuer+"/token", with("grant_type", "refresh_token", "refresh_token", rt))
	}

	device, user := start()
	if status, body := poll(device); status != 400 || body["error"] != "authorization_pending" {
		t.Fatalf("poll before approval: %d %v", status, body)
	}
	p.ApproveDevice(user, "alice", nil)
	status, tokens := poll(device)
	if status != 200 || tokens["refresh_token"] == nil {
		t.Fatalf("poll after approval: %d %v", status, tokens)
	}
	if c := idClaims(t, tokens["id_token"]); c["sub"] != "alice" || c["aud"] != cli.ID || !strings.Contains(toJSON(c["groups"]), `"dev"`) {
		t.Fatalf("id token claims: %v", c)
	}

	p.SetClaims("alice", map[string]any{"groups": []string{"visitors"}})
	status, next := refresh(tokens["refresh_token"].(string))
	if status != 200 || next["refresh_token"] == tokens["refresh_token"] {
		t.Fatalf("refresh: %d %v (want a new, rotated refresh token)", status, next)
	}
	if g := toJSON(idClaims(t, next["id_token"])["groups"]); g != `["visitors"]` {
		t.Fatalf("groups after the change: %s", g)
	}
	if ok, _ := p.Refreshes("alice"); ok != 1 {
		t.Fatalf("refreshes counted: %d, want 1", ok)
	}
	// Reusing the rotated-out token is theft to the provider: the grant goes.
	if status, body := refresh(tokens["refresh_token"].(string)); status != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("reuse of a rotated refresh token: %d %v", status, body)
	}
	if status, body := refresh(next["refresh_token"].(string)); status != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("the newest token after a reuse: %d %v (want the grant revoked)", status, body)
	}

	// The pages refuse a code they did not issue and an account they do not know.
	_, user = start()
	if err := oidctest.NewBrowser().ApproveDevice(p.VerificationURI(), "BCDF-GHJK", "alice"); err == nil {
		t.Fatal("a made-up user code was approved")
	}
	if err := oidctest.NewBrowser().ApproveDevice(p.VerificationURI(), user, "mallory"); err == nil {
		t.Fatal("an unknown account approved a device code")
	}

	device, user = start()
	p.DenyDevice(user)
	if status, body := poll(device); status != 400 || body["error"] != "access_denied" {
		t.Fatalf("poll after denial: %d %v", status, body)
	}

	device, user = start()
	p.ApproveDevice(user, "bob", map[string]any{"groups": []string{"ops"}})
	_, tokens = poll(device)
	p.DisableAccount("bob")
	if status, body := refresh(tokens["refresh_token"].(string)); status != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("refresh of a disabled account: %d %v", status, body)
	}

	device, user = start()
	p.ApproveDevice(user, "carol", map[string]any{"groups": []string{"ops"}})
	_, tokens = poll(device)
	p.RevokeGrants("carol")
	if status, body := refresh(tokens["refresh_token"].(string)); status != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("refresh after the grant was revoked: %d %v", status, body)
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
