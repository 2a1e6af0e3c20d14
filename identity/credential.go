package identity

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
)

// Fingerprint names a credential without revealing it: the first 128 bits
// of a SHA-256 of parts (each length-prefixed, after a label of the
// scheme), base64url. Connectors feed it what changes when the credential
// does (a stored bcrypt hash, a robot's secret hash, a directory entry's id
// and password-change time), never a password. Testing a password guess
// against a fingerprint would need the bcrypt hash behind it, salt
// included, which SHA-256 does not give back; a refresh token can carry it.
func Fingerprint(parts ...[]byte) string {
	h := sha256.New()
	h.Write([]byte("tollgate credential v1"))
	var n [4]byte
	for _, p := range parts {
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		h.Write(n[:])
		h.Write(p)
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:16])
}

// CheckCredential refuses a refresh whose identity was verified with
// another credential than the current one (a password changed, a robot
// rotated, a user removed and created again), or with none recorded (a
// refresh token from before tollgate bound them to their credential).
// A lookup made for diagnosis (WithoutCredential) has no credential to
// compare and is let through.
func CheckCredential(ctx context.Context, prev Identity, current string) error {
	if ctx.Value(diagnosisKey{}) != nil && prev.Credential == "" {
		return nil
	}
	if prev.Credential == "" || subtle.ConstantTimeCompare([]byte(prev.Credential), []byte(current)) != 1 {
		return &RejectedError{Reason: "credential changed since this refresh token was issued; log in again"}
	}
	return nil
}

type diagnosisKey struct{}

// WithoutCredential marks ctx for a RefreshConnector asked to look a user
// up by name alone, as `tollgate policy eval --as` does to show what the
// broker would see; never used on the request path.
func WithoutCredential(ctx context.Context) context.Context {
	return context.WithValue(ctx, diagnosisKey{}, true)
}
