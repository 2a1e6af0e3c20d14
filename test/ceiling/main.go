// Command ceiling is the least a token endpoint can do: parse the scope, sign
// it (ES256 or RS256, with golang-jwt/v5) and write JSON. No authentication, no
// policy, no log. Its tokens/s under a load is the ceiling the broker is
// measured against; it is a benchmark fixture, never a token server.
//
// Example:
//
//	go run ./test/ceiling -key keys/bench.key -listen 127.0.0.1:5002
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/scope"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on")
	keyFile := flag.String("key", "", "PKCS#8 PEM private key, EC P-256 (ES256) or RSA (RS256), as `tollgate keygen` writes")
	issuer := flag.String("issuer", "tollgate-bench", "JWT iss")
	service := flag.String("service", "registry.bench", "JWT aud")
	addrFile := flag.String("addr-file", "", "write the address listened on to this file")
	flag.Parse()
	if err := run(*listen, *keyFile, *issuer, *service, *addrFile); err != nil {
		fmt.Fprintln(os.Stderr, "ceiling:", err)
		os.Exit(1)
	}
}

func run(listen, keyFile, issuer, service, addrFile string) error {
	host, _, err := net.SplitHostPort(listen)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-listen %q: want a loopback address such as 127.0.0.1:0", listen)
	}
	key, method, err := loadKey(keyFile)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	if addrFile != "" {
		if err := os.WriteFile(addrFile, []byte(ln.Addr().String()), 0o644); err != nil {
			return err
		}
	}
	h := &handler{key: key, method: method, issuer: issuer, service: service}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	return srv.Serve(ln)
}

func loadKey(path string) (crypto.Signer, jwt.SigningMethod, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("-key: %w", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, nil, fmt.Errorf("-key %s: no PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("-key %s: %w", path, err)
	}
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		return k, jwt.SigningMethodES256, nil
	case *rsa.PrivateKey:
		return k, jwt.SigningMethodRS256, nil
	}
	return nil, nil, errors.New("-key: want an EC P-256 or RSA key")
}

type handler struct {
	key     crypto.Signer
	method  jwt.SigningMethod
	issuer  string
	service string
}

type access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

type claims struct {
	jwt.RegisteredClaims
	Access []access `json:"access"`
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	scopes, err := scope.Parse(r.URL.Query()["scope"])
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	acc := make([]access, len(scopes))
	for i, s := range scopes {
		acc[i] = access{Type: s.Type, Name: s.Name, Actions: s.Actions}
	}
	now := time.Now()
	tok, err := jwt.NewWithClaims(h.method, claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    h.issuer,
			Audience:  jwt.ClaimStrings{h.service},
			ExpiresAt: jwt.NewNumericDate(now.Add(5 * time.Minute)),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        rand.Text(),
		},
		Access: acc,
	}).SignedString(h.key)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token": tok, "access_token": tok, "expires_in": 300, "issued_at": now.UTC().Format(time.RFC3339),
	})
}
