package e2e

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/test/oidctest"
)

// The audience the broker accepts from OIDC providers: the resource
// indicator the test clients ask their tokens for.
const (
	oidcAudience  = "urn:tollgate:registry"
	oidcElsewhere = "urn:tollgate:elsewhere"
	// oidcRefetch is the broker's least time between two JWKS fetches.
	oidcRefetch = 2 * time.Second
)

// The corporate provider's clients: dev-ci is in registry-dev (developer in
// team), outsider is not, evil-org lacks the required org claim, and
// short-lived's tokens expire after a second.
var (
	devCI       = oidctest.Client{ID: "dev-ci", Secret: rand.Text(), Claims: map[string]any{"groups": []string{"registry-dev"}, "org": "acme"}}
	outsider    = oidctest.Client{ID: "outsider", Secret: rand.Text(), Claims: map[string]any{"groups": []string{"visitors"}, "org": "acme"}}
	evilOrg     = oidctest.Client{ID: "evil-org", Secret: rand.Text(), Claims: map[string]any{"groups": []string{"registry-dev"}, "org": "evil"}}
	shortLived  = oidctest.Client{ID: "short-lived", Secret: rand.Text(), TTL: 1, Claims: map[string]any{"groups": []string{"registry-dev"}, "org": "acme"}}
	corpClients = []oidctest.Client{devCI, outsider, evilOrg, shortLived}
)

// The cluster's service accounts, with the claims a Kubernetes API server
// puts in a projected service-account token.
func serviceAccount(ns, name string) oidctest.Client {
	return oidctest.Client{ID: ns + "-" + name, Secret: rand.Text(), TTL: 600, Claims: map[string]any{
		"sub": "system:serviceaccount:" + ns + ":" + name,
		"kubernetes.io": map[string]any{
			"namespace":      ns,
			"serviceaccount": map[string]any{"name": name, "uid": rand.Text()},
		},
	}}
}

var (
	builder  = serviceAccount("builds", "builder")
	deployer = serviceAccount("other", "deployer")
)

// oidcPolicyData maps the corporate group to developer in team.
const oidcPolicyData = `{"registry": {
  "system_admins": {"users": ["admin"], "groups": []},
  "projects": {
    "team":   {"public": false, "members": {"alice": "developer"}, "groups": {"oidc:registry-dev": "developer"}},
    "builds": {"public": false, "members": {}, "groups": {}},
    "other":  {"public": false, "members": {}, "groups": {}}
  }
}}
`

// workloadPolicy is added to the default policy: a Kubernetes service
// account may pull and push the repositories of its own namespace, and
// nothing else follows from its claims.
const workloadPolicy = `package registry.authz

workload_namespace := ns if {
	input.identity.connector == "sso"
	ns := input.identity.claims["kubernetes.io"].namespace
	is_string(ns)
	ns != ""
}

allowed contains {"type": s.type, "name": s.name, "action": a} if {
	some s in input.scopes
	s.type == "repository"
	startswith(s.name, concat("", [workload_namespace, "/"]))
	some a in ["pull", "push"]
	wants(s, a)
}
`

// oidcIdentity is the identity configuration of a connector "sso" that
// trusts the corporate provider and the cluster.
func oidcIdentity(corp, cluster string) string {
	s := fmt.Sprintf(`  - name: sso
    type: oidc
    issuers:
      - issuer: %q
        audience: %s
        algorithms: [RS256]
        groups_prefix: "oidc:"
        required_claims: {org: acme}
        leeway: 1s
        jwks_refetch_interval: %s
        timeout: 2s
`, corp, oidcAudience, oidcRefetch)
	if cluster != "" {
		s += fmt.Sprintf(`      - issuer: %q
        audience: [%s]
        algorithms: [ES256]
        name_claim: kubernetes.io.serviceaccount.name
        groups_claim: kubernetes.io.namespace
        groups_prefix: "k8s-namespace:"
        leeway: 1s
        jwks_refetch_interval: %s
        timeout: 2s
`, cluster, oidcAudience, oidcRefetch)
	}
	return s
}

