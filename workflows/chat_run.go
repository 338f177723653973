package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// DefaultMaxAttempts is the upstream attempt cap when ChatRunInput leaves it 0.
const DefaultMaxAttempts = 4

// UpstreamRetryPolicy governs upstream attempts. The workflow applies it
// itself, one StreamChat activity per attempt, instead of handing it to the
// activity: that way each attempt can go to the next candidate, and the
// attempt number and provider show in history, in run_state and in the
// activity summaries. NonRetryableErrorTypes are the activity error types
// that end the run at once.
var UpstreamRetryPolicy = temporal.RetryPolicy{
	InitialInterval:    500 * time.Millisecond,
	BackoffCoefficient: 2,
	MaximumInterval:    10 * time.Second,
	NonRetryableErrorTypes: []string{
		"upstream_bad_request", "upstream_auth", ErrorUnknownModel, ErrorRunNotFound, ErrorNoCandidate, ErrorInvalidInput,
	},
}

// ChatRunWorkflow carries one chat run. It marks the run running, streams the
// reply from an upstream, retrying on the next candidate when an attempt
// fails in a retryable way, and finalizes the run. FinalizeRun is idempotent,
// so the run is finalized once even when that activity is retried.
func ChatRunWorkflow(ctx workflow.Context, in ChatRunInput) (FinalizeResult, error) {
	state := RunState{Status: "queued"}
	if err := workflow.SetQueryHandler(ctx, RunStateQuery, func() (RunState, error) { return state, nil }); err != nil {
		return FinalizeResult{}, fmt.Errorf("register %s query: %w", RunStateQuery, err)
	}

	outcome := runUpstream(ctx, in.RunID, in.MaxAttempts, startRunLocally, streamChatAttempt, &state)
	return finalize(ctx, outcome, &state)
}

// streamChatAttempt runs one StreamChat activity and returns the candidate
// that it used and the run's last event number.
func streamChatAttempt(ctx workflow.Context, in AttemptInput) (Candidate, int64, error) {
	attemptCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 15 * time.Minute,
		// A worker that dies mid-stream stops heartbeating; the attempt
		// then times out here and the loop starts the next one.
		HeartbeatTimeout:    10 * time.Second,
		WaitForCancellation: true,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
		Summary:             fmt.Sprintf("upstream %s/%s attempt %d", in.Candidate.ProviderID, in.Candidate.Model, in.Attempt),
	})
	var result StreamChatResult
	err := workflow.ExecuteActivity(attemptCtx, StreamChatActivity, in).Get(attemptCtx, &result)
	return usedCandidate(in.Candidate, result.Candidate, err), result.LastSeq, err
}

// finalizeRetryPolicy retries FinalizeRun, which is idempotent, for about
// eight minutes.
var finalizeRetryPolicy = temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 20}

// finalize ends the run with outcome in a FinalizeRun activity and returns
// the final state. Finalization must happen even when the run was canceled,
// so it runs in a context that the cancellation does not reach.
func finalize(ctx workflow.Context, outcome FinalizeInput, state *RunState) (FinalizeResult, error) {
	finalCtx, _ := workflow.NewDisconnectedContext(ctx)
	finalCtx = workflow.WithActivityOptions(finalCtx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &finalizeRetryPolicy,
		Summary:             "finalize " + outcome.Status,
	})
	return finalized(finalCtx, outcome, state, workflow.ExecuteActivity(finalCtx, FinalizeRunActivity, outcome))
}

// finalizeLocally is finalize with FinalizeRun as a local activity, which
// runs in the workflow task that decided the outcome. That saves the
// activity task's round trip through the server and the workflow task that
// would follow it.
func finalizeLocally(ctx workflow.Context, outcome FinalizeInput, state *RunState) (FinalizeResult, error) {
	finalCtx, _ := workflow.NewDisconnectedContext(ctx)
	finalCtx = workflow.WithLocalActivityOptions(finalCtx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &finalizeRetryPolicy,
		Summary:             "finalize " + outcome.Status,
	})
	return finalized(finalCtx, outcome, state, workflow.ExecuteLocalActivity(finalCtx, FinalizeRunActivity, outcome))
}

