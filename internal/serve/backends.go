package serve

import (
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

	mu    sync.Mutex
	known map[string]bool // backend and name of each Recorder made
}

func newBackendMetrics() *backendMetrics {
	return &backendMetrics{
		known: map[string]bool{},
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tollgate_backend_request_duration_seconds",
			Help:    "Calls to a backend (ldap: a search or bind; oidc: a discovery and JWKS fetch; redis: a command; bundle: a download), by outcome: ok (it answered, refusals included), error, timeout. Calls whose client hung up are not counted.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"backend", "name", "outcome"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tollgate_backend_up",
			Help: "0 while the last call to a backend failed (error or timeout), 1 after it answered; 1 before the first call. Calls whose client hung up do not change it.",
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
		r := backendRecorder{up: m.up.WithLabelValues(backend, name), latency: map[probe.Outcome]prometheus.Observer{}}
		for _, o := range probe.Outcomes {
			r.latency[o] = m.latency.WithLabelValues(backend, name, string(o))
		}
		if !m.seen(backend, name) {
			r.up.Set(1)
		}
		return r
	}
}

// seen reports whether this backend had a Recorder already (a connector
// opened again by a reload), and notes it: its up state is kept.
func (m *backendMetrics) seen(backend, name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := backend + "\x00" + name
	if m.known[key] {
		return true
	}
	m.known[key] = true
	return false
}

type backendRecorder struct {
	up      prometheus.Gauge
	latency map[probe.Outcome]prometheus.Observer
}

func (r backendRecorder) Record(o probe.Outcome, elapsed time.Duration) {
	r.latency[o].Observe(elapsed.Seconds())
	if o == probe.OK {
		r.up.Set(1)
	} else {
		r.up.Set(0)
	}
}
