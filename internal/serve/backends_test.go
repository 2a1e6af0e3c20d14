package serve

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/config"
	"github.com/tollgate/tollgate/internal/probe"
)

// TestBackendSeriesExistBeforeTheFirstCall: a Recorder makes its series at
// once (up 1, every outcome at 0); a failure sets up to 0 and counts, an
// answer sets it back; a Recorder made again for the same backend (a
// reload) keeps its state.
func TestBackendSeriesExistBeforeTheFirstCall(t *testing.T) {
	m := newBackendMetrics(probe.Schedule{Interval: time.Second, Idle: time.Minute})
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.collectors()...)
	ldap := m.factory("ldap").For("corp")

	want := func(when string, up float64, counts map[probe.Outcome]int) {
		t.Helper()
		out := gather(t, reg)
		lines := []string{fmt.Sprintf(`tollgate_backend_up{backend="ldap",name="corp"} %v`, up)}
		for _, o := range probe.Outcomes {
			lines = append(lines, fmt.Sprintf(`tollgate_backend_request_duration_seconds_count{backend="ldap",name="corp",outcome="%s"} %d`, o, counts[o]))
		}
		for _, l := range lines {
			if !strings.Contains(out, l+"\n") {
				t.Errorf("%s: want %s in\n%s", when, l, out)
			}
		}
	}
	want("before any call", 1, nil)
	ldap.Record(probe.Error, time.Millisecond)
	want("after an error", 0, map[probe.Outcome]int{probe.Error: 1})
	m.factory("ldap").For("corp") // the connector opened again
	want("after a reload", 0, map[probe.Outcome]int{probe.Error: 1})
	ldap.Record(probe.OK, time.Millisecond)
	want("after an answer", 1, map[probe.Outcome]int{probe.Error: 1, probe.OK: 1})
}

func TestNoMetricsNoRecorders(t *testing.T) {
	var m *backendMetrics
	if r := m.factory("redis").For("x"); r != nil {
		t.Fatalf("metrics off, got a Recorder %T", r)
	}
}

// gather is reg's gauges and histogram counts, one "name{labels} value" a line.
func gather(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			var labels []string
			for _, l := range mt.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			name := mf.GetName() + "{" + strings.Join(labels, ",") + "} "
			if h := mt.GetHistogram(); h != nil {
				fmt.Fprintf(&b, "%s_count%s%d\n", mf.GetName(), name[len(mf.GetName()):], h.GetSampleCount())
			} else if g := mt.GetGauge(); g != nil {
				fmt.Fprintf(&b, "%s%v\n", name, g.GetValue())
			}
		}
	}
	return b.String()
}

// TestRemovedConnectorLeavesNoSeries: a reload that removes a connector
// removes its backend's series (an alert on a directory that was down when
// it was removed would otherwise fire for ever); one that changes the
// connector keeps them.
func TestRemovedConnectorLeavesNoSeries(t *testing.T) {
	t.Setenv("TOLLGATE_TEST_BIND", "secret")
	path := testConfig(t)
	base := readFile(t, path)
	corp := func(poolSize int) string {
		return strings.Replace(base, "identity:\n", fmt.Sprintf(`identity:
  - name: corp
    type: ldap
    url: ldap://127.0.0.1:1
    bind_dn: cn=reader,dc=example,dc=org
    bind_password_env: TOLLGATE_TEST_BIND
    user_base: ou=people,dc=example,dc=org
    user_filter: "(uid={user})"
    pool_size: %d
`, poolSize), 1)
	}
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var rt *Runtime
	reload := func() {
		t.Helper()
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := rt.Reload(cfg); err != nil {
			t.Fatal(err)
		}
	}
	write(corp(2))
	rt = newTestRuntime(t, path)
	has := func() bool {
		for _, s := range scrape(t, rt) {
			if strings.Contains(s, `name="corp"`) {
				return true
			}
		}
		return false
	}
	if !has() {
		t.Fatalf("no series for the LDAP connector corp:\n%s", strings.Join(scrape(t, rt), "\n"))
	}
	write(corp(3))
	reload()
	if !has() {
		t.Fatal("a reload that changed corp removed its series")
	}
	write(base)
	reload()
	if has() {
		t.Errorf("corp was removed by a reload, its series stay:\n%s", strings.Join(scrape(t, rt), "\n"))
	}
	write(corp(2))
	reload()
	if !has() {
		t.Fatal("corp added again has no series")
	}
}
