package broker

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/scope"
)

// InspectOptions say what to check a registry token against. Every field is
// optional; a check without its input is reported as skipped.
type InspectOptions struct {
	// JWKS is the broker's published key set (/.well-known/jwks.json).
	JWKS []byte
	// RootCertBundle is the registry's rootcertbundle (PEM).
	RootCertBundle []byte
	// Issuer and Service are what the registry expects (auth.token.issuer
	// and .service).
	Issuer, Service string
	// Need lists scopes a request needs (repository:team/app:push).
	Need []string
	Now  time.Time
}

// Finding is one conclusion of an inspection.
type Finding struct {
	// Level is "ok", "problem" or "skipped".
	Level   string `json:"level"`
	Check   string `json:"check"`
	Message string `json:"message"`
}

// Inspection is what Inspect found out about a token.
type Inspection struct {
	Header   map[string]any `json:"header"`
	Claims   map[string]any `json:"claims"`
	Access   []AccessEntry  `json:"access"`
	Findings []Finding      `json:"findings"`
}

// Problems counts the findings at level "problem".
func (in *Inspection) Problems() int {
	n := 0
	for _, f := range in.Findings {
		if f.Level == "problem" {
			n++
		}
	}
	return n
}

func (in *Inspection) add(level, check, format string, args ...any) {
	in.Findings = append(in.Findings, Finding{Level: level, Check: check, Message: fmt.Sprintf(format, args...)})
}

// algorithms distribution 2.8 accepts (3.x accepts these too).
var registryAlgorithms = []string{"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"}

// Inspect decodes a registry token and checks what distribution 2.8 and 3.x
// would check, each finding with a one-line explanation. It never fails: a
// token that does not even parse is one problem finding.
func Inspect(raw string, o InspectOptions) *Inspection {
	in := &Inspection{Header: map[string]any{}, Claims: map[string]any{}, Access: []AccessEntry{}}
	raw = strings.TrimSpace(raw)
	var claims struct {
		jwt.RegisteredClaims
		Access []AccessEntry `json:"access"`
	}
	tok, parts, err := jwt.NewParser().ParseUnverified(raw, &claims)
	if err != nil || len(parts) != 3 {
		in.add("problem", "format", "not a JWT (three base64url parts separated by dots): %v", err)
		return in
	}
	in.Header = tok.Header
	if payload, err := jwt.NewParser().DecodeSegment(parts[1]); err == nil {
		_ = json.Unmarshal(payload, &in.Claims)
	}
	if claims.Access != nil {
		in.Access = claims.Access
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}

	alg, _ := tok.Header["alg"].(string)
	if slices.Contains(registryAlgorithms, alg) {
		in.add("ok", "algorithm", "%s is accepted by distribution 2.8 and 3.x", alg)
	} else {
		in.add("problem", "algorithm", "alg %q: distribution 2.8 accepts only RS256/384/512 and ES256/384/512", alg)
	}

	switch aud := in.Claims["aud"].(type) {
	case string:
		in.add("ok", "audience", "aud is the string %q (both registry generations accept it)", aud)
		if o.Service != "" && aud != o.Service {
			in.add("problem", "audience", "aud %q is not the registry's service %q: the registry refuses the token", aud, o.Service)
		}
	case []any:
		in.add("problem", "audience", "aud is an array: distribution 2.8 rejects it (3.x accepts it); issue it as a plain string")
	default:
		in.add("problem", "audience", "no aud claim: registries refuse the token")
	}
	if o.Issuer != "" {
		if claims.Issuer == o.Issuer {
			in.add("ok", "issuer", "iss %q matches the registry's issuer", claims.Issuer)
		} else {
			in.add("problem", "issuer", "iss %q is not the registry's issuer %q: the registry refuses the token", claims.Issuer, o.Issuer)
		}
	}

	switch {
	case claims.ExpiresAt == nil:
		in.add("problem", "expiry", "no exp claim: registries refuse the token")
	case !now.Before(claims.ExpiresAt.Time):
		in.add("problem", "expiry", "expired at %s (%s ago): ask the broker for a new token", claims.ExpiresAt.UTC().Format(time.RFC3339), now.Sub(claims.ExpiresAt.Time).Round(time.Second))
	default:
		in.add("ok", "expiry", "valid until %s (%s left)", claims.ExpiresAt.UTC().Format(time.RFC3339), claims.ExpiresAt.Sub(now).Round(time.Second))
	}
	if claims.NotBefore != nil && now.Before(claims.NotBefore.Time) {
		in.add("problem", "expiry", "not valid before %s: the broker's clock is ahead of this machine's", claims.NotBefore.UTC().Format(time.RFC3339))
	}

	leaf := inspectX5C(in, tok, o)
	inspectKey(in, raw, tok, leaf, o)
	inspectNeeds(in, o.Need)
	return in
}

