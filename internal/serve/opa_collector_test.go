package serve

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/plugins/logs"

	"github.com/tollgate/tollgate/policies"
	"github.com/tollgate/tollgate/test/opatest"
	"github.com/tollgate/tollgate/test/testenv"
)

// An OPA engine stopped with a deadline returns by it, though OPA's
// decision-log plugin waits for an upload to a collector that hangs.
func TestOPAStopKeepsItsBudgetWhenTheCollectorHangs(t *testing.T) {
	for _, trigger := range []string{"periodic", "immediate"} {
		t.Run(trigger, func(t *testing.T) {
			collector, public := bundleAndCollector(t, opatest.Hang)
			doc := opaConfig(t, collector.URL, public, t.TempDir()) + `decision_logs:
  service: bundles
  resource: /logs
  reporting: {min_delay_seconds: 1, max_delay_seconds: 1, upload_size_limit_bytes: 4096, trigger: ` + trigger + `}
`
			var out testenv.SyncBuffer
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
				if collector.Uploads() > 0 {
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
			if warned := strings.Contains(out.String(), "trigger: immediate: while the collector hangs"); warned != (trigger == "immediate") {
				t.Errorf("warned of immediate uploads: %v", warned)
			}
			if !strings.Contains(out.String(), "abandoned") {
				t.Errorf("the abandoned upload was not logged:\n%s", out.String())
			}
		})
	}
}

// settledGoroutines counts goroutines until they are at most want, for
// up to two seconds: connections and uploads of a test before end late.
func settledGoroutines(want int) int {
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(2 * time.Second); n > want && time.Now().Before(deadline); n = runtime.NumGoroutine() {
		time.Sleep(50 * time.Millisecond)
	}
	return n
}

// decisionLogBuffer is what OPA's decision-log plugin holds for upload:
// its buffer type and size (bytes for OPA's default size buffer), and
// the limit it was configured with.
func decisionLogBuffer(t *testing.T, e *policies.OPA) (size, limit int64) {
	t.Helper()
	p := logs.Lookup(e.Manager())
	if p == nil {
		t.Fatal("no decision_logs plugin")
	}
	_, size = p.BufferSize()
	return size, *p.Config().Reporting.BufferSizeLimitBytes
}

// OPA's decision-log buffer is unbounded unless the configuration bounds
// it: with a collector that fails or hangs, every decision stays in
// memory. tollgate bounds it where the team did not, and OPA's uploads
// do not pile up goroutines.
func TestOPADecisionLogBufferIsBoundedWhenTheCollectorFails(t *testing.T) {
	const limit = 32 << 10
	for _, c := range []struct {
		name    string
		mode    opatest.Mode
		trigger string
	}{{"hangs", opatest.Hang, "periodic"}, {"fails", opatest.Fail, "periodic"}, {"fails", opatest.Fail, "immediate"}} {
		t.Run(c.name+"/"+c.trigger, func(t *testing.T) {
			collector, public := bundleAndCollector(t, c.mode)
			doc := opaConfig(t, collector.URL, public, t.TempDir()) + `decision_logs:
  service: bundles
  resource: /logs
  reporting: {min_delay_seconds: 1, max_delay_seconds: 1, upload_size_limit_bytes: 4096, trigger: ` + c.trigger + `}
`
			e, err := policies.OpenOPA([]byte(doc), policies.OPAOptions{ID: "test", DecisionLogBufferBytes: limit})
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				e.Stop(ctx)
			}()
			waitFor(t, "the bundle to be activated", e.Ready)
			before := runtime.NumGoroutine()
			// 5,000 decisions, about 300 kB of events (~65 B each
			// compressed), over at least two upload rounds.
			start := time.Now()
			for i := range 5000 {
				in := opaTestInput
				in.Identity.Subject = fmt.Sprintf("user-%d", i) // no two alike, as in life
				if _, err := e.Authorize(context.Background(), in); err != nil {
					t.Fatal(err)
				}
				if i%250 == 0 && time.Since(start) < 2*time.Second {
					time.Sleep(200 * time.Millisecond)
				}
			}
			size, got := decisionLogBuffer(t, e)
			if got != limit {
				t.Errorf("buffer_size_limit_bytes = %d, want %d", got, limit)
			}
			if size > limit {
				t.Errorf("%d bytes buffered, over the %d limit", size, limit)
			}
			if n := settledGoroutines(before + 20); n > before+20 {
				t.Errorf("goroutines grew from %d to %d", before, n)
			}
			if collector.Uploads() == 0 {
				t.Error("no upload attempted")
			}
			t.Logf("%d uploads attempted, %d bytes buffered, goroutines %d -> %d", collector.Uploads(), size, before, runtime.NumGoroutine())
		})
	}
}

// The team's own buffer settings are kept, and the default applies only
// to OPA's size buffer: the event buffer has a limit of its own (10,000
// events), and OPA refuses buffer_size_limit_bytes with
// max_decisions_per_second.
func TestOPADecisionLogBufferDefault(t *testing.T) {
	for reporting, want := range map[string]int64{
		`{}`:                              policies.DefaultDecisionLogBufferBytes,
		`{buffer_size_limit_bytes: 1000}`: 1000,
		`{buffer_type: size}`:             policies.DefaultDecisionLogBufferBytes,
		`{buffer_type: event}`:            0,
		`{max_decisions_per_second: 100}`: 0,
	} {
		doc := "services:\n  s: {url: 'http://127.0.0.1:1'}\nbundles:\n  authz: {service: s, resource: /b}\n" +
			"decision_logs: {service: s, reporting: " + reporting + "}\n"
		e, err := policies.OpenOPA([]byte(doc), policies.OPAOptions{ID: "test"})
		if err != nil {
			t.Fatalf("%s: %v", reporting, err)
		}
		if _, got := decisionLogBuffer(t, e); got != want {
			t.Errorf("%s: buffer_size_limit_bytes = %d, want %d", reporting, got, want)
		}
	}
}
