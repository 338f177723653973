package api

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the API's Prometheus collectors, registered on their own
// registry so that tests and several servers in one process do not clash.
type Metrics struct {
	registry        *prometheus.Registry
	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	streamsOpen     prometheus.Gauge
	runsStarted     *prometheus.CounterVec
}

// NewMetrics creates the collectors and a registry that also exports the Go
// runtime and process metrics.
func NewMetrics() *Metrics {
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return NewMetricsOn(registry)
}

// NewMetricsOn creates the collectors on registry, usually the process's
// registry from metrics.Recorder, which exports the runtime metrics
// already. Several servers of one process may share the registry: a
// collector that is registered already is reused, so they count together.
func NewMetricsOn(registry *prometheus.Registry) *Metrics {
	return &Metrics{
		registry: registry,
		requests: registerOrReuse(registry, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aihigress_http_requests_total",
			Help: "HTTP requests by route pattern, method and status code.",
		}, []string{"route", "method", "status"})),
		requestDuration: registerOrReuse(registry, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "aihigress_http_request_duration_seconds",
			Help:    "Time to the end of the response, in seconds; SSE streams count until they close.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"route", "method"})),
		streamsOpen: registerOrReuse(registry, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "aihigress_sse_streams_open",
			Help: "SSE event streams currently open.",
		})),
		runsStarted: registerOrReuse(registry, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aihigress_runs_started_total",
			Help: "Runs whose workflow was started, by kind.",
		}, []string{"kind"})),
	}
}

// registerOrReuse registers c on registry, or returns the equal collector
// registered before. Any other registration error is a programming error
// in the collector definitions, so it panics as MustRegister does.
func registerOrReuse[C prometheus.Collector](registry *prometheus.Registry, c C) C {
	err := registry.Register(c)
	if err == nil {
		return c
	}
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		if existing, ok := already.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(err)
}

func (m *Metrics) observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	m.requests.WithLabelValues(route, c.Request.Method, strconv.Itoa(c.Writer.Status())).Inc()
	m.requestDuration.WithLabelValues(route, c.Request.Method).Observe(time.Since(start).Seconds())
}

// handler serves /metrics. With a non-empty token it requires
// "Authorization: Bearer <token>".
func (m *Metrics) handler(token string) gin.HandlerFunc {
	serve := promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
	return func(c *gin.Context) {
		if token != "" {
			got := c.GetHeader("Authorization")
			if subtle.ConstantTimeCompare([]byte(got), []byte("Bearer "+token)) != 1 {
				abortError(c, http.StatusUnauthorized, "invalid_token", "send the metrics token as 'Authorization: Bearer <token>'")
				return
			}
		}
		serve.ServeHTTP(c.Writer, c.Request)
	}
}
