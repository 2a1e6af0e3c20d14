package serve

import (
	"context"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tollgate/tollgate/broker"
	"github.com/tollgate/tollgate/policies"
)

// registerMetrics makes the broker's request metrics and adds what only
// the runtime knows: the policy in force and its reloads, configuration
// reloads, the decision and credential caches, the shared state, the
// backends called, and the Go runtime and process.
func (r *Runtime) registerMetrics() {
	r.metrics = broker.NewMetrics(r.reg)
	r.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_config_reloads_total", Help: "Configuration reloads (SIGHUP), by result.",
	}, []string{"result"})
	r.reloads.WithLabelValues("success") // present at 0 before the first reload
	r.reloads.WithLabelValues("failure")
	r.reg.MustRegister(r.reloads, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tollgate_build_info", Help: "The running build (value 1).",
		ConstLabels: prometheus.Labels{"version": r.opts.Version, "goversion": runtime.Version()},
	}, func() float64 { return 1 }))
	r.stores.registerMetrics(r.reg)
	r.reg.MustRegister(r.backends.collectors()...)
	cache := r.cache
	r.reg.MustRegister(opaCollector{r.opa})
	r.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		certCollector{r},
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tollgate_credential_cache_hits_total", Help: "Logins answered from the verified-credential cache.",
		}, func() float64 { h, _ := cache.Stats(); return float64(h) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tollgate_credential_cache_misses_total", Help: "Logins that had to ask an identity backend.",
		}, func() float64 { _, m := cache.Stats(); return float64(m) }),
	)
}

var (
	policyInfoDesc     = prometheus.NewDesc("tollgate_policy_revision_info", "The policy revision in force (value 1); absent without a policy.", []string{"revision"}, nil)
	policyLoadedDesc   = prometheus.NewDesc("tollgate_policy_loaded", "1 when a policy is loaded, 0 when every request is refused.", nil, nil)
	policyFailingDesc  = prometheus.NewDesc("tollgate_policy_reload_failures", "Consecutive failed attempts to load a new policy revision (0 when the last attempt succeeded).", nil, nil)
	policySuccessDesc  = prometheus.NewDesc("tollgate_policy_last_reload_success_timestamp_seconds", "When a policy revision last loaded.", nil, nil)
	policyLastFailDesc = prometheus.NewDesc("tollgate_policy_last_reload_failure_timestamp_seconds", "When loading a policy revision last failed (0: never).", nil, nil)
	cacheEntriesDesc   = prometheus.NewDesc("tollgate_policy_decision_cache_entries", "Decisions in the decision cache.", nil, nil)
	cacheBytesDesc     = prometheus.NewDesc("tollgate_policy_decision_cache_bytes", "Memory the decision cache accounts for (at most policy.decision_cache.max_bytes).", nil, nil)
)

// certCollector reports when each signing certificate in force expires.
// Labels are bounded: the configured services and their key ids.
type certCollector struct{ r *Runtime }

var certExpiryDesc = prometheus.NewDesc("tollgate_signing_certificate_expiry_timestamp_seconds",
	"When each signing certificate of each service expires (unix time), expired ones included until removed.", []string{"service", "kid"}, nil)

func (c certCollector) Describe(ch chan<- *prometheus.Desc) { ch <- certExpiryDesc }

func (c certCollector) Collect(ch chan<- prometheus.Metric) {
	g := c.r.current.Load()
	if g == nil { // before the first generation is built
		return
	}
	for _, s := range g.services {
		// One series per kid: the same key under two file names (two
		// certificates) would otherwise fail the whole scrape.
		expiry := map[string]time.Time{}
		for _, k := range s.Keys.Keys() {
			if k.Cert.NotAfter.After(expiry[k.ID]) {
				expiry[k.ID] = k.Cert.NotAfter
			}
		}
		for kid, t := range expiry {
			ch <- prometheus.MustNewConstMetric(certExpiryDesc, prometheus.GaugeValue, float64(t.Unix()), s.Name, kid)
		}
	}
}

func unixOrZero(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// opaCollector reports the policy in force at scrape time: the bundles
// OPA's plugins activated, loaded once every bundle is; failures, the most of any
// bundle; times, the latest of any.
type opaCollector struct{ e *policies.OPA }

func (c opaCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{policyInfoDesc, policyLoadedDesc, policyFailingDesc, policySuccessDesc, policyLastFailDesc, cacheEntriesDesc, cacheBytesDesc} {
		ch <- d
	}
}

func (c opaCollector) Collect(ch chan<- prometheus.Metric) {
	loaded := 0.0
	if c.e.Ready() {
		loaded = 1
		ch <- prometheus.MustNewConstMetric(policyInfoDesc, prometheus.GaugeValue, 1, c.e.Revision())
	}
	ch <- prometheus.MustNewConstMetric(policyLoadedDesc, prometheus.GaugeValue, loaded)
	failures := 0
	var success, failure time.Time
	for _, b := range c.e.Bundles(context.Background()) {
		failures = max(failures, b.Failures)
		if b.LastActivation.After(success) {
			success = b.LastActivation
		}
		if b.LastFailure.After(failure) {
			failure = b.LastFailure
		}
	}
	ch <- prometheus.MustNewConstMetric(policyFailingDesc, prometheus.GaugeValue, float64(failures))
	ch <- prometheus.MustNewConstMetric(policySuccessDesc, prometheus.GaugeValue, unixOrZero(success))
	ch <- prometheus.MustNewConstMetric(policyLastFailDesc, prometheus.GaugeValue, unixOrZero(failure))
	entries, bytes := c.e.CacheStats()
	ch <- prometheus.MustNewConstMetric(cacheEntriesDesc, prometheus.GaugeValue, float64(entries))
	ch <- prometheus.MustNewConstMetric(cacheBytesDesc, prometheus.GaugeValue, float64(bytes))
}
