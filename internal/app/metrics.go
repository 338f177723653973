package app

import (
	"context"
	"time"

	"github.com/aihigress/aihigress/api"
	"github.com/aihigress/aihigress/internal/metrics"
)

// metricsCloseTimeout bounds the last flush of the provider metrics and the
// shutdown of the worker's metrics server.
const metricsCloseTimeout = 10 * time.Second

// startMetrics creates the process's metrics recorder, whose registry the
// API's /metrics, the worker's /metrics and the Temporal SDK share, and
// starts the periodic flush of its provider buckets until Close. With
// METRICS_ENABLED off it leaves Recorder nil, which every consumer accepts
// and which records nothing.
func (a *App) startMetrics() {
	if !a.Config.Metrics.Enabled {
		a.Logger.Info("metrics are off: no /metrics endpoint and no provider buckets", "variable", "METRICS_ENABLED")
		return
	}
	a.Recorder = metrics.New(metrics.Options{
		DB:         a.Store.DB,
		Aggregator: metrics.AggregatorOptions{FlushInterval: a.Config.Metrics.FlushInterval},
		Logger:     a.Logger.With("component", "metrics"),
	})
	a.Recorder.Start()
}

// closeMetrics writes the provider buckets that are still in memory.
func (a *App) closeMetrics() {
	if a.Recorder == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), metricsCloseTimeout)
	defer cancel()
	if err := a.Recorder.Close(ctx); err != nil {
		a.Logger.Error("flush provider metrics on shutdown failed; the last buckets are lost", "error", err)
	}
}

// apiMetrics returns the API's collectors on the process's registry, or nil
// when metrics are off, which leaves /metrics unrouted.
func (a *App) apiMetrics() *api.Metrics {
	if a.Recorder == nil {
		return nil
	}
	return api.NewMetricsOn(a.Recorder.Registry())
}

// providerHealth returns the thresholds of GET /admin/metrics/providers.
func (a *App) providerHealth() metrics.HealthThresholds {
	m := a.Config.Metrics
	return metrics.HealthThresholds{
		DegradedErrorRate:  m.DegradedErrorRate,
		UnhealthyErrorRate: m.UnhealthyErrorRate,
		MinRequests:        m.HealthMinRequests,
	}
}

// startWorkerMetrics serves /metrics and /healthz on WORKER_METRICS_ADDR,
// or /healthz alone when metrics are off. It returns nil when the address
// is empty, as in `dev`, whose API serves the same registry.
func (a *App) startWorkerMetrics() (*metrics.Server, error) {
	addr := a.Config.Metrics.WorkerAddr
	if addr == "" {
		return nil, nil
	}
	server, err := a.Recorder.Listen(addr, a.Config.MetricsToken, a.Logger)
	if err != nil {
		return nil, err
	}
	a.Logger.Info("worker metrics listening", "addr", server.Addr(), "token_required", a.Config.MetricsToken != "")
	return server, nil
}

// stopWorkerMetrics shuts the worker's metrics server down.
func (a *App) stopWorkerMetrics(server *metrics.Server) {
	if server == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), metricsCloseTimeout)
	defer cancel()
	if err := server.Shutdown(ctx); err != nil {
		a.Logger.Warn("worker metrics server did not shut down cleanly", "error", err)
	}
}
