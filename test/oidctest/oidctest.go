// Package oidctest runs a real OpenID Connect provider for tests: the npm
// package oidc-provider (test/oidcprovider) under Node, on a loopback port, in a temporary directory.
package oidctest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/test/testenv"
)

// Client is an OAuth2 client of the provider. Its tokens come from the
// client_credentials grant and carry Claims (which may replace `sub`). A
// Device client instead uses the device authorization grant and refresh
// tokens (rotated at every use) for the Accounts that approve it.
type Client struct {
	ID     string         `json:"id"`
	Secret string         `json:"secret"`
	TTL    int            `json:"ttl,omitempty"` // token lifetime in seconds; 300 when 0
	Claims map[string]any `json:"claims,omitempty"`
	Device bool           `json:"device,omitempty"`
}

// Options configure a provider.
type Options struct {
	// Alg is the signing algorithm: RS256 (default) or ES256.
	Alg     string
	Clients []Client
	// Accounts are the users who can approve device codes, by account id
	// (their `sub`), with the claims of their ID tokens (groups, name).
	Accounts map[string]map[string]any
	// DeviceTTL is the lifetime of a device code in seconds; 600 when 0.
	DeviceTTL int
}

// Provider is one oidc-provider process.
type Provider struct {
	t   testing.TB
	dir string
	// Issuer is the provider's issuer URL (http://127.0.0.1:PORT).
	Issuer string
	port   int
	node   string
	script string
	cmd    *exec.Cmd
	done   chan struct{}
}

// Start starts a provider and waits until it answers discovery.
func Start(t testing.TB, o Options) *Provider {
	t.Helper()
	p := New(t, o)
	p.Start()
	return p
}

// New prepares a provider on a free port without starting it, so a test
// can configure its issuer URL before it is up.
func New(t testing.TB, o Options) *Provider {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "oidcprovider", "provider.mjs")
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(filepath.Dir(script), "node_modules", "oidc-provider", "package.json"))
	}
	if err != nil {
		testenv.Missing(t, fmt.Sprintf("the test OIDC provider (npm oidc-provider in test/oidcprovider, Node 20 or later) is not installed (%v)", err))
	}
	if o.Alg == "" {
		o.Alg = "RS256"
	}
	p := &Provider{t: t, dir: t.TempDir(), port: testenv.FreePort(t), node: node, script: script}
	p.Issuer = fmt.Sprintf("http://127.0.0.1:%d", p.port)
	cfg, err := json.Marshal(map[string]any{"port": p.port, "issuer": p.Issuer, "dir": p.dir, "alg": o.Alg,
		"clients": o.Clients, "accounts": o.Accounts, "device_ttl": o.DeviceTTL})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.dir, "config.json"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

// Start runs the provider (again, on the same port and key after Stop).
func (p *Provider) Start() {
	p.t.Helper()
	log, err := os.OpenFile(filepath.Join(p.dir, "provider.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	p.cmd = exec.Command(p.node, p.script, filepath.Join(p.dir, "config.json"))
	p.cmd.Dir = p.dir
	p.cmd.Stdout, p.cmd.Stderr = log, log
	p.cmd.SysProcAttr = dieWithParent()
	if err := p.cmd.Start(); err != nil {
		log.Close()
		p.t.Fatal(err)
	}
	done := make(chan struct{})
	p.done = done
	go func(cmd *exec.Cmd) { _ = cmd.Wait(); log.Close(); close(done) }(p.cmd)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			p.t.Fatalf("oidc-provider exited at start:\n%s", p.Log())
		default:
		}
		if resp, err := http.Get(p.Issuer + "/.well-known/openid-configuration"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.t.Fatalf("oidc-provider did not answer discovery within 30s:\n%s", p.Log())
}

// Stop ends the provider; its key stays, so Start brings the same one back.
func (p *Provider) Stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
}

// Log is what the provider printed.
func (p *Provider) Log() string {
	data, _ := os.ReadFile(filepath.Join(p.dir, "provider.log"))
	return string(data)
}

// TokenResponse asks the token endpoint for an access token for resource
// (its `aud`) with the client_credentials grant, as a real client does.
func (p *Provider) TokenResponse(clientID, secret, resource string) (int, map[string]any, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret}, "resource": {resource}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.Issuer+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var body map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &body); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("token endpoint answered %s: %q", resp.Status, raw)
	}
	return resp.StatusCode, body, nil
}

