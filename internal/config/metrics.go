package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultWorkerMetricsAddr is the listen address of the /metrics and
// /healthz server of `aihigress worker` when WORKER_METRICS_ADDR is unset.
const DefaultWorkerMetricsAddr = "127.0.0.1:9464"

// Metrics configures the worker's metrics server, the provider metrics
// buckets and the health status of GET /admin/metrics/providers.
type Metrics struct {
	// Enabled is false when METRICS_ENABLED is off. The process then keeps
	// no Prometheus collectors and no provider buckets: /metrics is not
	// served and nothing is added to provider_metrics_minute.
	Enabled bool
	// WorkerAddr is the listen address of the worker's /metrics and
	// /healthz. It is empty when WORKER_METRICS_ADDR is "off". `dev` does
	// not use it, because the API's /metrics there covers the worker too.
	WorkerAddr string
	// FlushInterval is how often each process adds its minute buckets to
	// provider_metrics_minute.
	FlushInterval time.Duration
	// DegradedErrorRate and UnhealthyErrorRate are the error rates from
	// which a provider is degraded or unhealthy.
	DegradedErrorRate  float64
	UnhealthyErrorRate float64
	// HealthMinRequests is the number of requests in the window below which
	// a provider's health is unknown.
	HealthMinRequests int
}

func loadMetrics(env *lookup) Metrics {
	m := Metrics{
		Enabled:            env.switchOn("METRICS_ENABLED", true),
		WorkerAddr:         env.str("WORKER_METRICS_ADDR", DefaultWorkerMetricsAddr),
		FlushInterval:      env.duration("METRICS_FLUSH_INTERVAL", 30*time.Second),
		DegradedErrorRate:  env.fraction("METRICS_DEGRADED_ERROR_RATE", 0.05),
		UnhealthyErrorRate: env.fraction("METRICS_UNHEALTHY_ERROR_RATE", 0.25),
		HealthMinRequests:  env.integer("METRICS_HEALTH_MIN_REQUESTS", 10),
	}
	if strings.EqualFold(m.WorkerAddr, "off") {
		m.WorkerAddr = ""
	}
	return m
}

func (m Metrics) validate() error {
	if m.FlushInterval < time.Second {
		return fmt.Errorf("invalid configuration: METRICS_FLUSH_INTERVAL must be at least 1s, got %s", m.FlushInterval)
	}
	if m.HealthMinRequests < 1 {
		return fmt.Errorf("invalid configuration: METRICS_HEALTH_MIN_REQUESTS must be at least 1, got %d", m.HealthMinRequests)
	}
	if m.DegradedErrorRate <= 0 || m.DegradedErrorRate > m.UnhealthyErrorRate {
		return fmt.Errorf("invalid configuration: METRICS_DEGRADED_ERROR_RATE (%g) must be above 0 and at most METRICS_UNHEALTHY_ERROR_RATE (%g)",
			m.DegradedErrorRate, m.UnhealthyErrorRate)
	}
	return nil
}

// fraction reads a number from 0 to 1.
func (l *lookup) fraction(name string, fallback float64) float64 {
	raw := strings.TrimSpace(l.getenv(name))
	if raw == "" {
		return fallback
	}
	f, err := strconv.ParseFloat(raw, 64)
	if err != nil || f < 0 || f > 1 {
		l.errs = append(l.errs, fmt.Sprintf("%s must be a number from 0 to 1, such as 0.05, got %q", name, raw))
		return fallback
	}
	return f
}
