package policies_test

import (
	"strings"
	"testing"

	"github.com/tollgate/tollgate/policies"
)

// A service whose credentials name one of tollgate's auth plugins would be
// sent another service's credentials (the plugin uses those it stands
// for): refused, in the boot document as in a discovered one (same code).
func TestOPACredentialsMayNotNameTollgatesPlugins(t *testing.T) {
	doc := `services:
  a: {url: "https://a.example", credentials: {bearer: {token: secret-of-a}}}
  b: {url: "https://b.example", credentials: {plugin: tollgate.limits.a}}
bundles:
  authz: {service: a, resource: /b.tar.gz}
`
	_, err := policies.OpenOPA([]byte(doc), policies.OPAOptions{ID: "t"})
	if err == nil || !strings.Contains(err.Error(), "services.b.credentials: plugin tollgate.limits.a is tollgate's own") {
		t.Fatalf("opening: %v, want services.b's plugin refused", err)
	}
}