// finalized waits for the FinalizeRun future and records the final state.
func finalized(finalCtx workflow.Context, outcome FinalizeInput, state *RunState, future workflow.Future) (FinalizeResult, error) {
	var result FinalizeResult
	if err := future.Get(finalCtx, &result); err != nil {
		return FinalizeResult{}, fmt.Errorf("finalize run %s: %w", outcome.RunID, err)
	}
	state.Status = result.Status
	state.LastSeq = result.LastSeq
	setStatus(finalCtx, result.Status, state.Provider)
	return result, nil
}

// startFunc prepares a run for its upstream attempts, upserts its running
// status unless that is set already, and returns the candidates to try.
type startFunc func(ctx workflow.Context, runID string) (StartRunResult, error)

// startRunLocally runs the StartRun local activity, which marks the run
// running and plans its candidates, and then upserts the running status.
func startRunLocally(ctx workflow.Context, runID string) (StartRunResult, error) {
	startCtx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 5, NonRetryableErrorTypes: UpstreamRetryPolicy.NonRetryableErrorTypes},
	})
	var started StartRunResult
	if err := workflow.ExecuteLocalActivity(startCtx, StartRunActivity, runID).Get(startCtx, &started); err != nil {
		return started, err
	}
	setRunning(ctx, started)
	return started, nil
}

// setRunning upserts the running status with the first candidate's
// provider.
func setRunning(ctx workflow.Context, started StartRunResult) {
	firstProvider := ""
	if len(started.Candidates) > 0 {
		firstProvider = started.Candidates[0].ProviderID
	}
	setStatus(ctx, "running", firstProvider)
}

// attemptFunc makes one upstream attempt of a run. It returns the candidate
// that the attempt used, which the activity may have switched, and the
// run's last event number after a success.
type attemptFunc func(ctx workflow.Context, in AttemptInput) (used Candidate, lastSeq int64, err error)

// runUpstream starts the run with start and makes upstream attempts until
// one succeeds, the policy gives up or the workflow is canceled. It returns
// the outcome to finalize.
func runUpstream(ctx workflow.Context, runID string, maxAttempts int, start startFunc, attemptOnce attemptFunc, state *RunState) FinalizeInput {
	logger := workflow.GetLogger(ctx)
	outcome := FinalizeInput{RunID: runID}

	started, err := start(ctx, runID)
	if err != nil {
		return failure(ctx, outcome, err)
	}
	state.Status = "running"
	state.LastSeq = started.LastSeq

	if maxAttempts <= 0 {
		maxAttempts = DefaultMaxAttempts
	}
	// tried lists the candidates that attempts used, each once.
	var tried []Candidate
	for attempt := 1; ; attempt++ {
		candidate := nextCandidate(started.Candidates, tried, attempt)
		state.Attempt, state.Provider, state.Model = attempt, candidate.ProviderID, candidate.Model
		workflow.SetCurrentDetails(ctx, fmt.Sprintf("attempt %d on %s/%s", attempt, candidate.ProviderID, candidate.Model))

		used, lastSeq, err := attemptOnce(ctx, AttemptInput{
			RunID: runID, Attempt: attempt, Candidate: candidate, Tried: slices.Clone(tried),
		})
		state.Provider, state.Model = used.ProviderID, used.Model
		if !slices.Contains(tried, used) {
			tried = append(tried, used)
		}
		if err == nil {
			state.LastSeq = lastSeq
			outcome.Status = "succeeded"
			return outcome
		}
		if ctx.Err() != nil || temporal.IsCanceledError(err) {
			return canceled(outcome)
		}

		code, message, retryable := classify(err)
		if !retryable || attempt >= maxAttempts {
			outcome.Status, outcome.ErrorCode, outcome.ErrorMessage = "failed", code, message
			return outcome
		}
		logger.Warn("upstream attempt failed, retrying", "run_id", runID, "attempt", attempt,
			"provider", used.ProviderID, "error_code", code)

		if err := workflow.Sleep(ctx, retryDelay(attempt, err)); err != nil {
			return canceled(outcome)
		}
	}
}

