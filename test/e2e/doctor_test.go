package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestDoctor: a registry and broker that work together pass; a mismatched
// issuer, a wrong certificate bundle and a realm on a loopback IP while the
// registry is on another host are each found, with the fix.
func TestDoctor(t *testing.T) {
	f := flavors[1]
	b := startBroker(t)
	reg := startRegistry(t, f, b)
	registryURL := "http://" + reg.host()

	out, err := tollgateErr(t, "doctor", "--config", b.config, "--registry-config", reg.config, "--registry-url", registryURL)
	if err != nil || strings.Contains(out, "PROBLEM") {
		t.Fatalf("a working registry fails doctor: %v\n%s", err, out)
	}
	for _, want := range []string{"issuers match", "trusts the key that signs now", "answers like a token endpoint"} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}

	original, err := os.ReadFile(reg.config)
	if err != nil {
		t.Fatal(err)
	}
	otherKeys := filepath.Join(t.TempDir(), "other")
	tollgate(t, "", "keygen", "--out", otherKeys, "--name", "x")

	cases := []struct {
		name, from, to, registryURL string
		want                        []string
	}{
		{"mismatched issuer", "issuer: \"" + issuer + "\"", `issuer: "someone-else"`, registryURL,
			[]string{`expects issuer "someone-else" but the broker signs "` + issuer + `"`, "set auth.token.issuer: " + issuer}},
		{"wrong cert bundle", "rootcertbundle: " + quote(filepath.Join(filepath.Dir(reg.config), "token-bundle.pem")), "rootcertbundle: " + quote(filepath.Join(otherKeys, "x.crt")), registryURL,
			[]string{"does not hold the certificate of the key that signs now", "run `tollgate registry-config --service " + f.service}},
		{"realm on a loopback IP", "realm: \"http://localhost:", "realm: \"http://127.0.0.1:", "https://registry.example.com",
			[]string{"127.0.0.1 is a private or loopback IP while the registry is at registry.example.com: crane refuses it", "serve the realm on a public name"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			changed := strings.Replace(string(original), tc.from, tc.to, 1)
			if changed == string(original) {
				t.Fatalf("%q not in the registry config:\n%s", tc.from, original)
			}
			cfg := filepath.Join(t.TempDir(), "config.yml")
			if err := os.WriteFile(cfg, []byte(changed), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := tollgateErr(t, "doctor", "--config", b.config, "--registry-config", cfg, "--registry-url", tc.registryURL)
			if err == nil {
				t.Fatalf("doctor passed:\n%s", out)
			}
			for _, want := range tc.want {
				if !strings.Contains(out, want) {
					t.Errorf("doctor output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

func quote(s string) string { return strconv.Quote(s) }

// TestTokenInspect: the CLI accepts a token the broker issued for a working
// registry and explains why bob's token does not cover a push.
func TestTokenInspect(t *testing.T) {
	f := flavors[0] // distribution 2.8, the stricter one
	b := startBroker(t)
	reg := startRegistry(t, f, b)
	tok := b.getToken(t, f.service, "bob", "repository:team/app:pull,push")
	args := []string{"token", "inspect", "--broker", b.url(""), "--registry-config", reg.config}

	out, err := tollgateErr(t, append(args, "--need", "repository:team/app:pull", tok)...)
	if err != nil || strings.Contains(out, "PROBLEM") {
		t.Fatalf("a good token: %v\n%s", err, out)
	}
	for _, want := range []string{"repository:team/app: pull", "chains to the registry's rootcertbundle", "verifies with published key"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, err = tollgateErr(t, append(args, "--need", "repository:team/app:push", tok)...)
	if err == nil || !strings.Contains(out, "lacks push on repository:team/app (it grants pull)") {
		t.Fatalf("bob's token for a push: %v\n%s", err, out)
	}
}

// TestPolicyEvalAs: `policy eval --as` looks the user up in the broker's
// connectors (no password) and explains each requested action.
func TestPolicyEvalAs(t *testing.T) {
	b := startBroker(t)
	out, err := tollgateErr(t, "policy", "eval", "--config", b.config, "--as", "bob", "--scope", "repository:team/app:pull,push")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"identity: bob via connector local", "service " + flavors[0].service, "granted: pull; denied: push", "because: bob is guest in project team"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, err = tollgateErr(t, "policy", "eval", "--config", b.config, "--as", "mallory", "--scope", "repository:team/app:pull")
	if err == nil || !strings.Contains(out, `no connector knows "mallory"`) {
		t.Fatalf("unknown user: %v\n%s", err, out)
	}
}
