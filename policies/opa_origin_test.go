package policies

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// The guard lets a service's credentials reach the service and the https
// token realm the service names in its challenge, and nothing else: not
// a realm over plain http, not an https host nobody named.
func TestCredentialGuardSendsCredentialsToTheServiceAndItsHTTPSRealmOnly(t *testing.T) {
	var mu sync.Mutex
	got := map[string]string{} // server → the Authorization and X-Key it was sent
	record := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			got[name] = r.Header.Get("Authorization") + "|" + r.Header.Get("X-Key")
			mu.Unlock()
		}
	}
	realm := httptest.NewTLSServer(record("realm"))
	t.Cleanup(realm.Close)
	other := httptest.NewTLSServer(record("other"))
	t.Cleanup(other.Close)
	plainRealm := httptest.NewServer(record("plain realm"))
	t.Cleanup(plainRealm.Close)
	service := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record("service")(w, r)
		w.Header().Add("WWW-Authenticate", `Bearer realm="`+realm.URL+`/token",service="reg"`)
		w.Header().Add("WWW-Authenticate", `Bearer realm="`+plainRealm.URL+`/token"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(service.Close)

	client := &http.Client{Transport: newCredentialGuard(realm.Client().Transport, service.URL, []string{"X-Key"})}
	for _, u := range []string{service.URL + "/v2/", realm.URL + "/token", plainRealm.URL + "/token", other.URL + "/x"} {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Authorization", "Bearer s3cret")
		req.Header.Set("X-Key", "k3y")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if req.Header.Get("Authorization") == "" {
			t.Fatal("the guard changed the caller's request")
		}
	}
	want := map[string]string{"service": "Bearer s3cret|k3y", "realm": "Bearer s3cret|k3y", "plain realm": "|", "other": "|"}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s was sent %q, want %q", name, got[name], w)
		}
	}
}
