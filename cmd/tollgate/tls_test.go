package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serverCert makes a self-signed TLS server certificate for host.
func serverCert(t *testing.T, host string) (keyPEM, certPEM []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(k)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestServeTLS: with tls configured the broker speaks HTTPS only, TLS 1.2
// or later, and a certificate that does not load is a start-up error.
func TestServeTLS(t *testing.T) {
	state := t.TempDir()
	if _, _, err := devConfig(state, "127.0.0.1:0"); err != nil { // writes config.yaml, keys, users, policy
		t.Fatal(err)
	}
	keyPEM, certPEM := serverCert(t, "localhost")
	os.WriteFile(filepath.Join(state, "tls.key"), keyPEM, 0o600)
	os.WriteFile(filepath.Join(state, "tls.crt"), certPEM, 0o644)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	base, err := os.ReadFile(filepath.Join(state, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	withTLS := func(name, tlsBlock string) string {
		cfg := strings.Replace(string(base), "listen:", "listen: \""+addr+"\"\n# was:", 1) + tlsBlock
		p := filepath.Join(state, name)
		os.WriteFile(p, []byte(cfg), 0o600)
		return p
	}

	bad := withTLS("bad.yaml", "tls: {cert_file: tls.crt, key_file: missing.key}\n")
	if _, err := run(t, "", "serve", "--config", bad); err == nil || !strings.Contains(err.Error(), "tls:") {
		t.Fatalf("a missing TLS key: %v", err)
	}

	good := withTLS("good.yaml", "tls: {cert_file: tls.crt, key_file: tls.key}\n")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	app := newApp()
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	go func() { done <- app.RunContext(ctx, []string{"tollgate", "serve", "--config", good}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	client := func(maxVersion uint16) *http.Client {
		return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: roots, ServerName: "localhost", MaxVersion: maxVersion}}}
	}
	var resp *http.Response
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err = client(0).Get("https://" + addr + "/healthz")
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("HTTPS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Fatalf("HTTPS /healthz: %s", resp.Status)
	}
	if _, err := client(tls.VersionTLS11).Get("https://" + addr + "/healthz"); err == nil {
		t.Fatal("a TLS 1.1 client was served")
	}
	if resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + addr + "/healthz"); err == nil && resp.StatusCode == http.StatusOK {
		t.Fatal("plain HTTP was served on a TLS listener")
	}
}
