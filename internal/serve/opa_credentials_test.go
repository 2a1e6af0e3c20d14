package serve

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tollgate/tollgate/authz"
	"github.com/tollgate/tollgate/policies"
	"github.com/tollgate/tollgate/test/testenv"
)

// tlsServer serves h over TLS with the server certificate testenv.WriteTLS
// wrote into dir; with clientCerts, a client must present a certificate
// signed by that CA.
func tlsServer(t *testing.T, dir string, clientCerts bool, h http.Handler) *httptest.Server {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	if clientCerts {
		ca, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		srv.TLS.ClientAuth, srv.TLS.ClientCAs = tls.RequireAndVerifyClientCert, pool
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// withService adds lines (indented under the service) to the service of an
// opaConfig document.
func withService(doc, url, lines string) string {
	return strings.Replace(doc, "    url: "+url+"\n", "    url: "+url+"\n"+lines, 1)
}

// writeConfig writes doc to a file for `opa run -c`.
func writeConfig(t *testing.T, doc string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "opa.yaml")
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// opaRunAllowed asks `opa run --server` at base for the policy's allowed
// actions on in's first scope.
func opaRunAllowed(t *testing.T, base string, in authz.Input) map[string]bool {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"input": in})
	resp, err := http.Post(base+"/v1/data/registry/authz/allowed", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Result []struct{ Type, Name, Action string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatalf("opa answered %s: %v", resp.Status, err)
	}
	allowed := map[string]bool{}
	for _, r := range got.Result {
		if r.Type == in.Scopes[0].Type && r.Name == in.Scopes[0].Name {
			allowed[r.Action] = true
		}
	}
	return allowed
}

// decidesAsOPARun activates doc in tollgate and in `opa run --server` and
// requires the same decision, under the bundle's revision, from both.
func decidesAsOPARun(t *testing.T, e *policies.OPA, doc string) {
	t.Helper()
	waitFor(t, "tollgate to activate the bundle", e.Ready)
	d, err := e.Authorize(context.Background(), opaTestInput)
	if err != nil || d.Revision != "rev-1" {
		t.Fatalf("tollgate decided %+v, %v; want a decision under rev-1", d, err)
	}
	base, _ := startOPARun(t, writeConfig(t, doc))
	if theirs := opaRunAllowed(t, base, opaTestInput); fmt.Sprint(theirs) != fmt.Sprint(d.Allowed[0]) || !theirs["pull"] {
		t.Fatalf("opa allowed %v, tollgate %v", theirs, d.Allowed[0])
	}
}

// refusedUntilActive requires e, whose downloads fail, to fail closed: not
// ready, every decision ErrNoPolicy (503), and /readyz saying the bundle is
// not active and why. It returns /readyz's lines.
func refusedUntilActive(t *testing.T, e *policies.OPA, why string) string {
	t.Helper()
	var lines string
	waitFor(t, "a failed download", func() bool {
		lines = strings.Join(opaStatus(context.Background(), e), "\n")
		return strings.Contains(lines, "last error")
	})
	if _, err := e.Authorize(context.Background(), opaTestInput); e.Ready() || !errors.Is(err, authz.ErrNoPolicy) {
		t.Errorf("ready %v, decision error %v: want not ready and ErrNoPolicy (503)", e.Ready(), err)
	}
	if !strings.Contains(lines, "bundle authz: not active") || !strings.Contains(lines, why) {
		t.Errorf("/readyz does not say the bundle is not active because of %q:\n%s", why, lines)
	}
	return lines
}

// tokenEndpoint is an OAuth2 authorization server for the client
// credentials grant (RFC 6749 section 4.4): it gives token to the client
// id and secret it was made with, authenticated with HTTP Basic.
func tokenEndpoint(t *testing.T, id, secret, token string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if err := r.ParseForm(); err != nil || r.Method != http.MethodPost || r.PostForm.Get("grant_type") != "client_credentials" {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error": "unsupported_grant_type"}`)
			return
		}
		if !ok || u != id || p != secret {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error": "invalid_client"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": token, "token_type": "Bearer", "expires_in": 3600})
	})
}

