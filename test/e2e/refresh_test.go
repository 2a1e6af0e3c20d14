package e2e

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// expectInvalidToken fails the test unless the registry refused the
// request's token itself (401, error="invalid_token"), not merely its scope.
func (r response) expectInvalidToken(t testing.TB) {
	t.Helper()
	if ch := r.header.Get("WWW-Authenticate"); r.status != http.StatusUnauthorized || !strings.Contains(ch, `error="invalid_token"`) {
		t.Fatalf("want 401 with an invalid_token Bearer challenge:\n%s", r)
	}
}

func TestRefreshTokenPushesUntilTheUserIsRemoved(t *testing.T) {
	e := newEnv(t)
	const scope = "repository:team/app:pull,push"
	refresh := map[string]string{} // by service

	t.Run("refreshed token pushes", func(t *testing.T) {
		e.each(t, func(t *testing.T, r *registry) {
			svc := r.flavor.service
			status, body, raw := e.b.postToken(t, url.Values{
				"grant_type": {"password"}, "username": {"alice"}, "password": {e.b.passwords["alice"]},
				"service": {svc}, "client_id": {"e2e"}, "access_type": {"offline"}, "scope": {scope},
			})
			if status != http.StatusOK || body.RefreshToken == "" || body.AccessToken == "" {
				t.Fatalf("POST /token grant_type=password access_type=offline: %d, want 200 with access_token and refresh_token\n%s", status, raw)
			}
			refresh[svc] = body.RefreshToken

			// A refresh token is no access token: the registry refuses it
			// even where any valid token would do.
			do(t, "GET", r.url("/v2/"), body.RefreshToken, nil).expectInvalidToken(t)
			do(t, "POST", r.url("/v2/team/app/blobs/uploads/"), body.RefreshToken, nil).expectInvalidToken(t)

			status, body, raw = e.b.postToken(t, url.Values{
				"grant_type": {"refresh_token"}, "refresh_token": {refresh[svc]},
				"service": {svc}, "client_id": {"e2e"}, "scope": {scope},
			})
			if status != http.StatusOK || body.AccessToken == "" {
				t.Fatalf("POST /token grant_type=refresh_token: %d, want 200 with access_token\n%s", status, raw)
			}
			expectAccess(t, body.AccessToken, []access{{"repository", "team/app", []string{"pull", "push"}}})
			uploadBlob(t, r, body.AccessToken, "team/app", randomTar(t))
		})
	})
	if t.Failed() {
		return
	}

	tollgate(t, "", "htpasswd", "remove", e.b.htpasswd, "alice")
	removed := time.Now()
	t.Run("refresh refused once the user is removed", func(t *testing.T) {
		e.each(t, func(t *testing.T, r *registry) {
			svc := r.flavor.service
			// The broker polls the file about once a second.
			for {
				status, body, raw := e.b.postToken(t, url.Values{
					"grant_type": {"refresh_token"}, "refresh_token": {refresh[svc]},
					"service": {svc}, "client_id": {"e2e"}, "scope": {scope},
				})
				if (status == http.StatusUnauthorized || status == http.StatusBadRequest) && body.Error == "invalid_grant" {
					t.Logf("refresh refused %v after the user was removed", time.Since(removed).Round(100*time.Millisecond))
					break
				}
				if status != http.StatusOK {
					t.Fatalf("refresh after removing the user: %d, want 401 or 400 with invalid_grant\n%s", status, raw)
				}
				if time.Since(removed) > 10*time.Second {
					t.Fatalf("refresh still granted 10s after removing the user from the htpasswd file:\n%s", raw)
				}
				time.Sleep(200 * time.Millisecond)
			}
			status, _, raw := e.b.postToken(t, url.Values{
				"grant_type": {"password"}, "username": {"alice"}, "password": {e.b.passwords["alice"]},
				"service": {svc}, "client_id": {"e2e"}, "scope": {scope},
			})
			if status != http.StatusUnauthorized {
				t.Fatalf("password grant for a removed user: %d, want 401\n%s", status, raw)
			}
		})
	})
}

