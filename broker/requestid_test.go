package broker_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/broker"
)

func TestRequestIDs(t *testing.T) {
	var logs bytes.Buffer
	f := newFixture(t, func(o *broker.Options) { o.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	get := func(id string) string {
		req := httptest.NewRequest(http.MethodGet, "/token?service="+svcName, nil)
		if id != "" {
			req.Header.Set("X-Request-ID", id)
		}
		w := httptest.NewRecorder()
		f.srv.ServeHTTP(w, req)
		return w.Header().Get("X-Request-ID")
	}
	if got := get("proxy-abc.123"); got != "proxy-abc.123" {
		t.Errorf("a proxy's request id was not kept: %q", got)
	}
	if !strings.Contains(logs.String(), `"request_id":"proxy-abc.123"`) {
		t.Errorf("the decision log line lacks the request id:\n%s", logs.String())
	}
	generated := regexp.MustCompile(`^[0-9a-f]{24}$`)
	for _, bad := range []string{"", "a\nfake log line", strings.Repeat("x", 65), `"quoted"`} {
		if got := get(bad); !generated.MatchString(got) {
			t.Errorf("request id %q: answered %q, want a fresh one", bad, got)
		}
	}
	if a, b := get(""), get(""); a == b {
		t.Errorf("two requests share the id %q", a)
	}
}
