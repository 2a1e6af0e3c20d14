package docs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/test/testenv"
)

// The README's configuration reference is a configuration `serve --check`
// accepts, with its absolute paths mapped into a directory that holds the
// files it names.
func TestReadmeConfigReferenceIsValid(t *testing.T) {
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	readme, err := os.ReadFile(filepath.Join(repoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, _ := strings.Cut(string(readme), "## Configuration reference")
	_, block, _ := strings.Cut(after, "```yaml\n")
	block, after, _ = strings.Cut(block, "```")
	_, opaBlock, _ := strings.Cut(after, "```yaml\n")
	opaBlock, _, _ = strings.Cut(opaBlock, "```")
	if strings.Count(block, "\n") < 50 {
		t.Fatalf("no configuration reference found in README.md:\n%s", block)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(paths.ReplaceAllString(block, "${1}"+dir+"/${2}/")), 0o600); err != nil {
		t.Fatal(err)
	}
	// The files the reference names.
	sh := func(script string) {
		t.Helper()
		cmd := exec.Command("sh", "-ec", script)
		cmd.Dir, cmd.Env = dir, append(os.Environ(), "TG="+tollgateBin, "ROOT="+repoRoot())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
	}
	sh(`mkdir -p etc/tollgate run/secrets var/lib var/run/secrets/kubernetes.io/serviceaccount
		mkdir -m 0700 var/lib/tollgate
		"$TG" keygen --out etc/tollgate/keys/registry --name a >/dev/null
		"$TG" keygen --out etc/tollgate --name tls >/dev/null
		cp etc/tollgate/tls.crt etc/tollgate/ldap-ca.pem
		cp etc/tollgate/tls.crt var/run/secrets/kubernetes.io/serviceaccount/ca.crt
		touch etc/tollgate/htpasswd etc/tollgate/htpasswd.groups
		"$TG" robot create ci --scope repository:x:pull --expires 1d --file etc/tollgate/robots.json >/dev/null 2>&1
		echo secret > run/secrets/ldap-bind && echo secret > run/secrets/redis && echo secret > run/secrets/sso-client
		head -c 32 /dev/urandom | base64 > run/secrets/session-key`)
	// policy.signing asks for a signed bundle: the policy directory is one.
	key, pub := testenv.WriteES256KeyPair(t, dir)
	sh(`cp ` + pub + ` etc/tollgate/bundle-pub.pem
		"$TG" bundle build -o b.tar.gz --signing-key ` + key + ` --signing-alg ES256 "$ROOT/policies/default"
		mkdir etc/tollgate/policy && tar -xzf b.tar.gz -C etc/tollgate/policy`)
	out, err := exec.Command(tollgateBin, "serve", "--config", cfg, "--check").CombinedOutput()
	if err != nil {
		t.Fatalf("serve --check on the README's configuration reference: %v\n%s", err, out)
	}

	// The opa: section that follows, in place of policy.source and its
	// signing (refused with opa:).
	if !strings.HasPrefix(opaBlock, "opa:") {
		t.Fatalf("no opa: section after the configuration reference in README.md:\n%s", opaBlock)
	}
	withOPA := withoutPolicySource(block) + opaBlock
	if err := os.WriteFile(cfg, []byte(paths.ReplaceAllString(withOPA, "${1}"+dir+"/${2}/")), 0o600); err != nil {
		t.Fatal(err)
	}
	sh(`echo secret > run/secrets/bundle-token`)
	out, err = exec.Command(tollgateBin, "serve", "--config", cfg, "--check").CombinedOutput()
	if err != nil {
		t.Fatalf("serve --check on the README's opa: section: %v\n%s", err, out)
	}
}

// withoutPolicySource drops policy.source and policy.signing (the lines
// indented under it) from the configuration reference.
func withoutPolicySource(block string) string {
	var out []string
	skipping := false
	for _, line := range strings.SplitAfter(block, "\n") {
		switch {
		case strings.HasPrefix(line, "  source:"):
			continue
		case strings.HasPrefix(line, "  signing:"):
			skipping = true
			continue
		case skipping && strings.HasPrefix(line, "    "):
			continue
		}
		skipping = false
		out = append(out, line)
	}
	return strings.Join(out, "")
}
