package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Where a URL's parts go in OPA's service and bundle, and polling in
// OPA's whole seconds (rounded up: a bundle is never polled more often
// than configured, and at least once a second).
func TestShortFormOPASplitsTheURL(t *testing.T) {
	cases := []struct{ source, polling, want string }{
		{"https://b.example.com/bundles/authz.tar.gz", "",
			"url=https://b.example.com/bundles resource=authz.tar.gz min=10 max=30"},
		{"https://u:p@b.example.com:8443/a/b/c.tar.gz?X-Amz-Signature=s&x=1", "",
			"url=https://u:p@b.example.com:8443/a/b resource=c.tar.gz?X-Amz-Signature=s&x=1 min=10 max=30"},
		{"http://127.0.0.1:8181/authz.tar.gz", "  polling: {min_delay: 100ms, max_delay: 2500ms}\n",
			"url=http://127.0.0.1:8181 resource=authz.tar.gz min=1 max=3"},
		{"https://b.example.com", "", "url=https://b.example.com resource= min=10 max=30"},
	}
	for _, c := range cases {
		cfg, err := Load(writeConfig(t, strings.Replace(validConfig, "  source: policy\n", "  source: "+c.source+"\n"+c.polling, 1)))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := cfg.ShortFormOPA()
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Services map[string]struct{ URL string }
			Bundles  map[string]struct {
				Resource string
				Polling  struct {
					Min int `json:"min_delay_seconds"`
					Max int `json:"max_delay_seconds"`
				}
			}
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatal(err)
		}
		b := doc.Bundles[ShortFormName]
		got := fmt.Sprintf("url=%s resource=%s min=%d max=%d", doc.Services[ShortFormName].URL, b.Resource, b.Polling.Min, b.Polling.Max)
		if got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.source, got, c.want)
		}
	}
}

// A local source is a file:// bundle triggered by hand (tollgate triggers
// it when the files change), read through ..data on a ConfigMap mount.
func TestShortFormOPAOfALocalSource(t *testing.T) {
	plain, mount := t.TempDir(), t.TempDir()
	wd, _ := os.Getwd()
	if err := os.Mkdir(filepath.Join(mount, "..2026_11_30"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..2026_11_30", filepath.Join(mount, "..data")); err != nil {
		t.Fatal(err)
	}
	for source, want := range map[string]string{
		plain:                            "file://" + plain,
		filepath.Join(plain, "b.tar.gz"): "file://" + filepath.Join(plain, "b.tar.gz"),
		mount:                            "file://" + mount + "/..data/",
		"policy":                         "file://" + filepath.Join(wd, "policy"),
	} {
		cfg := &Config{Policy: PolicyConfig{Source: source}}
		raw, err := cfg.ShortFormOPA()
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Services map[string]any
			Bundles  map[string]struct{ Resource, Trigger, Service string }
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatal(err)
		}
		b := doc.Bundles[ShortFormName]
		if b.Resource != want || b.Trigger != "manual" || b.Service != "" || doc.Services != nil {
			t.Errorf("%s: %s, want resource %s, trigger manual and no service", source, raw, want)
		}
	}
}
