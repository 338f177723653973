// Package metrics holds the Prometheus collectors that the API and the
// worker share, the Temporal SDK metrics handler that reports to the same
// registry, and the aggregator of per-minute provider buckets that
// GET /admin/metrics/providers reads.
package metrics

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"gorm.io/gorm"
)

// Stages of an event's delivery that the publish lag histogram measures.
const (
	// StagePublish is the worker's Redis PUBLISH of a stored event.
	StagePublish = "publish"
	// StageDeliver is the write of an event to an SSE client that follows
	// the run live, after the replay of the stored events.
	StageDeliver = "deliver"
)

// Attempt is one upstream request: a gateway attempt or a worker activity's
// call.
type Attempt struct {
	// Source is SourceGateway or SourceWorker.
	Source       string
	ProviderID   string
	LogicalModel string
	// Status comes from StatusOf.
	Status string
	// Latency runs from the request to the end of the response, or of the
	// stream.
	Latency time.Duration
	// TimeToFirstToken is the wait for the first streamed chunk; 0 when
	// the request was not streamed or no chunk arrived.
	TimeToFirstToken time.Duration
	TokensIn         int
	TokensOut        int
	// End is when the request ended, and selects the minute bucket. The
	// zero value means now.
	End time.Time
}

// Options configure a Recorder.
type Options struct {
	// DB receives the minute buckets. Nil keeps only the Prometheus
	// collectors.
	DB         *gorm.DB
	Aggregator AggregatorOptions
	Logger     *slog.Logger
}

// Recorder holds the collectors of one process, registered on its own
// registry together with the Go runtime and process collectors, and the
// aggregator of minute buckets. Every method accepts a nil *Recorder and
// then does nothing, so that structs built without one keep working.
type Recorder struct {
	registry   *prometheus.Registry
	aggregator *Aggregator
	logger     *slog.Logger

	upstreamDuration *prometheus.HistogramVec
	timeToFirstToken *prometheus.HistogramVec
	tokens           *prometheus.CounterVec
	failovers        *prometheus.CounterVec
	cooldowns        *prometheus.CounterVec
	runsFinished     *prometheus.CounterVec
	runDuration      *prometheus.HistogramVec
	eventLag         *prometheus.HistogramVec

	temporalOnce   sync.Once
	temporal       temporalMetrics
	temporalCloser io.Closer

	stopLoop context.CancelFunc
	loopDone chan struct{}
}

// latencyBuckets are the Prometheus buckets of upstream latencies, in
// seconds, on the bounds of the minute buckets.
func latencyBuckets() []float64 {
	buckets := make([]float64, 0, bucketCount)
	for _, bound := range bucketBoundsMS {
		buckets = append(buckets, float64(bound)/1000)
	}
	return buckets
}

// New creates the collectors on a new registry.
func New(opts Options) *Recorder {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	upstream := []string{"source", "provider", "model"}
	r := &Recorder{
		registry: prometheus.NewRegistry(),
		logger:   logger,
		upstreamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "aihigress_upstream_request_duration_seconds",
			Help:    "Upstream requests by source (gateway or worker), provider, logical model and status, from the request to the end of the response or stream, in seconds.",
			Buckets: latencyBuckets(),
		}, append(upstream, "status")),
		timeToFirstToken: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "aihigress_upstream_time_to_first_token_seconds",
			Help:    "Wait from the upstream request to its first streamed chunk, in seconds.",
			Buckets: latencyBuckets(),
		}, upstream),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aihigress_upstream_tokens_total",
			Help: "Tokens that upstreams reported, by direction: in (prompt) and out (completion).",
		}, append(upstream, "direction")),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aihigress_failovers_total",
			Help: "Upstream attempts that followed a failed attempt of the same request or run on another candidate.",
		}, []string{"source", "from_provider", "to_provider"}),
		cooldowns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aihigress_cooldowns_total",
			Help: "Cooldowns that this process started, by provider and reason.",
		}, []string{"provider", "reason"}),
		runsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aihigress_runs_finished_total",
			Help: "Runs that reached a final status, by kind and status.",
		}, []string{"kind", "status"}),
		runDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "aihigress_run_duration_seconds",
			Help:    "Time from the creation of a run to its final status, by kind and status, in seconds.",
			Buckets: []float64{0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800},
		}, []string{"kind", "status"}),
		eventLag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "aihigress_event_publish_lag_seconds",
			Help:    "Time from a run event's created_at to its Redis publish (stage publish) or to its write to a live SSE client (stage deliver), in seconds.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"stage"}),
	}
	r.registry.MustRegister(r.upstreamDuration, r.timeToFirstToken, r.tokens, r.failovers, r.cooldowns,
		r.runsFinished, r.runDuration, r.eventLag,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if opts.DB != nil {
		aggregatorOpts := opts.Aggregator
		if aggregatorOpts.Logger == nil {
			aggregatorOpts.Logger = logger
		}
		r.aggregator = NewAggregator(opts.DB, aggregatorOpts)
		r.registerAggregator()
	}
	return r
}

