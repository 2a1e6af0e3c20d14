package config

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// ${VAR} in the opa: section is replaced as `opa run` replaces it in its
// configuration file: a defined variable by its value (empty included), an
// undefined one left as written; a plain value is read again (a number
// stays a number), a quoted one stays a string. The replacement is a
// value, never YAML: a variable cannot add keys.
func TestOPADocumentExpandsEnvironmentVariables(t *testing.T) {
	t.Setenv("TG_TEST_TOKEN", "tok:en # not a comment")
	t.Setenv("TG_TEST_DELAY", "7")
	t.Setenv("TG_TEST_EMPTY", "")
	t.Setenv("TG_TEST_INJECT", "x\npersistence_directory: /tmp/evil")
	c, err := Load(writeConfig(t, strings.Replace(validConfig, "policy:\n  source: policy\n", `opa:
  services:
    s:
      url: https://${TG_TEST_INJECT}.example/${TG_TEST_EMPTY}
      credentials: {bearer: {token: "${TG_TEST_TOKEN}"}}
  bundles:
    b:
      service: s
      resource: "/${TG_TEST_UNDEFINED_42}/b"
      polling:
        min_delay_seconds: ${TG_TEST_DELAY}
        max_delay_seconds: "${TG_TEST_DELAY}"
`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := c.OPADocument()
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Services map[string]struct {
			URL         string
			Credentials struct{ Bearer struct{ Token string } }
		}
		Bundles map[string]struct {
			Resource string
			Polling  map[string]any
		}
		PersistenceDirectory *string `yaml:"persistence_directory"`
	}
	if err := yaml.Unmarshal(doc, &got); err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	for what, c := range map[string][2]any{
		"token":       {got.Services["s"].Credentials.Bearer.Token, "tok:en # not a comment"},
		"url":         {got.Services["s"].URL, "https://x\npersistence_directory: /tmp/evil.example/"},
		"undefined":   {got.Bundles["b"].Resource, "/${TG_TEST_UNDEFINED_42}/b"},
		"plain int":   {got.Bundles["b"].Polling["min_delay_seconds"], 7},
		"quoted":      {got.Bundles["b"].Polling["max_delay_seconds"], "7"},
		"no injected": {got.PersistenceDirectory, (*string)(nil)},
	} {
		if c[0] != c[1] {
			t.Errorf("%s: got %#v, want %#v\n%s", what, c[0], c[1], doc)
		}
	}
}
