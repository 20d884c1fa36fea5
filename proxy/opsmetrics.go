package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
)

// opsMetrics are the series of the operations side of the relay: upstream
// hosts, pauses. Like metrics, none is touched per message.
type opsMetrics struct {
	upstreamConnects *prometheus.CounterVec
	upstreamErrors   *prometheus.CounterVec
	paused           *prometheus.GaugeVec
	pausedClients    prometheus.Gauge
}

func newOpsMetrics(reg prometheus.Registerer) *opsMetrics {
	m := &opsMetrics{
		upstreamConnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgcloak_upstream_connections_total",
			Help: "Connections pgcloak made to each upstream host for client sessions.",
		}, []string{"host"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgcloak_upstream_connect_errors_total",
			Help: "Failed attempts to connect to each upstream host (for a session, or to ask its role).",
		}, []string{"host"}),
		paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pgcloak_paused",
			Help: "1 while the database is paused by the console's PAUSE (new statements wait), else 0.",
		}, []string{"database"}),
		pausedClients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgcloak_paused_clients",
			Help: "Client sessions waiting for RESUME at a transaction boundary.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.upstreamConnects, m.upstreamErrors, m.paused, m.pausedClients)
	}
	return m
}
