package cmd

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcloak/pgcloak/crypto"
)

// opsMetrics are serve's series beyond the relay's (proxy/metrics.go,
// proxy/opsmetrics.go): configuration reloads and the KMS.
type opsMetrics struct {
	reloads     *prometheus.CounterVec
	lastReload  prometheus.Gauge
	kmsSeconds  *prometheus.HistogramVec
	kmsErrors   *prometheus.CounterVec
	registerers prometheus.Registerer
}

// kmsOps are the KMS requests serve makes (keys commands make the others).
var kmsOps = []string{"wrap", "unwrap", "rewrap"}

func newOpsMetrics(reg prometheus.Registerer) *opsMetrics {
	m := &opsMetrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgcloak_config_reloads_total",
			Help: "Configuration reloads (SIGHUP, the console's RELOAD), by result: ok, or error (the running configuration stayed).",
		}, []string{"result"}),
		lastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pgcloak_config_last_reload_success_timestamp_seconds",
			Help: "When the configuration in force was loaded (start or the last successful reload), Unix time.",
		}),
		kmsSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pgcloak_kms_request_seconds",
			Help:    "Duration of KMS requests (Vault Transit, or the local key file), by operation, failed ones included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"op"}),
		kmsErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgcloak_kms_errors_total",
			Help: "Failed KMS requests, by operation.",
		}, []string{"op"}),
		registerers: reg,
	}
	for _, r := range []string{"ok", "error"} {
		m.reloads.WithLabelValues(r)
	}
	for _, op := range kmsOps {
		m.kmsSeconds.WithLabelValues(op)
		m.kmsErrors.WithLabelValues(op)
	}
	m.lastReload.SetToCurrentTime()
	reg.MustRegister(m.reloads, m.lastReload, m.kmsSeconds, m.kmsErrors)
	return m
}

// gaugeFunc registers a gauge whose value f reads when /metrics is asked.
func (m *opsMetrics) gaugeFunc(name, help string, f func() float64) {
	m.registerers.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// observedKMS counts and times the requests of a KMS.
type observedKMS struct {
	crypto.KMS
	m *opsMetrics
}

func (k observedKMS) observe(op string, begin time.Time, err error) {
	k.m.kmsSeconds.WithLabelValues(op).Observe(time.Since(begin).Seconds())
	if err != nil {
		k.m.kmsErrors.WithLabelValues(op).Inc()
	}
}

func (k observedKMS) Wrap(ctx context.Context, keyName string, dek []byte) ([]byte, error) {
	begin := time.Now()
	b, err := k.KMS.Wrap(ctx, keyName, dek)
	k.observe("wrap", begin, err)
	return b, err
}

func (k observedKMS) Unwrap(ctx context.Context, keyName string, wrapped []byte) ([]byte, error) {
	begin := time.Now()
	b, err := k.KMS.Unwrap(ctx, keyName, wrapped)
	k.observe("unwrap", begin, err)
	return b, err
}

func (k observedKMS) Rewrap(ctx context.Context, keyName string, wrapped []byte) ([]byte, error) {
	begin := time.Now()
	b, err := k.KMS.Rewrap(ctx, keyName, wrapped)
	k.observe("rewrap", begin, err)
	return b, err
}

// registerProtectionMetrics adds the series that read the protection's
// state when /metrics is asked.
func registerProtectionMetrics(m *opsMetrics, p *protection) {
	m.gaugeFunc("pgcloak_key_refresh_age_seconds",
		"Seconds since the data keys were last read from pgcloak.keys with every version unwrapped (grows while the database or the KMS cannot be reached; the keys already loaded keep working).",
		func() float64 {
			p.mu.Lock()
			k := p.keys
			p.mu.Unlock()
			if k == nil || k.loader == nil {
				return 0
			}
			return time.Since(k.loader.LastRefresh()).Seconds()
		})
	m.gaugeFunc("pgcloak_rule_sets",
		"Rule sets in use: 1, plus one for each older configuration that sessions started before a reload still use.",
		func() float64 { return float64(p.prot.RuleSets()) })
	m.gaugeFunc("pgcloak_protection_ready",
		"1 when sessions to the protected database are served (keys and catalog loaded, rules match), else 0.",
		func() float64 {
			if ok, _ := p.prot.Ready(); ok {
				return 1
			}
			return 0
		})
}
