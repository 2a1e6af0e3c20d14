package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Without --service, token inspect checks the audience against the service
// of the broker it finds (--config, or the development state); an explicit
// --service wins, and with no configuration the audience is not checked.
func TestTokenInspectDefaultsToTheConfiguredService(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	if _, _, err := devConfig(state, "127.0.0.1:5001"); err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"aud": "elsewhere.test", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte("not a registry key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, service string // service: what the audience is checked against, "" none
		args          []string
	}{
		{"config file", "registry.test", []string{"--config", writeConfig(t, validConfig)}},
		{"development state", devService, []string{"--state-dir", state}},
		{"explicit --service", "other.test", []string{"--state-dir", state, "--service", "other.test"}},
		{"no configuration", "", []string{"--state-dir", filepath.Join(t.TempDir(), "none")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _ := run(t, "", append(append([]string{"token", "inspect"}, tc.args...), tok)...)
			if !strings.Contains(out, "audience") {
				t.Fatalf("no audience finding:\n%s", out)
			}
			checked := strings.Contains(out, "is not the registry's service")
			if want := `aud "elsewhere.test" is not the registry's service "` + tc.service + `"`; tc.service != "" && !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
			if tc.service == "" && checked {
				t.Errorf("checked the audience without any configuration:\n%s", out)
			}
		})
	}
}
