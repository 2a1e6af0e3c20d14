package e2e

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base32"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestKeyRotationKeepsOldTokensValidAndRefusesUnknownKeys(t *testing.T) {
	// Key a has signed for an hour; key b takes over at a moment chosen
	// before the set-up (a broker, two registries, two pushes), which must
	// fit before it. On a loaded two-core machine it once took over twelve
	// seconds: an attempt whose set-up ran late proves nothing and is
	// made again with a longer window, never passed.
	for _, window := range []time.Duration{12 * time.Second, 40 * time.Second} {
		late := false
		t.Run(fmt.Sprintf("window %v", window), func(t *testing.T) { late = rotateKeys(t, window) })
		if !late {
			return
		}
	}
	t.Fatal("the set-up never fit before the rotation; the test proved nothing")
}

// rotateKeys runs the rotation with key b signing from window from now (a
// whole second: keygen takes RFC 3339 seconds). It returns true, having
// checked nothing, when the set-up took longer than the window.
func rotateKeys(t *testing.T, window time.Duration) (late bool) {
	rotation := time.Now().Add(window).Truncate(time.Second).Add(time.Second)
	e := newEnv(t, keygenArgs{"a", time.Now().Add(-time.Hour)}, keygenArgs{"b", rotation})
	keyA, keyB := loadKey(t, e.b.keys, "a"), loadKey(t, e.b.keys, "b")

	// Key c was never given to the registries.
	rogueDir := filepath.Join(t.TempDir(), "rogue")
	tollgate(t, "", "keygen", "--out", rogueDir, "--name", "c", "--not-before", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339))
	keyC := loadKey(t, rogueDir, "c")

	const scope = "repository:team/app:pull"
	before := map[string]string{} // by service
	for _, r := range e.regs {
		pushImage(t, r, e.b.getToken(t, r.flavor.service, "alice", "repository:team/app:pull,push"), "team/app", "v1")
		before[r.flavor.service] = e.b.getToken(t, r.flavor.service, "alice", scope)
	}
	if time.Now().After(rotation) {
		t.Logf("set-up ran %v past the moment key b starts signing; trying again", -time.Until(rotation))
		return true
	}
	for svc, tok := range before {
		expectSignedBy(t, tok, keyA, "token taken before the rotation for "+svc)
	}

	time.Sleep(time.Until(rotation) + time.Second)
	after := map[string]string{}
	for _, r := range e.regs {
		after[r.flavor.service] = e.b.getToken(t, r.flavor.service, "alice", scope)
		expectSignedBy(t, after[r.flavor.service], keyB, "token taken after the rotation for "+r.flavor.service)
	}

	e.each(t, func(t *testing.T, r *registry) {
		tags := r.url("/v2/team/app/tags/list")
		for _, tc := range []struct {
			name  string
			token string
		}{
			{"old key, taken before the rotation", before[r.flavor.service]},
			{"new key, taken after the rotation", after[r.flavor.service]},
			// The control for the refusal below: the same hand-made
			// token, signed by a bundled key, is accepted.
			{"hand-signed with the old key", keyA.sign(t, r.flavor.service)},
		} {
			resp := do(t, "GET", tags, tc.token, nil)
			if resp.status != http.StatusOK || !strings.Contains(string(resp.body), `"v1"`) {
				t.Errorf("%s: want 200 listing v1:\n%s", tc.name, resp)
			}
		}
		do(t, "GET", tags, keyC.sign(t, r.flavor.service), nil).expectInvalidToken(t)
	})
	return false
}

// signingKey is a key pair written by `tollgate keygen`.
type signingKey struct {
	name string
	priv crypto.Signer
	cert *x509.Certificate
}

func loadKey(t testing.TB, dir, name string) signingKey {
	t.Helper()
	keyPEM, err := os.ReadFile(filepath.Join(dir, name+".key"))
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, name+".crt"))
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := pem.Decode(keyPEM)
	cb, _ := pem.Decode(certPEM)
	if kb == nil || cb == nil {
		t.Fatalf("%s/%s.key or .crt is not PEM", dir, name)
	}
	priv, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		t.Fatalf("%s.key: %v", name, err)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		t.Fatalf("%s.crt: %v", name, err)
	}
	return signingKey{name: name, priv: priv.(crypto.Signer), cert: cert}
}

// libtrustKID is the key id distribution 2.8 computes for a public key:
// SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits, base32, in
// twelve colon-separated groups of four.
func (k signingKey) libtrustKID(t testing.TB) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.cert.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	s := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:30])
	var groups []string
	for i := 0; i < len(s); i += 4 {
		groups = append(groups, s[i:i+4])
	}
	return strings.Join(groups, ":")
}

// expectSignedBy checks a token's kid and x5c name key k.
func expectSignedBy(t testing.TB, token string, k signingKey, what string) {
	t.Helper()
	h := decodeToken(t, token).header
	x5c, _ := h["x5c"].([]any)
	var leaf string
	if len(x5c) > 0 {
		leaf, _ = x5c[0].(string)
	}
	if h["kid"] != k.libtrustKID(t) || leaf != base64.StdEncoding.EncodeToString(k.cert.Raw) {
		t.Fatalf("%s: header kid %v, x5c[0] %.20s..., want key %s (kid %s, x5c %.20s...)",
			what, h["kid"], leaf, k.name, k.libtrustKID(t), base64.StdEncoding.EncodeToString(k.cert.Raw))
	}
}

// sign makes a token of the broker's shape (alice, pull on team/app) with
// jwt/v5 directly, not with tollgate's signer.
func (k signingKey) sign(t testing.TB, service string) string {
	t.Helper()
	var method jwt.SigningMethod
	switch k.priv.(type) {
	case *ecdsa.PrivateKey:
		method = jwt.SigningMethodES256
	case *rsa.PrivateKey:
		method = jwt.SigningMethodRS256
	default:
		t.Fatalf("key %s: unexpected type %T", k.name, k.priv)
	}
	now := time.Now()
	tok := jwt.NewWithClaims(method, jwt.MapClaims{
		"iss": issuer, "sub": "alice", "aud": service,
		"exp": now.Add(5 * time.Minute).Unix(), "nbf": now.Add(-5 * time.Second).Unix(), "iat": now.Unix(),
		"jti":    rand.Text(),
		"access": []access{{"repository", "team/app", []string{"pull"}}},
	})
	tok.Header["kid"] = k.libtrustKID(t)
	tok.Header["x5c"] = []string{base64.StdEncoding.EncodeToString(k.cert.Raw)}
	s, err := tok.SignedString(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