// nextCandidate returns the first candidate that no attempt has used yet,
// and once all have been used, goes round the list by attempt number.
func nextCandidate(candidates, tried []Candidate, attempt int) Candidate {
	for _, c := range candidates {
		if !slices.Contains(tried, c) {
			return c
		}
	}
	return candidates[(attempt-1)%len(candidates)]
}

// usedCandidate returns the candidate that an attempt actually used, which
// the activity reports when it switched away from the planned one. Results
// and errors recorded before it reported this carry nothing, and the
// planned candidate is returned.
func usedCandidate(planned, reported Candidate, err error) Candidate {
	if err == nil {
		if reported.ProviderID != "" {
			return reported
		}
		return planned
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.HasDetails() {
		var failure AttemptFailure
		if appErr.Details(&failure) == nil && failure.Candidate.ProviderID != "" {
			return failure.Candidate
		}
	}
	return planned
}

func failure(ctx workflow.Context, outcome FinalizeInput, err error) FinalizeInput {
	if ctx.Err() != nil || temporal.IsCanceledError(err) {
		return canceled(outcome)
	}
	code, message, _ := classify(err)
	outcome.Status, outcome.ErrorCode, outcome.ErrorMessage = "failed", code, message
	return outcome
}

func canceled(outcome FinalizeInput) FinalizeInput {
	outcome.Status, outcome.ErrorCode, outcome.ErrorMessage = "canceled", "canceled", "the run was canceled"
	return outcome
}

// classify turns an activity error into the run's error code and message and
// decides whether another attempt may help.
func classify(err error) (code, message string, retryable bool) {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		code = appErr.Type()
		if code == "" {
			code = "internal_error"
		}
		retryable = !appErr.NonRetryable()
		for _, t := range UpstreamRetryPolicy.NonRetryableErrorTypes {
			if t == code {
				retryable = false
			}
		}
		return code, appErr.Message(), retryable
	}

	var timeoutErr *temporal.TimeoutError
	if errors.As(err, &timeoutErr) {
		if timeoutErr.TimeoutType() == enumspb.TIMEOUT_TYPE_HEARTBEAT {
			return "worker_lost", "the worker stopped heartbeating during the upstream call", true
		}
		return "upstream_timeout", "the upstream call timed out", true
	}
	return "internal_error", err.Error(), true
}

// retryDelay returns the wait before the attempt after a failed one: the
// policy's backoff, or the activity's NextRetryDelay when that is longer,
// capped at the policy's MaximumInterval.
func retryDelay(attempt int, err error) time.Duration {
	delay := backoff(attempt)
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.NextRetryDelay() > delay {
		delay = min(appErr.NextRetryDelay(), UpstreamRetryPolicy.MaximumInterval)
	}
	return delay
}

func backoff(attempt int) time.Duration {
	d := UpstreamRetryPolicy.InitialInterval
	for i := 1; i < attempt; i++ {
		d = time.Duration(float64(d) * UpstreamRetryPolicy.BackoffCoefficient)
		if d >= UpstreamRetryPolicy.MaximumInterval {
			return UpstreamRetryPolicy.MaximumInterval
		}
	}
	return d
}

// setStatus upserts AihRunStatus and, when provider is set, AihProvider in
// one command. Replay compares only the command type, not the attributes,
// so histories recorded before AihProvider existed still replay.
// TODO: each upsert costs the cluster about five extra persistence reads per
// run. That is most of the throughput gap to a bare workflow measured in
// docs/benchmarks.md. GetVersion upserts a search attribute of its own, so
// dropping the "running" upsert safely needs worker versioning instead.
func setStatus(ctx workflow.Context, status, provider string) {
	updates := []temporal.SearchAttributeUpdate{AttrRunStatus.ValueSet(status)}
	if provider != "" {
		updates = append(updates, AttrProvider.ValueSet(provider))
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, updates...); err != nil {
		workflow.GetLogger(ctx).Warn("upsert AihRunStatus failed", "status", status, "error", err)
	}
}