// inspectX5C checks the certificate chain distribution 2.8 uses to find the
// key, and returns the leaf certificate when there is one.
func inspectX5C(in *Inspection, tok *jwt.Token, o InspectOptions) *x509.Certificate {
	chain, _ := tok.Header["x5c"].([]any)
	if len(chain) == 0 {
		in.add("problem", "x5c", "no x5c header: distribution 2.8 then needs a kid it can map to a key in rootcertbundle, and 3.x keys EC certificates by a thumbprint that differs for 1 in 128 keys; send x5c")
		return nil
	}
	var certs []*x509.Certificate
	for i, c := range chain {
		s, _ := c.(string)
		der, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			in.add("problem", "x5c", "x5c[%d] is not base64 DER", i)
			return nil
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			in.add("problem", "x5c", "x5c[%d] is not a certificate: %v", i, err)
			return nil
		}
		certs = append(certs, cert)
	}
	leaf := certs[0]
	if len(o.RootCertBundle) == 0 {
		in.add("skipped", "x5c", "x5c present (%s); give --rootcertbundle to check it against the registry's bundle", leaf.Subject)
		return leaf
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(o.RootCertBundle) {
		in.add("problem", "x5c", "the rootcertbundle holds no PEM certificate")
		return leaf
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: o.Now}); err != nil {
		in.add("problem", "x5c", "the signing certificate (%s) does not chain to the registry's rootcertbundle: %v; run `tollgate registry-config` again and restart the registry", leaf.Subject, err)
	} else {
		in.add("ok", "x5c", "the signing certificate chains to the registry's rootcertbundle")
	}
	return leaf
}

// inspectKey checks the kid against the published keys and the signature.
func inspectKey(in *Inspection, raw string, tok *jwt.Token, leaf *x509.Certificate, o InspectOptions) {
	kid, _ := tok.Header["kid"].(string)
	if len(o.JWKS) == 0 {
		if leaf != nil {
			if _, err := jwt.NewParser(jwt.WithoutClaimsValidation(), jwt.WithValidMethods(registryAlgorithms)).Parse(raw, func(*jwt.Token) (any, error) { return leaf.PublicKey, nil }); err != nil {
				in.add("problem", "signature", "the signature does not verify with the x5c certificate's key: %v", err)
			} else {
				in.add("ok", "signature", "the signature verifies with the x5c certificate's key")
			}
		}
		in.add("skipped", "kid", "give --jwks (the broker's /.well-known/jwks.json) to check the key is one the broker publishes")
		return
	}
	var set struct {
		Keys []JWK `json:"keys"`
	}
	if err := json.Unmarshal(o.JWKS, &set); err != nil {
		in.add("problem", "kid", "the JWKS does not parse: %v", err)
		return
	}
	var key *JWK
	for i := range set.Keys {
		if set.Keys[i].Kid == kid {
			key = &set.Keys[i]
		}
	}
	if key == nil {
		in.add("problem", "kid", "kid %q is not among the %d published keys: the key was rotated out, or the token comes from another broker", kid, len(set.Keys))
		return
	}
	in.add("ok", "kid", "kid %q is a published key", kid)
	if len(key.X5c) == 0 {
		in.add("skipped", "signature", "the published key has no x5c certificate to verify with")
		return
	}
	der, err := base64.StdEncoding.DecodeString(key.X5c[0])
	cert, cerr := x509.ParseCertificate(der)
	if err != nil || cerr != nil {
		in.add("problem", "signature", "the published key's x5c is not a certificate")
		return
	}
	if _, err := jwt.NewParser(jwt.WithoutClaimsValidation(), jwt.WithValidMethods(registryAlgorithms)).Parse(raw, func(*jwt.Token) (any, error) { return cert.PublicKey, nil }); err != nil {
		in.add("problem", "signature", "the signature does not verify with published key %q: %v", kid, err)
		return
	}
	in.add("ok", "signature", "the signature verifies with published key %q", kid)
}

// inspectNeeds checks that the access list covers each needed scope.
func inspectNeeds(in *Inspection, needs []string) {
	for _, need := range needs {
		ss, err := scope.Parse([]string{need})
		if err != nil || len(ss) != 1 {
			in.add("problem", "access", "--need %q is not a scope (type:name:actions)", need)
			continue
		}
		s := ss[0]
		var have []string
		for _, a := range in.Access {
			if a.Type == s.Type && a.Name == s.Name {
				have = append(have, a.Actions...)
			}
		}
		var missing []string
		for _, a := range s.Actions {
			if !slices.Contains(have, a) {
				missing = append(missing, a)
			}
		}
		switch {
		case len(missing) == 0:
			in.add("ok", "access", "the access list covers %s", need)
		case len(have) == 0:
			in.add("problem", "access", "the access list has nothing on %s:%s: the policy granted none of %s (see `tollgate policy eval`)", s.Type, s.Name, strings.Join(s.Actions, ","))
		default:
			in.add("problem", "access", "the access list lacks %s on %s:%s (it grants %s): the policy did not grant it", strings.Join(missing, ","), s.Type, s.Name, strings.Join(have, ","))
		}
	}
}
