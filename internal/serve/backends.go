package serve

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/probe"
)

// backendMetrics are the health and latency of the backends the broker
// calls: LDAP directories, OIDC issuers (discovery and JWKS), Redis and the
// bundle server. Labels are the backend kind and a configured name (a
// connector's name, an issuer, the Redis address, the redacted policy
// URL): never a user name, a password or a URL's credentials.
type backendMetrics struct {
	latency *prometheus.HistogramVec
	up      *prometheus.GaugeVec
	checks  probe.Schedule // of the backends whose adapter can check them (probe.Watch)

	mu    sync.Mutex
	known map[string]*probe.Health // by backend and name, for every Recorder made
	refs  map[string]int           // by backend and name: live connectors using it
}

func newBackendMetrics(checks probe.Schedule) *backendMetrics {
	return &backendMetrics{
		checks: checks,
		known:  map[string]*probe.Health{},
		refs:   map[string]int{},
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tollgate_backend_request_duration_seconds",
			Help:    "Calls to a backend (ldap: a search or bind; oidc: a discovery and JWKS fetch; redis: a command; bundle: a download), by outcome: ok (it answered, refusals included), error, timeout. Calls whose client hung up are not counted.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"backend", "name", "outcome"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tollgate_backend_up",
			Help: "0 while the last call to a backend failed (error or timeout), 1 after it answered; 1 before the first call. Calls whose client hung up do not change it. LDAP directories and OIDC issuers are also checked by the broker itself (a service bind; discovery and JWKS): every metrics.backend_check_interval while down, and after 4 intervals without a call while up.",
		}, []string{"backend", "name"}),
	}
}

func (m *backendMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.latency, m.up}
}

// factory hands out the Recorders of one kind of backend. Each Recorder
// makes its series at once, so dashboards and alerts see every configured
// backend before its first call.
func (m *backendMetrics) factory(backend string) probe.Factory {
	if m == nil {
		return nil
	}
	return func(name string) probe.Recorder {
		r := backendRecorder{up: m.up.WithLabelValues(backend, name), latency: map[probe.Outcome]prometheus.Observer{}, checks: m.checks}
		for _, o := range probe.Outcomes {
			r.latency[o] = m.latency.WithLabelValues(backend, name, string(o))
		}
		var seen bool
		if r.health, seen = m.health(backend, name); !seen {
			r.up.Set(1)
		}
		return r
	}
}

// connectorProbes is the probe factory of one connector, and release,
// which drops the series it made once no live connector uses them: a
// connector removed by a reload leaves no tollgate_backend_up behind (an
// alert on a directory that was down when it was removed would fire for
// ever). A connector opened again by a reload takes its series over before
// the old one releases them, so they keep their values.
func (m *backendMetrics) connectorProbes() (probes func(backend string) probe.Factory, release func()) {
	if m == nil {
		return m.factory, func() {}
	}
	var mu sync.Mutex
	var made [][2]string
	probes = func(backend string) probe.Factory {
		f := m.factory(backend)
		return func(name string) probe.Recorder {
			m.mu.Lock()
			m.refs[backend+"\x00"+name]++
			m.mu.Unlock()
			mu.Lock()
			made = append(made, [2]string{backend, name})
			mu.Unlock()
			return f(name)
		}
	}
	release = func() {
		mu.Lock()
		mine := made
		made = nil
		mu.Unlock()
		for _, bn := range mine {
			m.unref(bn[0], bn[1])
		}
	}
	return probes, release
}

// unref drops a connector's use of a backend's series, and the series
// with the last use.
func (m *backendMetrics) unref(backend, name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := backend + "\x00" + name
	if m.refs[key]--; m.refs[key] > 0 {
		return
	}
	delete(m.refs, key)
	delete(m.known, key)
	m.up.DeleteLabelValues(backend, name)
	m.latency.DeletePartialMatch(prometheus.Labels{"backend": backend, "name": name})
}

// health is the Health of this backend, and whether it had a Recorder
// already (a connector opened again by a reload): its state is kept.
func (m *backendMetrics) health(backend, name string) (*probe.Health, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := backend + "\x00" + name
	if h := m.known[key]; h != nil {
		return h, true
	}
	h := probe.NewHealth()
	m.known[key] = h
	return h, false
}

// backendRecorder exports one backend's calls, and is a probe.Watcher:
// an adapter that can check its backend on its own has it checked on
// m.checks's schedule.
type backendRecorder struct {
	up      prometheus.Gauge
	latency map[probe.Outcome]prometheus.Observer
	health  *probe.Health
	checks  probe.Schedule
}

func (r backendRecorder) Record(o probe.Outcome, elapsed time.Duration) {
	r.latency[o].Observe(elapsed.Seconds())
	r.health.Record(o, elapsed)
	if o == probe.OK {
		r.up.Set(1)
	} else {
		r.up.Set(0)
	}
}

func (r backendRecorder) Watch(ctx context.Context, check func(context.Context)) {
	go r.checks.Run(ctx, r.health, check)
}
