// Package metrics defines the gateway's Prometheus metrics.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds every collector. A nil *Metrics is valid and records nothing, for tests.
type Metrics struct {
	Registry        *prometheus.Registry
	SessionsOpen    *prometheus.GaugeVec   // protocol, target
	SessionsTotal   *prometheus.CounterVec // protocol, target
	Bytes           *prometheus.CounterVec // protocol, target, direction (from_client|to_client)
	EventsRecorded  *prometheus.CounterVec // protocol
	RecorderLatency prometheus.Histogram   // seconds per commit (events written before forwarding)
	EventsDropped   *prometheus.CounterVec // protocol, target; best-effort recordings only
	Errors          *prometheus.CounterVec // kind
	AuthFailures    *prometheus.CounterVec // protocol
	APIRequests     *prometheus.CounterVec // route, code
}

// New creates and registers every collector, with the Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		SessionsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "airlock_sessions_open", Help: "Sessions currently open."}, []string{"protocol", "target"}),
		SessionsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_sessions_total", Help: "Sessions opened since start."}, []string{"protocol", "target"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_bytes_total", Help: "Protocol bytes relayed, by direction."}, []string{"protocol", "target", "direction"}),
		EventsRecorded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_events_recorded_total", Help: "Recording events written to the store."}, []string{"protocol"}),
		RecorderLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "airlock_recorder_commit_seconds", Help: "Time to write pending events to the store before forwarding.",
			Buckets: []float64{1e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1}}),
		EventsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_events_dropped_total", Help: "Recording events a best-effort target's sessions could not keep (store stalled or failing)."}, []string{"protocol", "target"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_errors_total", Help: "Errors by kind."}, []string{"kind"}),
		AuthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_auth_failures_total", Help: "Failed authentications."}, []string{"protocol"}),
		APIRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_api_requests_total", Help: "API requests by route and status code."}, []string{"route", "code"}),
	}
	m.Registry.MustRegister(m.SessionsOpen, m.SessionsTotal, m.Bytes, m.EventsRecorded, m.RecorderLatency,
		m.EventsDropped, m.Errors, m.AuthFailures, m.APIRequests,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Error counts one error of a kind (dial, auth, store, protocol, ...).
func (m *Metrics) Error(kind string) {
	if m != nil {
		m.Errors.WithLabelValues(kind).Inc()
	}
}

// AuthFailuresInc counts one failed authentication on a protocol listener or the API.
func (m *Metrics) AuthFailuresInc(protocol string) {
	if m != nil {
		m.AuthFailures.WithLabelValues(protocol).Inc()
	}
}
