// Package identitytest holds what tests of identity adapters share: the
// conformance suites every password and token adapter runs, and helpers.
package identitytest

import (
	"testing"

	"github.com/tollgate/tollgate/identity"
)

// Connector is identity.NewConnector for tests: it fails tb on an adapter
// with no capability.
func Connector(tb testing.TB, name string, adapter any) identity.Connector {
	tb.Helper()
	c, err := identity.NewConnector(name, adapter)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}
