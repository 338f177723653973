package api

import (
	"time"

	"github.com/gin-gonic/gin"

	"github.com/aihigress/aihigress/internal/metrics"
	"github.com/aihigress/aihigress/internal/router"
)

// attemptMetrics is the state of the current upstream attempt of a gateway
// request that the provider metrics need.
type attemptMetrics struct {
	// started is when the attempt sent its request.
	started time.Time
	// firstChunk is when a streamed attempt received its first event.
	firstChunk time.Time
	// failedProvider is the provider of the last failed attempt, until the
	// next attempt counts the failover away from it.
	failedProvider string
}

// beginAttempt starts the metrics of an attempt with pick, and counts a
// failover when an earlier attempt of the request failed.
func (s *Server) beginAttempt(call *gatewayCall, pick router.Pick, started time.Time) {
	m := &call.metrics
	if m.failedProvider != "" {
		s.Recorder.RecordFailover(metrics.SourceGateway, m.failedProvider, pick.Candidate.ProviderID)
		m.failedProvider = ""
	}
	m.started, m.firstChunk = started, time.Time{}
}

// observeAttempt records the outcome of the current attempt. report calls
// it once per attempt, with the error that the router gets.
func (s *Server) observeAttempt(c *gin.Context, pick router.Pick, err error) {
	call := gatewayCallOf(c)
	m := &call.metrics
	if err != nil {
		m.failedProvider = pick.Candidate.ProviderID
	}
	if s.Recorder == nil || m.started.IsZero() {
		return
	}
	now := time.Now()
	attempt := metrics.Attempt{
		Source:       metrics.SourceGateway,
		ProviderID:   pick.Candidate.ProviderID,
		LogicalModel: call.logicalModel,
		Status:       metrics.StatusOf(c.Request.Context(), err),
		Latency:      now.Sub(m.started),
		End:          now,
	}
	if !m.firstChunk.IsZero() {
		attempt.TimeToFirstToken = m.firstChunk.Sub(m.started)
	}
	if err == nil {
		attempt.TokensIn, attempt.TokensOut = call.usage.prompt, call.usage.completion
	}
	s.Recorder.RecordAttempt(attempt)
}
