package identity_test

import (
	"context"
	"testing"

	"github.com/tollgate/tollgate/identity"
)

// TestCheckCredential: a refresh needs the credential it was issued for; only
// a diagnostic lookup by name (policy eval --as) goes without one, and even
// it cannot pass a credential that differs.
func TestCheckCredential(t *testing.T) {
	ctx := context.Background()
	diag := identity.WithoutCredential(ctx)
	for _, tc := range []struct {
		name       string
		ctx        context.Context
		prev, curr string
		ok         bool
	}{
		{"same", ctx, "abc", "abc", true},
		{"changed", ctx, "abc", "xyz", false},
		{"none recorded", ctx, "", "xyz", false},
		{"diagnosis by name", diag, "", "xyz", true},
		{"diagnosis cannot pass a changed one", diag, "abc", "xyz", false},
	} {
		err := identity.CheckCredential(tc.ctx, identity.Identity{Credential: tc.prev}, tc.curr)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
