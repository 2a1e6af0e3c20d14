package broker

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/internal/atomicfile"
)

// Key is one signing key with its certificate.
type Key struct {
	// ID is the libtrust key id of the public key, the form distribution
	// 2.8 looks keys up by; it is the JWT `kid`.
	ID     string
	File   string
	Cert   *x509.Certificate
	signer crypto.Signer
	method jwt.SigningMethod
	// header is the encoded JWT header segment, built once per key.
	header string
	// refreshHeader is the header of refresh tokens: kid only, no x5c. Only
	// this broker reads them, and it looks keys up by kid; the certificate
	// would make each one a kilobyte or two longer.
	refreshHeader string
}

// Algorithm returns the JWS algorithm of the key (ES256, RS256, ...).
func (k *Key) Algorithm() string { return k.method.Alg() }

// KeySet is the keys of one service. The key whose certificate became valid
// most recently signs; every key whose certificate has not expired is published,
// so tokens signed by a retiring key keep verifying until it is removed.
type KeySet struct {
	keys []*Key // newest NotBefore first
}

// Signer returns the key that signs at time now, or nil when none is valid.
func (ks *KeySet) Signer(now time.Time) *Key {
	for _, k := range ks.keys {
		if !now.Before(k.Cert.NotBefore) && now.Before(k.Cert.NotAfter) {
			return k
		}
	}
	return nil
}

// Published returns every key that may have signed a live token, or will
// sign soon: all keys whose certificate has not expired.
func (ks *KeySet) Published(now time.Time) []*Key {
	var out []*Key
	for _, k := range ks.keys {
		if now.Before(k.Cert.NotAfter) {
			out = append(out, k)
		}
	}
	return out
}

// Keys returns every loaded key, expired ones too, newest NotBefore first.
func (ks *KeySet) Keys() []*Key { return slices.Clone(ks.keys) }

// Lookup returns the published key with the given kid.
func (ks *KeySet) Lookup(kid string, now time.Time) *Key {
	for _, k := range ks.Published(now) {
		if k.ID == kid {
			return k
		}
	}
	return nil
}

// LoadKeyDir loads every NAME.key with its NAME.crt from dir.
func LoadKeyDir(dir string) (*KeySet, error) {
	// Not filepath.Glob: it hides why a directory could not be read, and
	// an unreadable one (a service user without the directory's group)
	// must not read as "no keys".
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("key directory: %w", err)
	}
	var matches []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".key") {
			matches = append(matches, filepath.Join(dir, e.Name()))
		}
	}
	if len(matches) == 0 {
		return nil, fmt.Errorf("key directory %s: no *.key files (create one with `tollgate keygen --out %s`)", dir, dir)
	}
	ks := &KeySet{}
	for _, keyFile := range matches {
		certFile := strings.TrimSuffix(keyFile, ".key") + ".crt"
		k, err := loadKey(keyFile, certFile)
		if err != nil {
			return nil, err
		}
		ks.keys = append(ks.keys, k)
	}
	slices.SortStableFunc(ks.keys, func(a, b *Key) int {
		if c := b.Cert.NotBefore.Compare(a.Cert.NotBefore); c != 0 {
			return c
		}
		return strings.Compare(b.File, a.File)
	})
	return ks, nil
}

func loadKey(keyFile, certFile string) (*Key, error) {
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("key %s: its certificate: %w", keyFile, err)
	}
	k, err := ParseKeyPair(keyPEM, certPEM)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", keyFile, err)
	}
	k.File = keyFile
	return k, nil
}

// ParseKeyPair parses a PEM private key and its PEM certificate.
func ParseKeyPair(keyPEM, certPEM []byte) (*Key, error) {
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("no PEM block in key file")
	}
	var priv any
	var err error
	switch kb.Type {
	case "PRIVATE KEY":
		priv, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	case "EC PRIVATE KEY":
		priv, err = x509.ParseECPrivateKey(kb.Bytes)
	case "RSA PRIVATE KEY":
		priv, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	default:
		return nil, fmt.Errorf("unsupported PEM block %q", kb.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, errors.New("no CERTIFICATE PEM block in certificate file")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	k := &Key{Cert: cert}
	switch p := priv.(type) {
	case *ecdsa.PrivateKey:
		k.signer = p
		switch p.Curve {
		case elliptic.P256():
			k.method = jwt.SigningMethodES256
		case elliptic.P384():
			k.method = jwt.SigningMethodES384
		case elliptic.P521():
			k.method = jwt.SigningMethodES512
		default:
			return nil, errors.New("unsupported elliptic curve")
		}
	case *rsa.PrivateKey:
		if p.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits: at least 2048 required", p.N.BitLen())
		}
		k.signer, k.method = p, jwt.SigningMethodRS256
	default:
		// Ed25519 and others: distribution 2.8 rejects them (protocol.md §4).
		return nil, fmt.Errorf("unsupported key type %T: use ECDSA (ES256) or RSA (RS256)", priv)
	}
	if !publicKeysEqual(k.signer.Public(), cert.PublicKey) {
		return nil, errors.New("certificate does not match the private key")
	}
	if k.ID, err = LibtrustKeyID(cert.PublicKey); err != nil {
		return nil, err
	}
	hdr, err := json.Marshal(map[string]any{
		"alg": k.method.Alg(),
		"typ": "JWT",
		"kid": k.ID,
		"x5c": []string{base64.StdEncoding.EncodeToString(cert.Raw)},
	})
	if err != nil {
		return nil, err
	}
	k.header = base64.RawURLEncoding.EncodeToString(hdr)
	if hdr, err = json.Marshal(map[string]any{"alg": k.method.Alg(), "kid": k.ID}); err != nil {
		return nil, err
	}
	k.refreshHeader = base64.RawURLEncoding.EncodeToString(hdr)
	return k, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

// LibtrustKeyID is the key id distribution 2.8 derives from a public key:
// SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits, base32 without
// padding, in twelve groups of four characters joined by ':'.
func LibtrustKeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("key id: %w", err)
	}
	sum := sha256.Sum256(der)
	b32 := base32.StdEncoding.EncodeToString(sum[:30])
	var sb strings.Builder
	for i := 0; i < len(b32); i += 4 {
		if i > 0 {
			sb.WriteByte(':')
		}
		sb.WriteString(b32[i : i+4])
	}
	return sb.String(), nil
}

