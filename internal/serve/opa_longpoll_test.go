package serve

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/bundles"
)

// longPollServer speaks OPA's long polling: a request with Prefer: wait=N
// and the ETag of the current bundle is held until publish or N seconds
// (then 304); its answers carry OPA's bundle content type, which tells the
// bundle plugin the server long-polls.
type longPollServer struct {
	mu      sync.Mutex
	etag    string
	body    []byte
	changed chan struct{}
	prefers []string // the Prefer headers received
}

func (s *longPollServer) publish(t *testing.T, revision string) {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "authz.rego"), []byte(opaTestPolicy), 0o644)
	var buf bytes.Buffer
	if err := bundles.Build(context.Background(), dir, revision, nil, &buf); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.etag, s.body = `"`+revision+`"`, buf.Bytes()
	if s.changed != nil {
		close(s.changed)
	}
	s.changed = make(chan struct{})
}

func (s *longPollServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.prefers = append(s.prefers, r.Header.Get("Prefer"))
	etag, changed := s.etag, s.changed
	s.mu.Unlock()
	var wait int // Prefer: modes=snapshot,delta;wait=N
	if _, w, ok := strings.Cut(r.Header.Get("Prefer"), "wait="); ok {
		fmt.Sscanf(w, "%d", &wait)
	}
	if r.Header.Get("If-None-Match") == etag && wait > 0 {
		select {
		case <-changed:
		case <-time.After(time.Duration(wait) * time.Second):
		case <-r.Context().Done():
			return
		}
	}
	s.mu.Lock()
	etag, body := s.etag, s.body
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/vnd.openpolicyagent.bundles")
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("ETag", etag)
	w.Write(body)
}

// With long_polling_timeout_seconds, a new revision is active as soon as
// the server publishes it, though regular polling would wait a minute:
// the bundle plugin holds a request open (Prefer: wait) and the server
// answers it with the new bundle.
func TestOPALongPollingActivatesANewRevisionAtOnce(t *testing.T) {
	lp := &longPollServer{}
	lp.publish(t, "lp-1")
	srv := httptest.NewServer(lp)
	t.Cleanup(srv.Close)
	e := openTestOPA(t, fmt.Sprintf(`services:
  s: {url: %s}
bundles:
  authz:
    service: s
    resource: /b/authz.tar.gz
    polling: {min_delay_seconds: 60, max_delay_seconds: 120, long_polling_timeout_seconds: 10}
`, srv.URL))
	revision := func() string {
		if bs := e.Bundles(context.Background()); len(bs) == 1 {
			return bs[0].Revision
		}
		return ""
	}
	waitFor(t, "revision lp-1", func() bool { return revision() == "lp-1" })
	waitFor(t, "a long poll to be waiting", func() bool {
		lp.mu.Lock()
		defer lp.mu.Unlock()
		return len(lp.prefers) >= 2
	})
	lp.publish(t, "lp-2")
	waitFor(t, "revision lp-2 without waiting for the next poll", func() bool { return revision() == "lp-2" })
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if n := len(lp.prefers); n > 4 || !strings.Contains(lp.prefers[n-1], "wait=10") {
		t.Errorf("%d requests, the last with Prefer %q; want at most 4, each waiting 10 s", n, lp.prefers[n-1])
	}
}