// registerAggregator exports the aggregator's own counts.
func (r *Recorder) registerAggregator() {
	a := r.aggregator
	r.registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "aihigress_provider_metrics_dropped_total",
			Help: "Upstream requests left out of provider_metrics_minute because too many buckets were waiting for a flush.",
		}, func() float64 { return float64(a.Dropped()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "aihigress_provider_metrics_flush_errors_total",
			Help: "Flushes of provider_metrics_minute that failed; their buckets wait for the next flush.",
		}, func() float64 { return float64(a.FlushErrors()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "aihigress_provider_metrics_pending_buckets",
			Help: "Minute buckets waiting for the next flush to provider_metrics_minute.",
		}, func() float64 { return float64(a.Pending()) }),
	)
}

// Registry returns the process's registry, or nil for a nil Recorder.
func (r *Recorder) Registry() *prometheus.Registry {
	if r == nil {
		return nil
	}
	return r.registry
}

// Aggregator returns the minute bucket aggregator, or nil when the
// Recorder has no database.
func (r *Recorder) Aggregator() *Aggregator {
	if r == nil {
		return nil
	}
	return r.aggregator
}

// RecordAttempt counts one upstream request in the collectors and in its
// minute bucket. It does no I/O.
func (r *Recorder) RecordAttempt(a Attempt) {
	if r == nil || a.ProviderID == "" {
		return
	}
	r.upstreamDuration.WithLabelValues(a.Source, a.ProviderID, a.LogicalModel, a.Status).Observe(a.Latency.Seconds())
	if a.TimeToFirstToken > 0 {
		r.timeToFirstToken.WithLabelValues(a.Source, a.ProviderID, a.LogicalModel).Observe(a.TimeToFirstToken.Seconds())
	}
	if a.TokensIn > 0 {
		r.tokens.WithLabelValues(a.Source, a.ProviderID, a.LogicalModel, "in").Add(float64(a.TokensIn))
	}
	if a.TokensOut > 0 {
		r.tokens.WithLabelValues(a.Source, a.ProviderID, a.LogicalModel, "out").Add(float64(a.TokensOut))
	}
	if r.aggregator == nil {
		return
	}

	values := BucketValues{Requests: 1, TokensIn: int64(a.TokensIn), TokensOut: int64(a.TokensOut)}
	if CountsAsError(a.Status) {
		values.Errors = 1
	}
	values.Latency.Observe(a.Latency)
	if a.TimeToFirstToken > 0 {
		values.TTFT.Observe(a.TimeToFirstToken)
	}
	end := a.End
	if end.IsZero() {
		end = time.Now()
	}
	r.aggregator.Record(BucketKey{Start: end, ProviderID: a.ProviderID, LogicalModel: a.LogicalModel, Status: a.Status}, values)
}

// RecordFailover counts a move from a failed attempt on fromProvider to a
// new attempt on toProvider.
func (r *Recorder) RecordFailover(source, fromProvider, toProvider string) {
	if r == nil {
		return
	}
	r.failovers.WithLabelValues(source, fromProvider, toProvider).Inc()
}

// RecordCooldown counts a cooldown that this process started.
func (r *Recorder) RecordCooldown(providerID, reason string) {
	if r == nil {
		return
	}
	r.cooldowns.WithLabelValues(providerID, reason).Inc()
}

// RecordRunFinished counts a run that reached its final status after
// duration.
func (r *Recorder) RecordRunFinished(kind, status string, duration time.Duration) {
	if r == nil {
		return
	}
	r.runsFinished.WithLabelValues(kind, status).Inc()
	r.runDuration.WithLabelValues(kind, status).Observe(duration.Seconds())
}

// ObserveEventLag records the age of an event, created at createdAt, as it
// reaches stage. A negative age, which clock skew between the worker and
// the API can produce, is recorded as 0.
func (r *Recorder) ObserveEventLag(stage string, createdAt time.Time) {
	if r == nil || createdAt.IsZero() {
		return
	}
	r.eventLag.WithLabelValues(stage).Observe(max(time.Since(createdAt), 0).Seconds())
}

// ObservePublishLag records the age of an event at its Redis publish; it
// fits events.Bus.OnPublished.
func (r *Recorder) ObservePublishLag(createdAt time.Time) {
	r.ObserveEventLag(StagePublish, createdAt)
}

// ObserveDeliverLag records the age of an event at its write to a live SSE
// client; it fits events.Follower.OnLiveDelivery.
func (r *Recorder) ObserveDeliverLag(createdAt time.Time) {
	r.ObserveEventLag(StageDeliver, createdAt)
}

// Start runs the aggregator's periodic flush until Close.
func (r *Recorder) Start() {
	if r == nil || r.aggregator == nil || r.stopLoop != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.stopLoop = cancel
	r.loopDone = make(chan struct{})
	go func() {
		defer close(r.loopDone)
		r.aggregator.Run(ctx)
	}()
}

// Close stops the periodic flush, writes the buckets still in memory and
// stops the Temporal metrics reporter. Call it after the last request has
// been recorded.
func (r *Recorder) Close(ctx context.Context) error {
	if r == nil {
		return nil
	}
	if r.stopLoop != nil {
		r.stopLoop()
		<-r.loopDone
		r.stopLoop = nil
	}
	var errs []error
	if r.aggregator != nil {
		errs = append(errs, r.aggregator.Flush(ctx))
	}
	if r.temporalCloser != nil {
		errs = append(errs, r.temporalCloser.Close())
		r.temporalCloser = nil
	}
	return errors.Join(errs...)
}
