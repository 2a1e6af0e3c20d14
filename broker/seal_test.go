package broker

import (
	"bytes"
	"testing"
)

func TestSealerOpensOnlyItsOwnPurposeAndKey(t *testing.T) {
	key := bytes.Repeat([]byte{7}, SealKeySize)
	s, err := NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	sealed := s.Seal([]byte("idp-refresh-token"), "p1")
	if bytes.Contains(sealed, []byte("idp-refresh-token")) {
		t.Fatal("sealed value holds the plain text")
	}
	if again := s.Seal([]byte("idp-refresh-token"), "p1"); bytes.Equal(again, sealed) {
		t.Fatal("two seals of the same value are equal: the nonce is not random")
	}
	if plain, err := s.Open(sealed, "p1"); err != nil || string(plain) != "idp-refresh-token" {
		t.Fatalf("Open = %q, %v", plain, err)
	}
	if _, err := s.Open(sealed, "p2"); err == nil {
		t.Error("opened for another purpose")
	}
	other, _ := NewSealer(bytes.Repeat([]byte{8}, SealKeySize))
	if _, err := other.Open(sealed, "p1"); err == nil {
		t.Error("opened with another key")
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := s.Open(sealed, "p1"); err == nil {
		t.Error("opened an altered value")
	}
	if _, err := s.Open([]byte("short"), "p1"); err == nil {
		t.Error("opened a truncated value")
	}
	if _, err := NewSealer(key[:16]); err == nil {
		t.Error("a 16-byte key accepted")
	}
}
