package ldap_test

import (
	"testing"

	"github.com/tollgate/tollgate/identity/identitytest"
	"github.com/tollgate/tollgate/test/ldaptest"
)

// TestConformance runs the password adapter cases against a real slapd.
func TestConformance(t *testing.T) {
	s := ldaptest.Start(t, "", directory)
	identitytest.RunPassword(t, identitytest.Password{
		Adapter: connector(t, baseConfig(s)), User: "alice", Password: "alice-pw", Subject: "alice", Unknown: "mallory",
		Remove: func(t *testing.T) { s.Delete("uid=alice," + people) },
	})
}
