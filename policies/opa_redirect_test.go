package policies_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policies"
)

// startOPA starts OPA's plugins on doc and waits until the bundle is
// active or wait has passed.
func startOPA(t *testing.T, doc string, wait time.Duration) *policies.OPA {
	t.Helper()
	e, err := policies.OpenOPA([]byte(doc), policies.OPAOptions{ID: "t", PersistenceDirectory: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Stop(context.Background()) })
	for deadline := time.Now().Add(wait); !e.Ready() && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	return e
}

// recorder serves a bundle and keeps the headers it was asked with.
type recorder struct {
	body    []byte
	mu      sync.Mutex
	headers []http.Header
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec.mu.Lock()
	rec.headers = append(rec.headers, r.Header.Clone())
	rec.mu.Unlock()
	w.Write(rec.body)
}

func (rec *recorder) seen() []http.Header {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.headers
}

// A service's credentials and own headers go to its origin only, as
// policy.source's bearer token does: net/http alone sends Authorization to
// another port of the same host, and every other header anywhere.
func TestOPAServiceCredentialsStayAtTheirOrigin(t *testing.T) {
	elsewhere := &recorder{body: manyFileBundle(t, 0, 2)}
	other := httptest.NewServer(elsewhere)
	defer other.Close()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/b.tar.gz", http.StatusFound)
	}))
	defer origin.Close()
	e := startOPA(t, fmt.Sprintf(`services:
  s:
    url: %s
    headers: {X-Api-Key: k3y}
    credentials: {bearer: {token: t0ken}}
bundles:
  authz: {service: s, resource: b.tar.gz}
`, origin.URL), 20*time.Second)
	if !e.Ready() {
		t.Fatalf("the bundle behind the redirect was not activated: %+v", e.Bundles(context.Background()))
	}
	for _, h := range elsewhere.seen() {
		if h.Get("Authorization") != "" || h.Get("X-Api-Key") != "" {
			t.Errorf("the redirect's target, another origin, got the credentials: Authorization %q, X-Api-Key %q",
				h.Get("Authorization"), h.Get("X-Api-Key"))
		}
	}
}

// A bundle server on https that redirects to http is not followed: the
// policy would travel in clear.
func TestOPAServiceRedirectFromHTTPSToHTTPIsRefused(t *testing.T) {
	plain := &recorder{body: manyFileBundle(t, 0, 2)}
	other := httptest.NewServer(plain)
	defer other.Close()
	origin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/b.tar.gz", http.StatusFound)
	}))
	defer origin.Close()
	e := startOPA(t, fmt.Sprintf(`services:
  s: {url: %s, allow_insecure_tls: true}
bundles:
  authz: {service: s, resource: b.tar.gz}
`, origin.URL), 3*time.Second)
	if e.Ready() || len(plain.seen()) > 0 {
		t.Errorf("a redirect from https to http was followed (active: %v, plain http asked %d times)", e.Ready(), len(plain.seen()))
	}
}
