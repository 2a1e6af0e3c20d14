package broker

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// Sealer encrypts what the broker keeps of an identity provider (its
// refresh tokens, its device codes in the handles given to clients) with
// AES-GCM under a key every replica shares. The purpose is bound as
// additional data, so a value sealed for one use never opens for another.
type Sealer struct {
	aead cipher.AEAD
}

// SealKeySize is the key length: AES-256.
const SealKeySize = 32

// NewSealer makes a Sealer of a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != SealKeySize {
		return nil, fmt.Errorf("session key: want %d bytes, got %d", SealKeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts plain for purpose: a random nonce, then the ciphertext.
func (s *Sealer) Seal(plain []byte, purpose string) []byte {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	_, _ = rand.Read(nonce) // crypto/rand.Read never fails (Go 1.24+)
	return s.aead.Seal(nonce, nonce, plain, []byte(purpose))
}

var errUnsealed = errors.New("sealed value does not open: altered, another key, or another purpose")

// Open decrypts what Seal made for the same purpose.
func (s *Sealer) Open(sealed []byte, purpose string) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, errUnsealed
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(purpose))
	if err != nil {
		return nil, errUnsealed
	}
	return plain, nil
}
