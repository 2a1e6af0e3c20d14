package serve

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// thief is a server that is not the configured service; it records every
// Authorization header it is sent.
func thief(t *testing.T) (*httptest.Server, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		http.Error(w, "no", http.StatusNotFound)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return cloneStrings(seen)
	}
}

func cloneStrings(s []string) []string { return append([]string(nil), s...) }

// TestOPACredentialsStayWithTheServiceOrigin: a service's credentials go
// to the service's origin only. The policy.source path has this
// (bundles: TestBearerTokenStaysWithTheOrigin,
// TestFetchRefusesARedirectFromHTTPSToHTTP); on the opa: path OPA's OCI
// downloader adds the credentials to every request without an
// Authorization header (a token realm on another host, a redirect), and
// its HTTP downloader follows https→http redirects on the same host name
// with the header copied.
func TestOPACredentialsStayWithTheServiceOrigin(t *testing.T) {
	const token = "s3cret-origin-token"
	t.Run("oci token realm on another host", func(t *testing.T) {
		other, seen := thief(t)
		registry := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q,service="x"`, other.URL+"/token"))
			w.WriteHeader(http.StatusUnauthorized)
		}))
		t.Cleanup(registry.Close)
		host := strings.TrimPrefix(registry.URL, "http://")
		doc := fmt.Sprintf(`services:
  reg:
    url: %s
    type: oci
    credentials: {bearer: {token: %s}}
bundles:
  p: {service: reg, resource: "%s/opa/policy:latest", polling: {min_delay_seconds: 1, max_delay_seconds: 1}}
persistence_directory: %s
`, registry.URL, token, host, t.TempDir())
		e := openLimitedOPA(t, doc, nil)
		waitFor(t, "a failed download", func() bool {
			return strings.Contains(strings.Join(opaStatus(context.Background(), e), "\n"), "last error")
		})
		for _, h := range seen() {
			if h != "" {
				t.Errorf("the token realm on %s, not the service, was sent %q", other.URL, h)
			}
		}
	})
	t.Run("https service redirecting to http", func(t *testing.T) {
		plain, seen := thief(t)
		_, port, _ := strings.Cut(strings.TrimPrefix(plain.URL, "http://"), ":")
		tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://127.0.0.1:"+port+"/bundle.tar.gz", http.StatusFound)
		}))
		t.Cleanup(tlsSrv.Close)
		doc := fmt.Sprintf(`services:
  acme:
    url: %s
    allow_insecure_tls: true
    credentials: {bearer: {token: %s}}
bundles:
  p: {service: acme, resource: /bundle.tar.gz, polling: {min_delay_seconds: 1, max_delay_seconds: 1}}
persistence_directory: %s
`, tlsSrv.URL, token, t.TempDir())
		e := openLimitedOPA(t, doc, nil)
		waitFor(t, "a failed download", func() bool {
			return strings.Contains(strings.Join(opaStatus(context.Background(), e), "\n"), "last error")
		})
		for _, h := range seen() {
			if strings.Contains(h, token) {
				t.Errorf("the https service's token was sent in clear to %s: %q", plain.URL, h)
			}
		}
	})
}
