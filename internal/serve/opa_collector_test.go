package serve

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/policies"
	"github.com/tollgate/tollgate/test/testenv"
)

// troubledCollector serves the signed bundle and, at /logs, a decision-log
// collector that answers 500 (hang false) or never answers (hang true)
// until the test ends. It counts the uploads it was asked.
func troubledCollector(t *testing.T, hang bool) (url, public string, uploads *atomic.Int64) {
	t.Helper()
	private, public := testenv.WriteES256KeyPair(t, t.TempDir())
	bundle, _ := signedBundleServer(t, private)
	uploads = &atomic.Int64{}
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/logs", func(w http.ResponseWriter, r *http.Request) {
		uploads.Add(1)
		if hang {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		http.Error(w, "collector down", http.StatusInternalServerError)
	})
	mux.Handle("/", bundle.Config.Handler)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // before srv.Close, which waits for handlers
	return srv.URL, public, uploads
}

// An OPA engine stopped with a deadline returns by it, though OPA's
// decision-log plugin waits for an upload to a collector that hangs.
func TestOPAStopKeepsItsBudgetWhenTheCollectorHangs(t *testing.T) {
	for _, trigger := range []string{"periodic", "immediate"} {
		t.Run(trigger, func(t *testing.T) {
			url, public, uploads := troubledCollector(t, true)
			doc := opaConfig(t, url, public, t.TempDir()) + `decision_logs:
  service: bundles
  resource: /logs
  reporting: {min_delay_seconds: 1, max_delay_seconds: 1, upload_size_limit_bytes: 4096, trigger: ` + trigger + `}
`
			var out lockedBuffer
			e, err := policies.OpenOPA([]byte(doc), policies.OPAOptions{ID: "test", Log: slog.New(slog.NewTextHandler(&out, nil))})
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the bundle to be activated", e.Ready)
			// Decisions until an upload hangs, then more, queued behind it
			// and, at least one second on, the periodic upload too.
			more := 0
			for i := 0; more < 1500; i++ {
				if _, err := e.Authorize(context.Background(), opaTestInput); err != nil {
					t.Fatal(err)
				}
				if uploads.Load() > 0 {
					more++
				} else if i > 20000 {
					t.Fatal("no upload attempted")
				}
				time.Sleep(time.Millisecond)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			start := time.Now()
			e.Stop(ctx)
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("Stop with a 500ms budget took %v", took)
			}
			if !strings.Contains(out.String(), "abandoned") {
				t.Errorf("the abandoned upload was not logged:\n%s", out.String())
			}
		})
	}
}
