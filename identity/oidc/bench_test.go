package oidc

import (
	"context"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkVerify measures one token's verification: with the issuer's keys
// cached (the steady state: parse, key lookup, signature, claims, mapping),
// with a different token each time, and cold (a new verifier that fetches
// discovery and JWKS from a loopback server first).
func BenchmarkVerify(b *testing.B) {
	ti, c := newTestIssuer(b), newClock()
	ctx := context.Background()
	for _, alg := range []struct {
		name   string
		method jwt.SigningMethod
		kid    string
		key    any
	}{
		{"RS256", jwt.SigningMethodRS256, "rsa1", rsaKey1},
		{"ES256", jwt.SigningMethodES256, "ec1", ecKey1},
	} {
		b.Run("keys-cached/same-token/"+alg.name, func(b *testing.B) {
			v := newVerifier(b, c, ti.config())
			tok := sign(b, alg.method, alg.kid, alg.key, ti.claims(c.now()))
			if _, ok, err := v.Verify(ctx, tok); !ok {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, ok, err := v.Verify(ctx, tok); !ok {
					b.Fatal(err)
				}
			}
		})
		b.Run("keys-cached/fresh-token/"+alg.name, func(b *testing.B) {
			v := newVerifier(b, c, ti.config())
			toks := make([]string, 256)
			for i := range toks {
				cl := ti.claims(c.now())
				cl["jti"] = i
				toks[i] = sign(b, alg.method, alg.kid, alg.key, cl)
			}
			if _, ok, err := v.Verify(ctx, toks[0]); !ok {
				b.Fatal(err)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, ok, err := v.Verify(ctx, toks[i%len(toks)]); !ok {
					b.Fatal(err)
				}
				i++
			}
		})
		b.Run("cold/"+alg.name, func(b *testing.B) {
			tok := sign(b, alg.method, alg.kid, alg.key, ti.claims(c.now()))
			b.ReportAllocs()
			for b.Loop() {
				v := newVerifier(b, c, ti.config())
				if _, ok, err := v.Verify(ctx, tok); !ok {
					b.Fatal(err)
				}
			}
		})
	}
}
