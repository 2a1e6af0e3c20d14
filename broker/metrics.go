package broker

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the broker's Prometheus metrics. Label values are bounded
// sets (outcomes, status codes, configured connector names): never user
// names, scopes or addresses.
type Metrics struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	decisions *prometheus.CounterVec
	reused    prometheus.Counter
}

// NewMetrics registers the broker's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_token_requests_total",
			Help: "Token requests by outcome (granted, partial, denied, login, unauthorized, throttled, unavailable, cancelled, bad_request, error), HTTP status and connector.",
		}, []string{"outcome", "status", "connector"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tollgate_token_request_duration_seconds",
			Help:    "Time to answer a token request, by outcome.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"outcome"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_policy_decisions_total",
			Help: "Policy decisions, by whether the decision cache answered.",
		}, []string{"cached"}),
	}
	m.reused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tollgate_access_tokens_reused_total",
		Help: "Access tokens served again, within the service's token_reuse window, instead of signed anew.",
	})
	reg.MustRegister(m.requests, m.latency, m.decisions, m.reused)
	m.preset()
	return m
}

// outcomeStatus is each outcome with the status it is answered with, save
// granted, partial, denied and login (200). Pre-creating these series
// makes rate() and alerts work before the first such request.
var outcomeStatus = map[string]int{
	"granted": 200, "partial": 200, "denied": 200, "login": 200,
	"unauthorized": 401, "throttled": 429, "unavailable": 503,
	"cancelled": statusClientClosed, "bad_request": 400, "error": 500,
}

// preset creates every counter series at 0: each outcome, with the
// connector "" of a request no connector identified; each cache answer.
func (m *Metrics) preset() {
	for outcome, status := range outcomeStatus {
		m.latency.WithLabelValues(outcome)
		if status != 200 {
			m.requests.WithLabelValues(outcome, strconv.Itoa(status), "")
		}
	}
	m.decisions.WithLabelValues("true")
	m.decisions.WithLabelValues("false")
}

func (m *Metrics) observe(outcome string, status int, d *decision, elapsed time.Duration) {
	if m == nil {
		return
	}
	connector := ""
	if d.id != nil {
		connector = d.id.Connector
	}
	m.requests.WithLabelValues(outcome, strconv.Itoa(status), connector).Inc()
	m.latency.WithLabelValues(outcome).Observe(elapsed.Seconds())
	if d.grant.revision != "" {
		m.decisions.WithLabelValues(strconv.FormatBool(d.grant.cached)).Inc()
	}
	if d.reused {
		m.reused.Inc()
	}
}
