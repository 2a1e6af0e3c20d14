package e2e

import (
	"net/http"
	"net/url"
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