// Token returns an access token (a JWT) for client c and resource, or fails the test.
func (p *Provider) Token(c Client, resource string) string {
	p.t.Helper()
	status, body, err := p.TokenResponse(c.ID, c.Secret, resource)
	tok, _ := body["access_token"].(string)
	if err != nil || status != http.StatusOK || strings.Count(tok, ".") != 2 {
		p.t.Fatalf("token for %s: %d %v %v\n%s", c.ID, status, body, err, p.Log())
	}
	return tok
}

// Rotate makes the provider sign with a new key; the old one leaves its
// JWKS at once. It returns the new key id.
func (p *Provider) Rotate() string {
	p.t.Helper()
	var out struct {
		Kid string `json:"kid"`
	}
	p.admin(http.MethodPost, "/admin/rotate", nil, &out)
	return out.Kid
}

// JWKSFetches is how often the provider's JWKS has been fetched.
func (p *Provider) JWKSFetches() int {
	p.t.Helper()
	var out struct {
		Fetches int `json:"jwks_fetches"`
	}
	p.admin(http.MethodGet, "/admin/stats", nil, &out)
	return out.Fetches
}

// JWKS returns the provider's published keys, fetched like anyone would
// (this counts as a fetch).
func (p *Provider) JWKS() []map[string]any {
	p.t.Helper()
	var out struct {
		Keys []map[string]any `json:"keys"`
	}
	p.admin(http.MethodGet, "/jwks", nil, &out)
	return out.Keys
}

// VerificationURI is where the provider sends people to enter a device's
// user code (its device authorization's verification_uri).
func (p *Provider) VerificationURI() string { return p.Issuer + "/device" }

// ApproveDevice approves userCode as account through the provider's own
// pages in a new browser (code, sign-in, consent); claims, when not nil,
// replace the account's claims first (creating the account).
func (p *Provider) ApproveDevice(userCode, account string, claims map[string]any) {
	p.t.Helper()
	if claims != nil {
		p.SetClaims(account, claims)
	}
	if err := NewBrowser().ApproveDevice(p.VerificationURI(), userCode, account); err != nil {
		p.t.Fatalf("approving device code %s as %s: %v\n%s", userCode, account, err, p.Log())
	}
}

// DenyDevice aborts userCode at the provider's confirmation page: the
// device's next poll gets access_denied.
func (p *Provider) DenyDevice(userCode string) {
	p.t.Helper()
	if err := NewBrowser().DenyDevice(p.VerificationURI(), userCode); err != nil {
		p.t.Fatalf("denying device code %s: %v\n%s", userCode, err, p.Log())
	}
}

// SetClaims replaces an account's claims (its groups): the next ID token,
// from the next refresh, carries them.
func (p *Provider) SetClaims(account string, claims map[string]any) {
	p.t.Helper()
	p.admin(http.MethodPost, "/admin/account", map[string]any{"id": account, "claims": claims}, nil)
}

// DisableAccount makes every refresh of the account's tokens fail with invalid_grant.
func (p *Provider) DisableAccount(account string) {
	p.t.Helper()
	p.admin(http.MethodPost, "/admin/account", map[string]any{"id": account, "disabled": true}, nil)
}

// RevokeGrants revokes every grant the account approved, with its tokens.
func (p *Provider) RevokeGrants(account string) {
	p.t.Helper()
	p.admin(http.MethodPost, "/admin/revoke", map[string]any{"account": account}, nil)
}

// Refreshes is how many refresh grants of account succeeded, and how many
// refresh grants failed in all.
func (p *Provider) Refreshes(account string) (ok, failed int) {
	p.t.Helper()
	var out struct {
		Refreshes map[string]int `json:"refreshes"`
		Errors    int            `json:"refresh_errors"`
	}
	p.admin(http.MethodGet, "/admin/stats", nil, &out)
	return out.Refreshes[account], out.Errors
}

// RefreshTokens are the values of every refresh token the provider issued.
func (p *Provider) RefreshTokens() []string {
	p.t.Helper()
	var out struct {
		Tokens []string `json:"refresh_tokens"`
	}
	p.admin(http.MethodGet, "/admin/stats", nil, &out)
	return out.Tokens
}

// admin calls a test hook with body as JSON (none when nil) and decodes its
// answer into out (ignored when nil).
func (p *Provider) admin(method, path string, body, out any) {
	p.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			p.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, p.Issuer+path, rd)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		p.t.Fatalf("%s %s: %s %s\n%s", method, path, resp.Status, raw, p.Log())
	}
	if out == nil {
		return
	}
	if err := json.Unmarshal(raw, out); err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
}