// TestOPAOAuth2ClientCredentials: a service with OAuth2 client credentials
// gets its access token from a real token endpoint (https, the service's
// CA); the bundle server accepts only that token. tollgate and `opa run`,
// given the same document, activate the bundle and decide alike; the
// client secret and the access token show neither in tollgate's log (at
// debug), /readyz, nor its status reports. With a wrong secret, tollgate
// fails closed and /readyz says why.
func TestOPAOAuth2ClientCredentials(t *testing.T) {
	const id, secret, token = "tollgate", "client-s3cret", "access-t0ken"
	private, public := testenv.WriteES256KeyPair(t, t.TempDir())
	bundle, _ := signedBundleServer(t, private)
	tlsDir := t.TempDir()
	ca := testenv.WriteTLS(t, tlsDir)
	var mu sync.Mutex
	var reports []string
	mux := http.NewServeMux()
	mux.Handle("POST /token", tokenEndpoint(t, id, secret, token))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			mu.Lock()
			reports = append(reports, string(body))
			mu.Unlock()
			return
		}
		bundle.Config.Handler.ServeHTTP(w, r)
	})
	srv := tlsServer(t, tlsDir, false, mux)
	config := func(secret string) string {
		return withService(opaConfig(t, srv.URL, public, t.TempDir()), srv.URL, fmt.Sprintf(`    tls: {ca_cert: %s}
    credentials:
      oauth2: {token_url: %s/token, client_id: %s, client_secret: %s}
`, ca, srv.URL, id, secret)) + "status: {service: bundles}\n"
	}

	log := &testenv.SyncBuffer{}
	e := openLimitedOPA(t, config(secret), slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})))
	decidesAsOPARun(t, e, config(secret))
	waitFor(t, "a status report", func() bool { mu.Lock(); defer mu.Unlock(); return len(reports) > 0 })

	wrong := openLimitedOPA(t, config("not-the-secret"), slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})))
	failing := refusedUntilActive(t, wrong, "invalid_client")

	mu.Lock()
	defer mu.Unlock()
	for where, text := range map[string]string{"log": log.String(), "/readyz": strings.Join(opaStatus(context.Background(), e), "\n"),
		"/readyz while failing": failing, "status reports": strings.Join(reports, "\n")} {
		for _, s := range []string{secret, token, "not-the-secret"} {
			if strings.Contains(text, s) {
				t.Errorf("%q shows in the %s:\n%s", s, where, text)
			}
		}
	}
	if !strings.Contains(log.String(), "token_url") {
		t.Errorf("the log at debug shows no token request, so it proves nothing:\n%s", log.String())
	}
}

// TestOPAClientTLS: a bundle server that requires a client certificate
// serves tollgate and `opa run` given the same client_tls credentials, and
// both decide alike; without the certificate the handshake is refused and
// tollgate fails closed (503), /readyz saying so.
func TestOPAClientTLS(t *testing.T) {
	private, public := testenv.WriteES256KeyPair(t, t.TempDir())
	bundle, _ := signedBundleServer(t, private)
	tlsDir := t.TempDir()
	ca := testenv.WriteTLS(t, tlsDir)
	srv := tlsServer(t, tlsDir, true, bundle.Config.Handler)
	doc := opaConfig(t, srv.URL, public, t.TempDir())

	withCert := withService(doc, srv.URL, fmt.Sprintf(`    tls: {ca_cert: %s}
    credentials:
      client_tls: {cert: %s, private_key: %s}
`, ca, filepath.Join(tlsDir, "client.pem"), filepath.Join(tlsDir, "client.key")))
	decidesAsOPARun(t, openLimitedOPA(t, withCert, nil), withCert)

	fresh := opaConfig(t, srv.URL, public, t.TempDir()) // nothing persisted
	without := openLimitedOPA(t, withService(fresh, srv.URL, "    tls: {ca_cert: "+ca+"}\n"), nil)
	refusedUntilActive(t, without, "certificate")
}
