package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// The banner's anonymous pull is from the public project "library", the one
// the default policy opens to everyone, and it says team is private.
func TestDevBannerPullsAnonymouslyFromThePublicProject(t *testing.T) {
	var out bytes.Buffer
	(&devSetup{stateDir: "/s", registry: "/s/registry.yml"}).printBanner(&out, "127.0.0.1:5001")
	banner := out.String()
	_, afterLogout, ok := strings.Cut(banner, "crane auth logout")
	if !ok {
		t.Fatalf("the banner never logs out to show an anonymous pull:\n%s", banner)
	}
	anon := regexp.MustCompile(`crane ls [^/\s]+/(\S+)\s+# anonymous: (\w+)`).FindAllStringSubmatch(afterLogout, -1)
	want := map[string]string{"library/hello": "allowed", "team/app": "denied"}
	if len(anon) != len(want) {
		t.Fatalf("anonymous pulls %q, want library/hello allowed and team/app denied:\n%s", anon, banner)
	}
	for _, m := range anon {
		if want[m[1]] != m[2] {
			t.Errorf("anonymous pull of %s says %s, want %s", m[1], m[2], want[m[1]])
		}
	}
	if strings.Contains(banner, "library/hello") && !strings.Contains(banner, "-t localhost:5000/library/hello") {
		t.Errorf("the banner pulls library/hello without pushing it first:\n%s", banner)
	}
}
