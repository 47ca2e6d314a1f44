package manager

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the manager's Prometheus series, on a registry of its own so
// that tests can run several managers in one process.
type metrics struct {
	reg            *prometheus.Registry
	requests       *prometheus.CounterVec
	latency        *prometheus.HistogramVec
	revisions      prometheus.Counter
	latestRevision prometheus.Gauge
	handler        http.Handler
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bulkhead_api_requests_total", Help: "API requests by route and status code.",
	}, []string{"route", "code"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "bulkhead_api_request_seconds", Help: "API request latency by route.", Buckets: prometheus.DefBuckets,
	}, []string{"route"})
	m.revisions = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bulkhead_policy_revisions_published_total", Help: "Policy revisions published by this process.",
	})
	m.latestRevision = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "bulkhead_policy_latest_revision", Help: "Number of the latest published revision.",
	})
	m.reg.MustRegister(m.requests, m.latency, m.revisions, m.latestRevision,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return m
}

func (m *metrics) observe(route string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) error {
	s.metrics.handler.ServeHTTP(w, r)
	return nil
}
