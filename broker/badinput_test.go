package broker_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

// badCase is one malformed or hostile request and the answer it must get.
type badCase struct {
	name   string
	method string
	path   string // with query
	header []string
	body   string
	status int
	code   string // registry error code; "" for non-token endpoints
}

// TestBadInputMatrix sends malformed and hostile requests to every endpoint:
// each gets its documented status and a JSON error naming the problem,
// nothing panics, and no token is ever issued for them.
func TestBadInputMatrix(t *testing.T) {
	f := newFixture(t)
	good := f.get(t, "service="+svcName+"&scope=repository:team/app:pull&offline_token=true", "Authorization", basic("alice", "alice-secret"))
	access, _ := good.body["token"].(string)
	refresh, _ := good.body["refresh_token"].(string)
	if access == "" || refresh == "" {
		t.Fatalf("fixture token: %s", good.raw)
	}
	parts := strings.Split(access, ".")
	huge := strings.Repeat("a", 20000)
	many := strings.Repeat("scope=repository:a/b:pull&", 1000)
	b64 := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	form := "application/x-www-form-urlencoded"
	svc := "service=" + svcName
	tok := "/token?" + svc

	cases := []badCase{
		// Scopes.
		{"scope without actions", "GET", tok + "&scope=repository:team/app", nil, "", 400, "INVALID_SCOPE"},
		{"scope without name", "GET", tok + "&scope=repository::pull", nil, "", 400, "INVALID_SCOPE"},
		{"scope with only a type", "GET", tok + "&scope=repository", nil, "", 400, "INVALID_SCOPE"},
		{"scope with empty type", "GET", tok + "&scope=:team/app:pull", nil, "", 400, "INVALID_SCOPE"},
		{"scope class unclosed", "GET", tok + "&scope=repository(plugin:team/app:pull", nil, "", 400, "INVALID_SCOPE"},
		{"control character in scope", "GET", tok + "&scope=repository:a%01b:pull", nil, "", 400, "INVALID_SCOPE"},
		{"NUL in scope", "GET", tok + "&scope=repository:a%00b:pull", nil, "", 400, "INVALID_SCOPE"},
		{"invalid UTF-8 in scope", "GET", tok + "&scope=repository:a%ffb:pull", nil, "", 400, "INVALID_SCOPE"},
		{"overlong UTF-8 in scope", "GET", tok + "&scope=repository:a%c0%afb:pull", nil, "", 400, "INVALID_SCOPE"},
		{"too many scopes", "GET", "/token?" + svc + "&" + strings.Repeat("scope=repository:x/y:pull+", 70), nil, "", 400, "INVALID_SCOPE"},
		{"too many actions", "GET", tok + "&scope=repository:a/b:" + actions(40), nil, "", 400, "INVALID_SCOPE"},
		{"name too long", "GET", tok + "&scope=repository:" + strings.Repeat("n", 600) + ":pull", nil, "", 400, "INVALID_SCOPE"},
		// Query strings.
		{"oversized query", "GET", tok + "&scope=" + huge, nil, "", 413, "INVALID_REQUEST"},
		{"many repeated scopes", "GET", "/token?" + svc + "&" + many, nil, "", 413, "INVALID_REQUEST"},
		{"duplicate scopes merged, still too many distinct", "GET", "/token?" + svc + "&" + distinct(70), nil, "", 400, "INVALID_SCOPE"},
		{"malformed percent escape", "GET", tok + "&scope=%zz", nil, "", 400, "INVALID_REQUEST"},
		{"semicolon separator", "GET", tok + ";scope=repository:a:pull", nil, "", 400, "INVALID_REQUEST"},
		{"unknown service", "GET", "/token?service=evil.test", nil, "", 400, "INVALID_REQUEST"},
		{"service twice", "GET", tok + "&service=notary.test", nil, "", 400, "INVALID_REQUEST"},
		{"account twice", "GET", tok + "&account=a&account=b", nil, "", 400, "INVALID_REQUEST"},
		{"offline_token twice", "GET", tok + "&offline_token=true&offline_token=false", nil, "", 400, "INVALID_REQUEST"},
		{"client_id twice", "GET", tok + "&client_id=a&client_id=b", nil, "", 400, "INVALID_REQUEST"},
		{"invalid UTF-8 in service", "GET", "/token?service=%ff%fe", nil, "", 400, "INVALID_REQUEST"},
		// Authorization headers.
		{"Basic not base64", "GET", tok, []string{"Authorization", "Basic !!!"}, "", 400, "INVALID_REQUEST"},
		{"Basic without colon", "GET", tok, []string{"Authorization", b64("alice")}, "", 400, "INVALID_REQUEST"},
		{"Basic empty", "GET", tok, []string{"Authorization", "Basic "}, "", 400, "INVALID_REQUEST"},
		{"Basic with spaces only", "GET", tok, []string{"Authorization", "Basic    "}, "", 400, "INVALID_REQUEST"},
		{"Basic with invalid UTF-8 user", "GET", tok, []string{"Authorization", b64("\xff\xfe:x")}, "", 400, "INVALID_REQUEST"},
		{"Basic with NUL in user", "GET", tok, []string{"Authorization", b64("ali\x00ce:alice-secret")}, "", 400, "INVALID_REQUEST"},
		{"Basic with a huge user", "GET", tok, []string{"Authorization", b64(strings.Repeat("u", 5000) + ":x")}, "", 400, "INVALID_REQUEST"},
		{"Basic with a huge password", "GET", tok, []string{"Authorization", b64("alice:" + strings.Repeat("p", 9000))}, "", 400, "INVALID_REQUEST"},
		{"wrong password", "GET", tok, []string{"Authorization", basic("alice", "nope")}, "", 401, "UNAUTHORIZED"},
		{"empty password", "GET", tok, []string{"Authorization", basic("alice", "")}, "", 401, "UNAUTHORIZED"},
		{"empty user", "GET", tok, []string{"Authorization", basic("", "alice-secret")}, "", 401, "UNAUTHORIZED"},
		{"unknown user", "GET", tok, []string{"Authorization", basic("mallory", "x")}, "", 401, "UNAUTHORIZED"},
		{"filter characters in user", "GET", tok, []string{"Authorization", basic("*)(uid=*", "x")}, "", 401, "UNAUTHORIZED"},
		{"password is the right one with a suffix", "GET", tok, []string{"Authorization", basic("alice", "alice-secretX")}, "", 401, "UNAUTHORIZED"},
		{"unknown scheme", "GET", tok, []string{"Authorization", "Digest foo"}, "", 400, "INVALID_REQUEST"},
		{"scheme only", "GET", tok, []string{"Authorization", "Bearer"}, "", 400, "INVALID_REQUEST"},
		{"two Authorization headers", "GET", tok, []string{"Authorization", basic("alice", "alice-secret"), "Authorization", basic("admin", "admin-secret")}, "", 400, "INVALID_REQUEST"},
		{"garbage bearer", "GET", tok, []string{"Authorization", "Bearer garbage"}, "", 401, "UNAUTHORIZED"},
		{"truncated JWT bearer", "GET", tok, []string{"Authorization", "Bearer " + parts[0] + "." + parts[1]}, "", 401, "UNAUTHORIZED"},
		{"JWT with the signature cut", "GET", tok, []string{"Authorization", "Bearer " + parts[0] + "." + parts[1] + "."}, "", 401, "UNAUTHORIZED"},
		{"registry token replayed as a credential", "GET", tok, []string{"Authorization", "Bearer " + access}, "", 401, "UNAUTHORIZED"},
		{"refresh token as a bearer", "GET", tok, []string{"Authorization", "Bearer " + refresh}, "", 401, "UNAUTHORIZED"},
		{"JWT-looking Basic password", "GET", tok, []string{"Authorization", basic("x", parts[0]+"."+parts[1]+".sig")}, "", 401, "UNAUTHORIZED"},
		// POST /token.
		{"unknown grant type", "POST", "/token", []string{"Content-Type", form}, svc + "&grant_type=client_credentials", 400, "UNSUPPORTED"},
		{"no grant type", "POST", "/token", []string{"Content-Type", form}, svc, 400, "INVALID_REQUEST"},
		{"grant type twice", "POST", "/token", []string{"Content-Type", form}, svc + "&grant_type=password&grant_type=refresh_token", 400, "INVALID_REQUEST"},
		{"password grant without username", "POST", "/token", []string{"Content-Type", form}, svc + "&grant_type=password&password=x", 400, "INVALID_REQUEST"},
		{"password grant wrong password", "POST", "/token", []string{"Content-Type", form}, svc + "&grant_type=password&username=alice&password=nope", 401, "UNAUTHORIZED"},
		{"password twice", "POST", "/token", []string{"Content-Type", form}, svc + "&grant_type=password&username=alice&password=alice-secret&password=x", 400, "INVALID_REQUEST"},
		{"refresh grant without token", "POST", "/token", []string{"Content-Type", form}, svc + "&grant_type=refresh_token", 400, "INVALID_REQUEST"},
		{"refresh grant with garbage", "POST", "/token", []string{"Content-Type", form}, svc + "&grant_type=refresh_token&refresh_token=garbage", 401, "UNAUTHORIZED"},
		{"refresh grant with an access token", "POST", "/token", []string{"Content-Type", form}, svc + "&grant_type=refresh_token&refresh_token=" + access, 401, "UNAUTHORIZED"},
		{"refresh grant for another service", "POST", "/token", []string{"Content-Type", form}, "service=notary.test&grant_type=refresh_token&refresh_token=" + refresh, 401, "UNAUTHORIZED"},
		{"refresh grant with a truncated token", "POST", "/token", []string{"Content-Type", form}, svc + "&grant_type=refresh_token&refresh_token=" + refresh[:len(refresh)-10], 401, "UNAUTHORIZED"},
		{"JSON body", "POST", "/token", []string{"Content-Type", "application/json"}, `{"grant_type":"password"}`, 400, "INVALID_REQUEST"},
		{"no content type", "POST", "/token", nil, svc + "&grant_type=password", 400, "INVALID_REQUEST"},
		{"multipart body", "POST", "/token", []string{"Content-Type", "multipart/form-data; boundary=x"}, "--x--", 400, "INVALID_REQUEST"},
		{"oversized body", "POST", "/token", []string{"Content-Type", form}, svc + "&grant_type=password&username=alice&password=" + strings.Repeat("p", 2<<20), 413, "INVALID_REQUEST"},
		{"malformed form", "POST", "/token", []string{"Content-Type", form}, "%zz", 400, "INVALID_REQUEST"},
		{"invalid UTF-8 in form user", "POST", "/token", []string{"Content-Type", form}, svc + "&grant_type=password&username=%ff&password=x", 400, "INVALID_REQUEST"},
		// Methods.
		{"PUT /token", "PUT", tok, nil, "", 405, "UNSUPPORTED"},
		{"DELETE /token", "DELETE", tok, nil, "", 405, "UNSUPPORTED"},
		{"PATCH /token", "PATCH", tok, nil, "", 405, "UNSUPPORTED"},
		// Other endpoints.
		{"certs for an unknown service", "GET", "/certs.pem?service=evil.test", nil, "", 400, ""},
		{"POST to the JWKS", "POST", "/.well-known/jwks.json", nil, "", 405, ""},
		{"unknown path", "GET", "/v2/", nil, "", 404, ""},
	}
	if len(cases) < 60 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, "http://broker"+tc.path, strings.NewReader(tc.body))
			if strings.Contains(tc.path, "%ff%fe") || strings.Contains(tc.path, "%c0") {
				req.URL.RawQuery = strings.SplitN(tc.path, "?", 2)[1]
			}
			for i := 0; i+1 < len(tc.header); i += 2 {
				req.Header.Add(tc.header[i], tc.header[i+1])
			}
			w := httptest.NewRecorder()
			f.srv.ServeHTTP(w, req) // a panic fails the test
			raw, _ := io.ReadAll(w.Result().Body)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, raw)
			}
			if strings.Contains(string(raw), `"token"`) || strings.Contains(string(raw), "access_token") {
				t.Fatalf("a token was issued: %s", raw)
			}
			if tc.code == "" {
				return
			}
			var body struct {
				Errors []struct{ Code, Message string } `json:"errors"`
			}
			if err := json.Unmarshal(raw, &body); err != nil || len(body.Errors) != 1 {
				t.Fatalf("want one JSON error: %s", raw)
			}
			if e := body.Errors[0]; e.Code != tc.code || e.Message == "" {
				t.Fatalf("error %+v, want code %s and a message", e, tc.code)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
		})
	}
}

// distinct returns n scope parameters with different names.
func distinct(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "scope=repository:r%d/app:pull&", i)
	}
	return b.String()
}

// actions returns n distinct actions joined by commas.
func actions(n int) string {
	a := make([]string, n)
	for i := range a {
		a[i] = fmt.Sprintf("a%d", i)
	}
	return strings.Join(a, ",")
}