// oidcPolicyDir writes the default policy, the test data and the workload rule.
func oidcPolicyDir(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "policy")
	writePolicy(t, dir, oidcPolicyData)
	if err := os.WriteFile(filepath.Join(dir, "workload.rego"), []byte(workloadPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// oidcAnswer is one /token answer: status and the first error message.
type oidcAnswer struct {
	status  int
	message string
	token   string
	raw     string
}

// oidcToken asks the broker for a token with an Authorization header.
func oidcToken(t *testing.T, b *broker, authorization, scope string) oidcAnswer {
	t.Helper()
	q := url.Values{"service": {flavors[1].service}}
	if scope != "" {
		q.Set("scope", scope)
	}
	req, err := http.NewRequest(http.MethodGet, b.url("/token?"+q.Encode()), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", authorization)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body tokenResponse
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &body)
	a := oidcAnswer{status: resp.StatusCode, token: body.Token, raw: string(raw)}
	if len(body.Errors) > 0 {
		a.message = body.Errors[0].Message
	}
	return a
}

func basicAuth(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// TestOIDCTokensEndToEnd runs the whole path with a real oidc-provider: a
// token whose group the policy maps to developer pushes with crane after a
// docker-style login with the token as password, one without the group
// cannot, each kind of bad token is refused with 401 and a reason, and a
// Kubernetes service-account token is confined to its namespace.
func TestOIDCTokensEndToEnd(t *testing.T) {
	r := flavors[1]
	needTools(t, r.bin, "crane")
	corp := oidctest.Start(t, oidctest.Options{Alg: "RS256", Clients: corpClients})
	cluster := oidctest.Start(t, oidctest.Options{Alg: "ES256", Clients: []oidctest.Client{builder, deployer}})
	b := startBrokerWith(t, brokerOptions{
		identity:     oidcIdentity(corp.Issuer, cluster.Issuer),
		policyData:   oidcPolicyData,
		policySource: oidcPolicyDir(t),
	})
	reg := startRegistry(t, r, b)

	t.Run("the group pushes with crane and an outsider cannot", func(t *testing.T) {
		b.passwords["oidc-dev"] = corp.Token(devCI, oidcAudience)
		b.passwords["oidc-outsider"] = corp.Token(outsider, oidcAudience)
		dev, out := newClient(t), newClient(t)
		dev.login("crane", reg, b, "oidc-dev")
		out.login("crane", reg, b, "oidc-outsider")
		dev.must("crane", "append", "-f", dev.layerTar(), "-t", reg.host()+"/team/app:oidc")
		dev.must("crane", "manifest", reg.host()+"/team/app:oidc")
		out.mustFail(1, craneDenied, "crane", "append", "-f", out.layerTar(), "-t", reg.host()+"/team/app:outsider")
		out.mustFail(1, craneDenied, "crane", "manifest", reg.host()+"/team/app:oidc")

		// The same token as Bearer, and as the POST password grant's password.
		a := oidcToken(t, b, "Bearer "+b.passwords["oidc-dev"], "repository:team/app:pull,push")
		if a.status != http.StatusOK {
			t.Fatalf("Bearer: %d %s", a.status, a.raw)
		}
		expectAccess(t, a.token, []access{{"repository", "team/app", []string{"pull", "push"}}})
		status, body, raw := b.postToken(t, url.Values{"grant_type": {"password"}, "username": {"ci"}, "password": {b.passwords["oidc-dev"]},
			"service": {r.service}, "client_id": {"e2e"}, "scope": {"repository:team/app:pull,push"}, "access_type": {"offline"}})
		if status != http.StatusOK {
			t.Fatalf("password grant with the OIDC token: %d %s", status, raw)
		}
		expectAccess(t, body.AccessToken, []access{{"repository", "team/app", []string{"pull", "push"}}})
		// Its refresh token expires with the OIDC token (300s), not after
		// the broker's refresh lifetime (1h), and it still pushes.
		var rc struct {
			Exp int64 `json:"exp"`
		}
		payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(body.RefreshToken, ".")[1])
		var oc struct {
			Exp int64 `json:"exp"`
		}
		oidcPayload, _ := base64.RawURLEncoding.DecodeString(strings.Split(b.passwords["oidc-dev"], ".")[1])
		if json.Unmarshal(payload, &rc) != nil || json.Unmarshal(oidcPayload, &oc) != nil || rc.Exp == 0 || rc.Exp > oc.Exp {
			t.Fatalf("refresh token exp %d, OIDC token exp %d: want no later", rc.Exp, oc.Exp)
		}
		status, body, raw = b.postToken(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {body.RefreshToken},
			"service": {r.service}, "client_id": {"e2e"}, "scope": {"repository:team/app:pull,push"}})
		if status != http.StatusOK {
			t.Fatalf("refresh grant for an OIDC identity: %d %s", status, raw)
		}
		expectAccess(t, body.AccessToken, []access{{"repository", "team/app", []string{"pull", "push"}}})
	})

	t.Run("bad tokens are refused with 401 and a reason", func(t *testing.T) {
		short := corp.Token(shortLived, oidcAudience)
		expiresAt := time.Now().Add(3 * time.Second) // 1s lifetime, 1s leeway, whole seconds
		if a := oidcToken(t, b, "Bearer "+short, ""); a.status != http.StatusOK {
			t.Fatalf("short-lived token while valid: %d %s", a.status, a.raw)
		}
		good := corp.Token(devCI, oidcAudience)
		header, payload := jwtSegments(t, good)
		kid, _ := header["kid"].(string)
		pub := rsaKeyOf(t, corp, kid)
		pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(pub))})
		tamperedPayload := strings.Replace(string(payload), `"sub":"dev-ci"`, `"sub":"admin"`, 1)
		if tamperedPayload == string(payload) {
			t.Fatalf("no sub to tamper with in %s", payload)
		}
		goodParts := strings.Split(good, ".")
		stranger := oidctest.Start(t, oidctest.Options{Clients: []oidctest.Client{devCI}})

		cases := []struct {
			name, token, bearerMsg, basicMsg string
		}{
			{"wrong audience", corp.Token(devCI, oidcElsewhere), "OIDC token rejected: audience not accepted", ""},
			{"unknown issuer", stranger.Token(devCI, oidcAudience), "no identity connector trusts its issuer", "no identity connector trusts its issuer"},
			{"alg none", craftJWT(map[string]any{"alg": "none", "typ": "JWT", "kid": kid}, payload, nil), `algorithm "none" is not accepted`, ""},
			{"HS256 keyed with the provider's public key", craftJWT(map[string]any{"alg": "HS256", "typ": "JWT", "kid": kid}, payload, pubPEM), `algorithm "HS256" is not accepted`, ""},
			{"tampered claims", goodParts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(tamperedPayload)) + "." + goodParts[2], "signature is invalid", ""},
			{"required claim differs", corp.Token(evilOrg, oidcAudience), `required claim "org"`, ""},
			{"garbage", "garbage-" + rand.Text(), "bearer token not accepted: it is not a JWT", "invalid user name or password"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				if tc.basicMsg == "" {
					tc.basicMsg = tc.bearerMsg
				}
				expectRefused(t, oidcToken(t, b, "Bearer "+tc.token, "repository:team/app:pull"), tc.bearerMsg)
				// A user name per case: the throttle counts failures per name.
				expectRefused(t, oidcToken(t, b, basicAuth("ci-"+tc.name, tc.token), "repository:team/app:pull"), tc.basicMsg)
			})
		}
		t.Run("expired", func(t *testing.T) {
			time.Sleep(time.Until(expiresAt))
			expectRefused(t, oidcToken(t, b, "Bearer "+short, "repository:team/app:pull"), "OIDC token rejected: token is expired")
			expectRefused(t, oidcToken(t, b, basicAuth("ci-expired", short), "repository:team/app:pull"), "OIDC token rejected: token is expired")
		})
		// Tokens are credentials: the broker never logs them.
		logged := b.settledLog(t)
		for _, tok := range []string{good, short, goodParts[2]} {
			if strings.Contains(logged, tok) {
				t.Fatal("the broker's log holds an OIDC token")
			}
		}
	})

	t.Run("a service account is confined to its namespace", func(t *testing.T) {
		b.passwords["sa-builder"] = cluster.Token(builder, oidcAudience)
		c := newClient(t)
		c.login("crane", reg, b, "sa-builder")
		c.must("crane", "append", "-f", c.layerTar(), "-t", reg.host()+"/builds/app:ci")
		c.mustFail(1, craneDenied, "crane", "append", "-f", c.layerTar(), "-t", reg.host()+"/other/app:ci")
		c.mustFail(1, craneDenied, "crane", "append", "-f", c.layerTar(), "-t", reg.host()+"/team/app:ci")

		dep := cluster.Token(deployer, oidcAudience)
		a := oidcToken(t, b, basicAuth("x", dep), "repository:builds/app:pull,push")
		if a.status != http.StatusOK {
			t.Fatalf("deployer: %d %s", a.status, a.raw)
		}
		expectAccess(t, a.token, nil)
		a = oidcToken(t, b, basicAuth("x", dep), "repository:other/app:pull,push")
		expectAccess(t, a.token, []access{{"repository", "other/app", []string{"pull", "push"}}})
	})
}

