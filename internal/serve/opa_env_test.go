package serve

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/config"
	"github.com/tollgate/tollgate/test/testenv"
)

// A bearer token written ${TG_OPA_TOKEN} in the opa: section, as `opa run`
// reads it, comes from the environment: the bundle server gets it, and it
// shows neither in the log (at debug) of a check and of a start, nor in
// /readyz.
func TestOPABearerTokenFromTheEnvironment(t *testing.T) {
	const token = "env-bearer-s3cret"
	t.Setenv("TG_OPA_TOKEN", token)
	private, public := testenv.WriteES256KeyPair(t, t.TempDir())
	bundle, _ := signedBundleServer(t, private)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		bundle.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	path := testConfig(t)
	body, _ := os.ReadFile(path)
	opa := strings.Replace(opaConfig(t, srv.URL, public, filepath.Join(t.TempDir(), "opa")), "    url: "+srv.URL+"\n",
		"    url: "+srv.URL+"\n    credentials:\n      bearer:\n        token: ${TG_OPA_TOKEN}\n", 1)
	body = bytes.Replace(body, []byte("policy:\n  source: policy\n  decision_log: {enabled: true, path: decisions.log}\n"),
		[]byte("opa:\n  "+strings.ReplaceAll(strings.TrimSpace(opa), "\n", "\n  ")+"\n"), 1)
	os.WriteFile(path, body, 0o600)

	log := &testenv.SyncBuffer{}
	logger := slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	check, err := New(context.Background(), cfg, Options{Version: "test", Log: logger, Check: true})
	if err != nil {
		t.Fatal(err)
	}
	check.Close()
	rt, err := New(context.Background(), cfg, Options{Version: "test", Log: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	waitFor(t, "the bundle, downloaded with the token", func() bool { return rt.ready() == nil })
	readyz := strings.Join(rt.readyDetail(), "\n")
	for where, text := range map[string]string{"log": log.String(), "/readyz": readyz} {
		if strings.Contains(text, token) {
			t.Errorf("the token shows in the %s:\n%s", where, text)
		}
	}
	if !strings.Contains(log.String(), "REDACTED") {
		t.Errorf("the log at debug shows no request, so it proves nothing:\n%s", log.String())
	}
}
