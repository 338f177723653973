package api

import (
	"crypto/subtle"
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
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aihigress_http_requests_total",
			Help: "HTTP requests by route pattern, method and status code.",
		}, []string{"route", "method", "status"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "aihigress_http_request_duration_seconds",
			Help:    "Time to the end of the response, in seconds; SSE streams count until they close.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"route", "method"}),
		streamsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "aihigress_sse_streams_open",
			Help: "SSE event streams currently open.",
		}),
		runsStarted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aihigress_runs_started_total",
			Help: "Runs whose workflow was started, by kind.",
		}, []string{"kind"}),
	}
	m.registry.MustRegister(m.requests, m.requestDuration, m.streamsOpen, m.runsStarted,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
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
