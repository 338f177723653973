package activities

import (
	"context"
	"time"

	"github.com/aihigress/aihigress/internal/metrics"
	"github.com/aihigress/aihigress/models"
	"github.com/aihigress/aihigress/workflows"
)

// recordFailover counts a failover when the run's previous attempt, which
// failed or the workflow would not make another, used another candidate
// than used. run is the row as read before this attempt recorded itself.
func recordFailover(recorder *metrics.Recorder, run *models.ChatRun, attempt int, used workflows.Candidate) {
	if run.Attempt <= 0 || run.Attempt >= attempt || run.SelectedProviderID == "" {
		return
	}
	if run.SelectedProviderID != used.ProviderID || run.SelectedProviderModel != used.Model {
		recorder.RecordFailover(metrics.SourceWorker, run.SelectedProviderID, used.ProviderID)
	}
}

// upstreamCall is one upstream call of a worker attempt, for the provider
// metrics.
type upstreamCall struct {
	run  *models.ChatRun
	used workflows.Candidate
	// started is when the call began, and firstToken when its first
	// non-empty delta arrived; zero when none did.
	started    time.Time
	firstToken time.Time
	tokensIn   int
	tokensOut  int
}

// record counts the call, which ended now with err.
func (c *upstreamCall) record(ctx context.Context, recorder *metrics.Recorder, err error) {
	if recorder == nil {
		return
	}
	now := time.Now()
	attempt := metrics.Attempt{
		Source:       metrics.SourceWorker,
		ProviderID:   c.used.ProviderID,
		LogicalModel: c.run.RequestedLogicalModel,
		Status:       metrics.StatusOf(ctx, err),
		Latency:      now.Sub(c.started),
		End:          now,
	}
	if !c.firstToken.IsZero() {
		attempt.TimeToFirstToken = c.firstToken.Sub(c.started)
	}
	if err == nil {
		attempt.TokensIn, attempt.TokensOut = c.tokensIn, c.tokensOut
	}
	recorder.RecordAttempt(attempt)
}

// timeFirstToken wraps onDelta so that the call notes when its first
// non-empty delta arrives. The upstream client calls onDelta from one
// goroutine, before StreamChat returns.
func (c *upstreamCall) timeFirstToken(onDelta func(string) error) func(string) error {
	return func(delta string) error {
		if c.firstToken.IsZero() && delta != "" {
			c.firstToken = time.Now()
		}
		return onDelta(delta)
	}
}

// recordRunFinished counts a run that FinalizeRun moved to its final
// status.
func recordRunFinished(recorder *metrics.Recorder, run models.ChatRun) {
	duration := time.Duration(0)
	if run.LatencyMS != nil {
		duration = time.Duration(*run.LatencyMS) * time.Millisecond
	}
	recorder.RecordRunFinished(run.Kind, run.Status, duration)
}
