package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// httpClient never follows redirects, so every status is the server's own.
var httpClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// response is one raw HTTP exchange, printable in failure messages.
type response struct {
	req    string
	status int
	header http.Header
	body   []byte
}

func (r response) String() string {
	var h strings.Builder
	for _, k := range []string{"WWW-Authenticate", "Location", "Docker-Content-Digest", "Content-Type"} {
		if v := r.header.Get(k); v != "" {
			fmt.Fprintf(&h, "%s: %s\n", k, v)
		}
	}
	body := r.body
	if len(body) > 2000 {
		body = body[:2000]
	}
	return fmt.Sprintf("%s -> %d\n%s%s", r.req, r.status, h.String(), body)
}

// do sends one request; header lists name, value pairs.
func do(t testing.TB, method, u, bearer string, body []byte, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return response{req: method + " " + u, status: resp.StatusCode, header: resp.Header, body: data}
}

// expect fails the test unless the response has status want.
func (r response) expect(t testing.TB, want int) response {
	t.Helper()
	if r.status != want {
		t.Fatalf("want %d:\n%s", want, r)
	}
	return r
}

// expectDenied fails the test unless the registry answered 401 with a
// Bearer challenge naming error=insufficient_scope (a valid token that
// lacks an action).
func (r response) expectDenied(t testing.TB) {
	t.Helper()
	if ch := r.header.Get("WWW-Authenticate"); r.status != http.StatusUnauthorized || !strings.HasPrefix(ch, "Bearer ") || !strings.Contains(ch, `error="insufficient_scope"`) {
		t.Fatalf("want 401 with an insufficient_scope Bearer challenge:\n%s", r)
	}
}

// tokenResponse is the JSON the broker answers on /token.
type tokenResponse struct {
	Token        string `json:"token"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int    `json:"expires_in"`
	IssuedAt     string `json:"issued_at"`
	// OAuth2 and registry error forms.
	Error  string `json:"error"`
	Errors []struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
}

// getToken asks the broker for a token as crane and the Docker CLI do
// (GET with Basic credentials; user "" is anonymous) and returns it.
func (b *broker) getToken(t testing.TB, service, user string, scopes ...string) string {
	t.Helper()
	status, raw, u := b.askToken(t, service, user, scopes...)
	var body tokenResponse
	if status != http.StatusOK || json.Unmarshal(raw, &body) != nil || body.Token == "" || body.Token != body.AccessToken {
		t.Fatalf("GET %s as %q: %d\n%s", u, user, status, raw)
	}
	return body.Token
}

// askToken sends getToken's request and returns the status, the body and
// the URL asked, whatever the answer.
func (b *broker) askToken(t testing.TB, service, user string, scopes ...string) (int, []byte, string) {
	t.Helper()
	q := url.Values{"service": {service}}
	for _, s := range scopes {
		q.Add("scope", s)
	}
	req, err := http.NewRequest(http.MethodGet, b.url("/token?"+q.Encode()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, b.passwords[user])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, req.URL.String()
}

// postToken does an OAuth2 POST /token and returns the status and body.
func (b *broker) postToken(t testing.TB, form url.Values) (int, tokenResponse, string) {
	t.Helper()
	resp, err := httpClient.PostForm(b.url("/token"), form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body tokenResponse
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("POST /token (grant_type=%s) answered %s with non-JSON %q", form.Get("grant_type"), resp.Status, raw)
	}
	return resp.StatusCode, body, string(raw)
}

// access is one entry of a token's `access` claim.
type access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// tokenClaims is what the tests read from a JWT, without verifying it:
// verification is the registries' job.
type tokenClaims struct {
	header map[string]any
	Issuer string   `json:"iss"`
	Aud    any      `json:"aud"`
	Access []access `json:"access"`
}

func decodeToken(t testing.TB, token string) tokenClaims {
	t.Helper()
	c, err := parseToken(token)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// parseToken is decodeToken for goroutines other than the test's.
func parseToken(token string) (tokenClaims, error) {
	var c tokenClaims
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return c, fmt.Errorf("not a JWT: %q", token)
	}
	p := jwt.NewParser()
	h, err := p.DecodeSegment(parts[0])
	if err != nil || json.Unmarshal(h, &c.header) != nil {
		return c, fmt.Errorf("JWT header: %v", err)
	}
	payload, err := p.DecodeSegment(parts[1])
	if err != nil || json.Unmarshal(payload, &c) != nil {
		return c, fmt.Errorf("JWT claims: %v", err)
	}
	return c, nil
}

// expectAccess fails the test unless the token grants exactly want, in
// any order (the protocol asks for a stable order, not a particular one).
func expectAccess(t testing.TB, token string, want []access) {
	t.Helper()
	// Errorf: the registry's answer to the same token is still worth seeing.
	if got := decodeToken(t, token).Access; !reflect.DeepEqual(normalize(got), normalize(want)) {
		t.Errorf("token access = %+v, want %+v", got, want)
	}
}

func normalize(list []access) []string {
	out := []string{}
	for _, a := range list {
		actions := slices.Clone(a.Actions)
		slices.Sort(actions)
		out = append(out, a.Type+":"+a.Name+":"+strings.Join(actions, ","))
	}
	slices.Sort(out)
	return out
}

// uploadBlob pushes a blob with a monolithic upload (POST, then PUT with
// the digest) and returns its digest.
func uploadBlob(t testing.TB, r *registry, token, repo string, blob []byte) string {
	t.Helper()
	digest := sha256Digest(blob)
	resp := do(t, http.MethodPost, r.url("/v2/"+repo+"/blobs/uploads/"), token, nil).expect(t, http.StatusAccepted)
	loc, err := url.Parse(resp.header.Get("Location"))
	if err != nil || loc.Path == "" {
		t.Fatalf("upload Location %q: %v", resp.header.Get("Location"), err)
	}
	q := loc.Query()
	q.Set("digest", digest)
	do(t, http.MethodPut, r.url(loc.Path)+"?"+q.Encode(), token, blob, "Content-Type", "application/octet-stream").expect(t, http.StatusCreated)
	return digest
}

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

// pushImage pushes a random single-layer OCI image as repo:tag over raw
// HTTP and returns the manifest digest.
func pushImage(t testing.TB, r *registry, token, repo, tag string) string {
	t.Helper()
	layer := randomTar(t)
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["` + sha256Digest(layer) + `"]}}`)
	uploadBlob(t, r, token, repo, layer)
	uploadBlob(t, r, token, repo, config)
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     ociManifest,
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256Digest(config), "size": len(config)},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256Digest(layer), "size": len(layer)}},
	})
	do(t, http.MethodPut, r.url("/v2/"+repo+"/manifests/"+tag), token, manifest, "Content-Type", ociManifest).expect(t, http.StatusCreated)
	return sha256Digest(manifest)
}
