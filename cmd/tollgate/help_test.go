package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/config"
)

// `tollgate --help` names every kind of identity the broker can use.
func TestHelpNamesEveryConnectorType(t *testing.T) {
	out, err := run(t, "", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range config.ConnectorTypes() {
		if !strings.Contains(strings.ToLower(out), typ) {
			t.Errorf("tollgate --help does not name the %s connector:\n%s", typ, out)
		}
	}
}

// `serve --help` names every endpoint of the README's endpoint table.
func TestServeHelpNamesEveryEndpoint(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	endpoints := regexp.MustCompile("(?m)^\\| `(?:GET|POST) (/[^` ?\\[]*)").FindAllStringSubmatch(string(readme), -1)
	if len(endpoints) < 5 {
		t.Fatalf("found %d endpoints in the README's table", len(endpoints))
	}
	out, err := run(t, "", "serve", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range endpoints {
		if !strings.Contains(out, e[1]) {
			t.Errorf("serve --help does not name %s:\n%s", e[1], out)
		}
	}
}
