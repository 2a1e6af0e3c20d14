package oidc

import (
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/identity/identitytest"
)

// TestConformance runs the token adapter cases against an httptest issuer.
func TestConformance(t *testing.T) {
	ti, other, c := newTestIssuer(t), newTestIssuer(t), newClock()
	identitytest.RunToken(t, identitytest.Token{
		Adapter: newVerifier(t, c, ti.config()),
		Token:   sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, ti.claims(c.now())),
		Subject: "alice",
		Forged:  sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey2, ti.claims(c.now())),
		Foreign: sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey1, other.claims(c.now())),
		// The issuer is no longer trusted: only the other one is.
		Remove: func(t *testing.T) identitytest.TokenAdapter { return newVerifier(t, c, other.config()) },
	})
}
