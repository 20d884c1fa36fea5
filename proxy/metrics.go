package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are pgcloak's Prometheus series. Hot paths never touch them per
// message: frame readers count locally and add their totals at each flush.
type metrics struct {
	connsActive    prometheus.Gauge
	connsTotal     prometheus.Counter
	connsRejected  *prometheus.CounterVec
	bytes          *prometheus.CounterVec
	messages       *prometheus.CounterVec
	errors         *prometheus.CounterVec
	startupSeconds prometheus.Histogram
	cancels        *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgcloak_client_connections",
			Help: "Client connections currently open.",
		}),
		connsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgcloak_client_connections_total",
			Help: "Client connections accepted.",
		}),
		connsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgcloak_client_connections_rejected_total",
			Help: "Client connections refused, by reason.",
		}, []string{"reason"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgcloak_bytes_total",
			Help: "Protocol bytes relayed, by direction.",
		}, []string{"direction"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgcloak_messages_total",
			Help: "Protocol messages relayed, by direction.",
		}, []string{"direction"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgcloak_errors_total",
			Help: "Errors by kind (protocol, upstream_connect, tls, login_timeout, message_too_large).",
		}, []string{"kind"}),
		startupSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pgcloak_startup_seconds",
			Help:    "Time from accepting a client to its first ReadyForQuery (includes authentication).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		cancels: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgcloak_cancel_requests_total",
			Help: "CancelRequests received, by result (forwarded, unknown_key, failed).",
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.connsActive, m.connsTotal, m.connsRejected, m.bytes,
			m.messages, m.errors, m.startupSeconds, m.cancels)
	}
	// Series exist at 0 from the start, so that rates and dashboards see
	// them before the first event.
	initLabels(m.connsRejected, "too_many", "not_ready", "tls_required", "console")
	initLabels(m.errors, "protocol", "upstream_connect", "tls", "login_timeout", "message_too_large")
	initLabels(m.cancels, "forwarded", "unknown_key", "failed")
	initLabels(m.bytes, "client_to_server", "server_to_client")
	initLabels(m.messages, "client_to_server", "server_to_client")
	return m
}

// initLabels makes the series of a one-label vector for each value.
func initLabels(v *prometheus.CounterVec, values ...string) {
	for _, l := range values {
		v.WithLabelValues(l)
	}
}

// dirStats are the counters of one relay direction.
type dirStats struct {
	bytes, messages prometheus.Counter
}

// Count implements wire.Counter.
func (d dirStats) Count(bytes, messages int) {
	d.bytes.Add(float64(bytes))
	d.messages.Add(float64(messages))
}

func (m *metrics) direction(name string) dirStats {
	return dirStats{bytes: m.bytes.WithLabelValues(name), messages: m.messages.WithLabelValues(name)}
}
