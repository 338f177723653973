package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// ImageGenerationWorkflow carries one image run, from the gateway or from a
// conversation. It starts the run, which marks it running and plans its
// candidates unless the input carries the API's plan, requests the images from an upstream,
// retrying on the next candidate when an attempt fails in a retryable way,
// and finalizes the run. The GenerateImages activity stores the images and
// returns only their object keys, so no image bytes enter the history.
func ImageGenerationWorkflow(ctx workflow.Context, in ImageRunInput) (FinalizeResult, error) {
	state := RunState{Status: "queued"}
	if err := workflow.SetQueryHandler(ctx, RunStateQuery, func() (RunState, error) { return state, nil }); err != nil {
		return FinalizeResult{}, fmt.Errorf("register %s query: %w", RunStateQuery, err)
	}

	start := startRunLocally
	// Only inputs with a plan reach GetVersion, so histories of runs
	// without one, recorded before or after plannedStartChange, have no
	// marker to match. Inputs with RunningAtStart come from APIs that
	// postdate plannedStartChange and skip it.
	planned := in.RunningAtStart ||
		len(in.Candidates) > 0 && workflow.GetVersion(ctx, plannedStartChange, workflow.DefaultVersion, 1) == 1
	if planned {
		start = plannedStart(in.Candidates, !in.RunningAtStart)
	}
	outcome := runUpstream(ctx, in.RunID, in.MaxAttempts, start, generateImagesAttempt, &state)

	// Runs that reached this point under a worker from before
	// localFinalizeChange recorded FinalizeRun as an activity, and replay
	// must schedule it the same way. Every worker that records
	// plannedStartChange also finalizes locally, so planned runs skip this
	// GetVersion and the marker and search attribute update that it
	// records. Replay passes over the markers that earlier planned runs
	// recorded, as the SDK does for every version marker without a call.
	if !planned && workflow.GetVersion(ctx, localFinalizeChange, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return finalize(ctx, outcome, &state)
	}
	return finalizeLocally(ctx, outcome, &state)
}

// localFinalizeChange is the change ID of finalizing image runs in a local
// activity.
const localFinalizeChange = "image-local-finalize"

// plannedStartChange is the change ID of starting image runs with the
// candidates that the API planned, instead of the StartRun local activity.
const plannedStartChange = "image-planned-start"

// plannedStart returns a startFunc that uses the API's plan. It saves the
// StartRun local activity, whose database reads and writes and hand-off
// to the local activity worker took several milliseconds of the first
// workflow task. The first GenerateImages attempt marks the run running.
// With upsert false the API has set the running status already.
func plannedStart(candidates []Candidate, upsert bool) startFunc {
	return func(ctx workflow.Context, _ string) (StartRunResult, error) {
		started := StartRunResult{Candidates: candidates}
		if upsert {
			setRunning(ctx, started)
		}
		return started, nil
	}
}

// generateImagesAttempt runs one GenerateImages activity.
func generateImagesAttempt(ctx workflow.Context, in AttemptInput) (Candidate, int64, error) {
	attemptCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		// Image models take minutes for large or many images.
		StartToCloseTimeout: 10 * time.Minute,
		// The activity heartbeats while it waits for the upstream, so a
		// worker that dies is noticed within this timeout and the next
		// attempt starts.
		HeartbeatTimeout:    10 * time.Second,
		WaitForCancellation: true,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
		Summary:             fmt.Sprintf("images %s/%s attempt %d", in.Candidate.ProviderID, in.Candidate.Model, in.Attempt),
	})
	var result GenerateImagesResult
	err := workflow.ExecuteActivity(attemptCtx, GenerateImagesActivity, in).Get(attemptCtx, &result)
	return usedCandidate(in.Candidate, result.Candidate, err), result.LastSeq, err
}
