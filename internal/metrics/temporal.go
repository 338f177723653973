package metrics

import (
	"time"

	"github.com/uber-go/tally/v4"
	tallyprom "github.com/uber-go/tally/v4/prometheus"
	"go.temporal.io/sdk/client"
	sdktally "go.temporal.io/sdk/contrib/tally"
)

// temporalMetrics is the SDK's metrics handler type.
type temporalMetrics = client.MetricsHandler

// temporalReportInterval is how often tally copies the SDK's metrics into
// the Prometheus collectors, and so how stale a scrape of them may be.
const temporalReportInterval = time.Second

// TemporalHandler returns the Temporal SDK metrics handler for
// client.Options.MetricsHandler. It reports through tally's Prometheus
// reporter to the Recorder's registry, so the SDK's metrics, such as
// temporal_request_total and temporal_workflow_task_execution_latency_seconds,
// appear on the same /metrics endpoint. Every call returns the same handler.
// A nil Recorder returns nil, which leaves the SDK's default, a no-op
// handler.
func (r *Recorder) TemporalHandler() client.MetricsHandler {
	if r == nil {
		return nil
	}
	r.temporalOnce.Do(func() {
		reporter := tallyprom.NewReporter(tallyprom.Options{
			Registerer:       r.registry,
			DefaultTimerType: tallyprom.HistogramTimerType,
			// The default panics. A metric that cannot be registered, such
			// as one whose name another collector took, is left out.
			OnRegisterError: func(err error) {
				r.logger.Warn("a Temporal SDK metric could not be registered and is left out of /metrics", "error", err)
			},
		})
		scope, closer := tally.NewRootScope(tally.ScopeOptions{
			CachedReporter:         reporter,
			Separator:              tallyprom.DefaultSeparator,
			SanitizeOptions:        &sdktally.PrometheusSanitizeOptions,
			OmitCardinalityMetrics: true,
		}, temporalReportInterval)
		r.temporalCloser = closer
		r.temporal = sdktally.NewMetricsHandler(sdktally.NewPrometheusNamingScope(scope))
	})
	return r.temporal
}
