package broker_test

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/broker"
)

// FuzzTokenEndpoint sends arbitrary queries, Authorization headers and
// form bodies: the answer is always a documented status with a JSON body,
// never a 500 or a panic, and a token only ever carries the test policy's
// grants for a caller who authenticated.
func FuzzTokenEndpoint(f *testing.F) {
	fx := newFixture(f)
	f.Add("GET", "service=registry.test&scope=repository:team/app:pull", "Basic YWxpY2U6YWxpY2Utc2VjcmV0", "")
	f.Add("GET", "scope=repository(plugin):a/b:*", "Bearer eyJhbGciOiJub25lIn0.e30.", "")
	f.Add("POST", "", "", "grant_type=password&username=alice&password=alice-secret&service=registry.test")
	f.Add("POST", "", "", "grant_type=refresh_token&refresh_token=x.y.z")
	f.Add("GET", "service=%ff&scope=%00", "Basic !!", "")
	f.Fuzz(func(t *testing.T, method, query, auth, body string) {
		if method != "POST" {
			method = "GET"
		}
		req := httptest.NewRequest(method, "http://broker/token", strings.NewReader(body))
		req.URL.RawQuery = query
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if method == "POST" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		w := httptest.NewRecorder()
		fx.srv.ServeHTTP(w, req)
		switch w.Code {
		case 200, 400, 401, 413, 429, 503:
		default:
			t.Fatalf("status %d for %s %q auth %q body %q: %s", w.Code, method, query, auth, body, w.Body)
		}
		var resp map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
			t.Fatalf("not JSON: %q", w.Body)
		}
		if tok, _ := resp["token"].(string); tok != "" {
			in := broker.Inspect(tok, broker.InspectOptions{Now: time.Now()})
			if in.Claims["sub"] == "admin" { // the test policy's admin gets anything
				return
			}
			for _, a := range in.Access {
				// Otherwise the test policy grants only on team/, ci/ and public/.
				if !strings.HasPrefix(a.Name, "team/") && !strings.HasPrefix(a.Name, "ci/") && !strings.HasPrefix(a.Name, "public/") {
					t.Fatalf("granted %+v for %s %q auth %q body %q", a, method, query, auth, body)
				}
			}
		}
	})
}

// FuzzInspect: token inspect never panics and always says something.
func FuzzInspect(f *testing.F) {
	f.Add("eyJhbGciOiJFUzI1NiJ9.eyJhdWQiOlsiYSJdfQ.c2ln")
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		in := broker.Inspect(raw, broker.InspectOptions{Need: []string{"repository:a/b:pull"}, JWKS: []byte(`{"keys":[]}`)})
		if len(in.Findings) == 0 {
			t.Fatalf("no finding for %q", raw)
		}
	})
}