// TestOIDCKeyRotationAndUnknownKidFlood: after the provider rotates its key,
// new tokens verify after one (rate-limited) JWKS fetch and tokens of the
// rotated-out key are refused; a flood of 1,000 tokens with made-up key ids
// causes at most one fetch per refetch interval, counted at the provider.
func TestOIDCKeyRotationAndUnknownKidFlood(t *testing.T) {
	corp := oidctest.Start(t, oidctest.Options{Alg: "RS256", Clients: corpClients})
	b := startBrokerWith(t, brokerOptions{identity: oidcIdentity(corp.Issuer, ""), policyData: oidcPolicyData})

	old := corp.Token(devCI, oidcAudience)
	if a := oidcToken(t, b, "Bearer "+old, ""); a.status != http.StatusOK {
		t.Fatalf("first token: %d %s", a.status, a.raw)
	}
	oldKid, _ := mustHeader(t, old)["kid"].(string)
	verified := time.Now()

	newKid := corp.Rotate()
	fresh := corp.Token(devCI, oidcAudience)
	if k, _ := mustHeader(t, fresh)["kid"].(string); k != newKid || k == oldKid {
		t.Fatalf("after rotation the provider signs with %q (old %q, new %q)", k, oldKid, newKid)
	}
	time.Sleep(time.Until(verified.Add(oidcRefetch + 200*time.Millisecond)))
	before := corp.JWKSFetches()
	if a := oidcToken(t, b, "Bearer "+fresh, "repository:team/app:pull,push"); a.status != http.StatusOK {
		t.Fatalf("token of the new key: %d %s", a.status, a.raw)
	}
	if n := corp.JWKSFetches() - before; n != 1 {
		t.Fatalf("the new key took %d JWKS fetches, want 1", n)
	}
	expectRefused(t, oidcToken(t, b, "Bearer "+old, ""), fmt.Sprintf("signing key %q is not one of", oldKid))
	if n := corp.JWKSFetches() - before; n != 1 {
		t.Fatalf("the rotated-out key caused another fetch within the interval (%d in all)", n)
	}

	// 1,000 tokens with made-up key ids, from 8 clients at once, starting
	// when a fetch is allowed again: the first may fetch, then the limit holds.
	_, payload := jwtSegments(t, fresh)
	time.Sleep(oidcRefetch + 200*time.Millisecond)
	before = corp.JWKSFetches()
	start := time.Now()
	var wg sync.WaitGroup
	var refused, other atomic.Int64
	var firstOther atomic.Value
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < 1000; i += 8 {
				tok := craftJWT(map[string]any{"alg": "RS256", "typ": "JWT", "kid": rand.Text()}, payload, nil) + "c2ln"
				req, _ := http.NewRequest(http.MethodGet, b.url("/token?scope=repository:team/app:pull"), nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := httpClient.Do(req)
				if err != nil {
					other.Add(1)
					firstOther.CompareAndSwap(nil, err.Error())
					continue
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusUnauthorized {
					refused.Add(1)
				} else {
					other.Add(1)
					firstOther.CompareAndSwap(nil, resp.Status)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	fetches := corp.JWKSFetches() - before
	t.Logf("1000 unknown kids in %s: %d refused, %d JWKS fetches at the provider", elapsed.Round(time.Millisecond), refused.Load(), fetches)
	if refused.Load() != 1000 {
		t.Fatalf("%d of 1000 refused with 401; first other answer: %v", refused.Load(), firstOther.Load())
	}
	if limit := 1 + int(elapsed/oidcRefetch); fetches < 1 || fetches > limit || fetches > 5 {
		t.Fatalf("1000 unknown kids in %s caused %d JWKS fetches, want at most %d (one per %s) and a handful", elapsed, fetches, limit, oidcRefetch)
	}
	if a := oidcToken(t, b, "Bearer "+fresh, ""); a.status != http.StatusOK {
		t.Fatalf("a good token after the flood: %d %s", a.status, a.raw)
	}
}

// TestOIDCProviderDownAtStart: the broker starts while the provider is down;
// token callers get 503 (not 401), password users are unaffected, and
// tokens verify once the provider is back.
func TestOIDCProviderDownAtStart(t *testing.T) {
	corp := oidctest.Start(t, oidctest.Options{Alg: "RS256", Clients: corpClients})
	tok := corp.Token(devCI, oidcAudience)
	corp.Stop()
	b := startBrokerWith(t, brokerOptions{identity: oidcIdentity(corp.Issuer, ""), policyData: oidcPolicyData})

	for _, auth := range []string{"Bearer " + tok, basicAuth("x", tok)} {
		if a := oidcToken(t, b, auth, "repository:team/app:pull"); a.status != http.StatusServiceUnavailable {
			t.Fatalf("provider down (%s...): %d %s, want 503", auth[:6], a.status, a.raw)
		}
	}
	if a := oidcToken(t, b, basicAuth("alice", b.passwords["alice"]), "repository:team/app:pull"); a.status != http.StatusOK {
		t.Fatalf("htpasswd user while the provider is down: %d %s", a.status, a.raw)
	}

	corp.Start() // same port, same key
	deadline := time.Now().Add(oidcRefetch + 10*time.Second)
	for {
		a := oidcToken(t, b, "Bearer "+tok, "repository:team/app:pull")
		if a.status == http.StatusOK {
			expectAccess(t, a.token, []access{{"repository", "team/app", []string{"pull"}}})
			break
		}
		if a.status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("provider back: %d %s", a.status, a.raw)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func expectRefused(t *testing.T, a oidcAnswer, msg string) {
	t.Helper()
	if a.status != http.StatusUnauthorized || !strings.Contains(a.message, msg) {
		t.Fatalf("want 401 saying %q, got %d %s", msg, a.status, a.raw)
	}
}

// jwtSegments decodes a JWT's header and returns its raw payload.
func jwtSegments(t *testing.T, tok string) (map[string]any, []byte) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	h, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	p, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	var header map[string]any
	if err1 != nil || err2 != nil || json.Unmarshal(h, &header) != nil {
		t.Fatalf("bad JWT %q", tok)
	}
	return header, p
}

func mustHeader(t *testing.T, tok string) map[string]any {
	h, _ := jwtSegments(t, tok)
	return h
}

// craftJWT builds the tokens no provider mints: alg none (no signature),
// or an HMAC keyed with macKey (for HS256 with a public key).
func craftJWT(header map[string]any, payload, macKey []byte) string {
	h, _ := json.Marshal(header)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(payload)
	if macKey == nil {
		return input + "."
	}
	m := hmac.New(sha256.New, macKey)
	m.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// rsaKeyOf reads the provider's public RSA key kid from its JWKS.
func rsaKeyOf(t *testing.T, p *oidctest.Provider, kid string) *rsa.PublicKey {
	t.Helper()
	for _, k := range p.JWKS() {
		if k["kid"] != kid || k["kty"] != "RSA" {
			continue
		}
		n, err1 := base64.RawURLEncoding.DecodeString(k["n"].(string))
		e, err2 := base64.RawURLEncoding.DecodeString(k["e"].(string))
		if err1 != nil || err2 != nil {
			t.Fatalf("bad JWK %v", k)
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	}
	t.Fatalf("no RSA key %q in the provider's JWKS", kid)
	return nil
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