// KeyType names the kinds of key keygen makes.
type KeyType string

const (
	KeyEC  KeyType = "ec"  // ECDSA P-256, ES256
	KeyRSA KeyType = "rsa" // RSA-2048, RS256
)

// GenerateKey makes a key and a self-signed certificate valid from notBefore
// for validity. The certificate's NotBefore is the moment the key starts
// signing, which is how a rotation is scheduled. It returns PEM key and cert.
func GenerateKey(typ KeyType, commonName string, notBefore time.Time, validity time.Duration) (keyPEM, certPEM []byte, err error) {
	var priv crypto.Signer
	switch typ {
	case KeyEC:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyRSA:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, nil, fmt.Errorf("unknown key type %q (want ec or rsa)", typ)
	}
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             notBefore.Truncate(time.Second),
		NotAfter:              notBefore.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		return nil, nil, err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return keyPEM, certPEM, nil
}

// WriteKeyPair writes NAME.key (mode 0600) and NAME.crt into dir. The
// certificate comes first, so a broker polling dir never loads a key
// without it. The key is a new file (O_EXCL): it is never written into a
// file, or through a link, that is already there.
func WriteKeyPair(dir, name string, keyPEM, certPEM []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	keyFile := filepath.Join(dir, name+".key")
	if _, err := os.Lstat(keyFile); err == nil {
		return fmt.Errorf("%s already exists", keyFile)
	}
	if err := atomicfile.Write(filepath.Join(dir, name+".crt"), certPEM, 0o644); err != nil {
		return err
	}
	f, err := os.OpenFile(keyFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s already exists", keyFile)
	}
	if err != nil {
		return err
	}
	_, err = f.Write(keyPEM)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// CertBundle returns the PEM certificates of the published keys, the file a
// registry's `rootcertbundle` points at.
func (ks *KeySet) CertBundle(now time.Time) []byte {
	var out []byte
	for _, k := range ks.Published(now) {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.Cert.Raw})...)
	}
	return out
}

// JWK is one public key in JSON Web Key form.
type JWK struct {
	Kty string   `json:"kty"`
	Use string   `json:"use"`
	Alg string   `json:"alg"`
	Kid string   `json:"kid"`
	Crv string   `json:"crv,omitempty"`
	X   string   `json:"x,omitempty"`
	Y   string   `json:"y,omitempty"`
	N   string   `json:"n,omitempty"`
	E   string   `json:"e,omitempty"`
	X5c []string `json:"x5c"`
}

// JWKs returns the published keys as JSON Web Keys.
func (ks *KeySet) JWKs(now time.Time) []JWK {
	out := []JWK{}
	for _, k := range ks.Published(now) {
		j := JWK{Use: "sig", Alg: k.method.Alg(), Kid: k.ID, X5c: []string{base64.StdEncoding.EncodeToString(k.Cert.Raw)}}
		switch pub := k.Cert.PublicKey.(type) {
		case *ecdsa.PublicKey:
			size := (pub.Curve.Params().BitSize + 7) / 8
			j.Kty, j.Crv = "EC", pub.Curve.Params().Name
			j.X = base64.RawURLEncoding.EncodeToString(pub.X.FillBytes(make([]byte, size)))
			j.Y = base64.RawURLEncoding.EncodeToString(pub.Y.FillBytes(make([]byte, size)))
		case *rsa.PublicKey:
			j.Kty = "RSA"
			j.N = base64.RawURLEncoding.EncodeToString(pub.N.Bytes())
			j.E = base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes())
		}
		out = append(out, j)
	}
	return out
}
