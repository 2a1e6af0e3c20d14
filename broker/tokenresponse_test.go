package broker

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The hand-written token response must be byte for byte what encoding/json's
// Encoder writes, whatever the strings hold.
func TestTokenResponseMatchesEncodingJSON(t *testing.T) {
	for _, r := range []tokenResponse{
		{Token: "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln", AccessToken: "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln", ExpiresIn: 300, IssuedAt: "2026-01-02T03:04:05Z"},
		{Token: "a.b.c", AccessToken: "a.b.c", ExpiresIn: 0, IssuedAt: "2026-01-02T03:04:05Z", RefreshToken: "r.s.t"},
		{Token: "", AccessToken: "", ExpiresIn: -1},
		{Token: "a.b.c", AccessToken: "a.b.c", IssuedAt: `quote" back\ <html> & é` + "\x00\x7f\n"},
	} {
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(r); err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		writeTokenResponse(w, &r)
		if w.Code != 200 || w.Body.String() != want.String() || w.Header().Get("Content-Length") != strconv.Itoa(want.Len()) ||
			w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("writeTokenResponse: %d %v\n got %s\nwant %s", w.Code, w.Header(), w.Body, want.String())
		}
	}
}

// writeTokenResponse copies tokens without escaping: what Key.sign makes
// must never need it, whatever the claims hold.
func TestSignedTokensNeedNoJSONEscaping(t *testing.T) {
	for _, typ := range []KeyType{KeyEC, KeyRSA} {
		keyPEM, certPEM, err := GenerateKey(typ, "t", time.Now().Add(-time.Minute), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		k, err := ParseKeyPair(keyPEM, certPEM)
		if err != nil {
			t.Fatal(err)
		}
		svc := &Service{Name: "svc<&>\"", Issuer: "iss\n\\"}
		tok, _, err := svc.signAccess(k, "sub\"<>&\x00é", []AccessEntry{{Type: "repository", Name: "a\"b", Actions: []string{"pull"}}}, time.Now(), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if !jsonPlain(tok) || strings.Count(tok, ".") != 2 {
			t.Errorf("%s token %q needs JSON escaping", typ, tok)
		}
	}
}
