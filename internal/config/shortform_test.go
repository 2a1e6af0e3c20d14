package config

import (
	"encoding/json"
	"fmt"
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
	cfg, err := Load(writeConfig(t, validConfig))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.ShortFormOPA(); err == nil {
		t.Error("a directory source was written as OPA's services and bundles")
	}
}