// TestRefreshTokenEndsWhenTheCredentialChanges: a refresh token is worth
// the credential it was obtained with, no more. Rotating a robot, changing
// a password (`tollgate htpasswd add` on an existing user) or removing a
// user and creating it again (with the same password) ends the refresh
// tokens issued before, once the broker has loaded the change.
func TestRefreshTokenEndsWhenTheCredentialChanges(t *testing.T) {
	robots := filepath.Join(t.TempDir(), "robots.json")
	b := startBrokerWith(t, brokerOptions{
		identity: fmt.Sprintf("  - {name: robot, type: robot, file: %q}\n", robots),
		extra:    "throttle: {max_failures_per_user: 10000, max_failures_per_address: 10000}\n",
	})
	svc := flavors[0].service
	const scope = "repository:team/app:pull"
	offline := func(t *testing.T, user string) string {
		t.Helper()
		status, body, raw := b.postToken(t, url.Values{
			"grant_type": {"password"}, "username": {user}, "password": {b.passwords[user]},
			"service": {svc}, "access_type": {"offline"}, "scope": {scope},
		})
		if status != http.StatusOK || body.RefreshToken == "" {
			t.Fatalf("offline login as %s: %d, want 200 with a refresh_token\n%s", user, status, raw)
		}
		return body.RefreshToken
	}
	refresh := func(t *testing.T, rt string) (int, string) {
		t.Helper()
		status, _, raw := b.postToken(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "service": {svc}, "scope": {scope}})
		return status, raw
	}
	loginWorks := func(user string) func() bool {
		return func() bool { code, _ := tokenError(t, b, user); return code == http.StatusOK }
	}
	// ended checks, after the broker has loaded the change, that the old
	// refresh token is refused and says why.
	ended := func(t *testing.T, rt string) {
		t.Helper()
		if status, raw := refresh(t, rt); status != http.StatusUnauthorized || !strings.Contains(raw, "credential changed") {
			t.Fatalf("refresh with the token issued before the change: %d, want 401 saying the credential changed\n%.200s", status, raw)
		}
	}

	t.Run("robot rotate", func(t *testing.T) {
		const user = "robot-ci"
		b.passwords[user] = robotCredential(t, "create", "--file", robots, "--scope", "repository:team/*:pull", "--expires", "never", "ci")
		waitFor(t, "the broker to load the robot", loginWorks(user))
		rt := offline(t, user)
		if status, raw := refresh(t, rt); status != http.StatusOK {
			t.Fatalf("refresh before rotation: %d\n%s", status, raw)
		}
		b.passwords[user] = robotCredential(t, "rotate", "--file", robots, "ci")
		waitFor(t, "the rotated secret", loginWorks(user))
		ended(t, rt)
	})

	t.Run("htpasswd password change", func(t *testing.T) {
		rt := offline(t, "alice")
		if status, raw := refresh(t, rt); status != http.StatusOK {
			t.Fatalf("refresh before the password change: %d\n%s", status, raw)
		}
		b.passwords["alice"] = rand.Text()
		tollgate(t, b.passwords["alice"]+"\n", "htpasswd", "add", "--cost", "4", b.htpasswd, "alice")
		waitFor(t, "the new password", loginWorks("alice"))
		ended(t, rt)
	})

	t.Run("user removed and created again", func(t *testing.T) {
		rt := offline(t, "bob")
		if status, raw := refresh(t, rt); status != http.StatusOK {
			t.Fatalf("refresh before the user was removed: %d\n%s", status, raw)
		}
		tollgate(t, "", "htpasswd", "remove", b.htpasswd, "bob")
		tollgate(t, b.passwords["bob"]+"\n", "htpasswd", "add", "--cost", "4", b.htpasswd, "bob")
		// A user added last tells when the broker has the file with bob back.
		b.passwords["dave"] = rand.Text()
		tollgate(t, b.passwords["dave"]+"\n", "htpasswd", "add", "--cost", "4", b.htpasswd, "dave")
		waitFor(t, "the broker to load the new file", loginWorks("dave"))
		if !loginWorks("bob")() {
			t.Fatal("bob, created again with the same password, cannot log in")
		}
		ended(t, rt)
	})
}
