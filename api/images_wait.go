package api

import (
	"context"
	"time"

	"github.com/aihigress/aihigress/internal/events"
	"github.com/aihigress/aihigress/models"
	"github.com/aihigress/aihigress/workflows"
)

// workflowResultDelay is how long a wait that follows the run's live
// events lets pass before it also requests the workflow result.
const workflowResultDelay = time.Second

// waitForRunEnd waits until the run has ended: until its terminal event
// arrives on the event hub or its workflow returns, whichever comes first.
// FinalizeRun publishes the terminal event once the run's outcome is
// stored, which is before the workflow task that ran it completes, so the
// hub usually wakes the request a few milliseconds sooner. The workflow
// result covers a server without a hub and an event that Redis lost. With
// the hub, the request polls for the result only after workflowResultDelay,
// because the long poll is one more Temporal request, and it would arrive
// while Temporal hands the run's first tasks to a worker. A run that ended
// before the subscription started is found in the store. It returns nil
// once the run has ended, and otherwise the error of the workflow result,
// such as ctx's deadline.
func (s *Server) waitForRunEnd(ctx context.Context, run *models.ChatRun) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var live <-chan []events.Wire
	if s.Follower != nil && s.Follower.Hub != nil {
		sub, err := s.Follower.Hub.Subscribe(ctx, run.ID)
		if err != nil {
			s.Logger.Warn("live events unavailable; waiting for the workflow result only", "run_id", run.ID, "workflow_id", run.WorkflowID, "error", err)
		} else {
			defer sub.Close()
			live = sub.C()
		}
	}

	delay := time.Duration(0)
	if live != nil {
		delay = workflowResultDelay
		stored, err := s.Store.RunByID(ctx, run.ID)
		if err == nil && models.IsTerminalRunStatus(stored.Status) {
			return nil
		}
	}

	// The goroutine ends when ctx is canceled, and the buffer lets it
	// send its result after this function has returned.
	result := make(chan error, 1)
	go func() {
		timer := time.NewTimer(delay)
		defer timer.Stop()
		select {
		case <-ctx.Done():
			result <- ctx.Err()
			return
		case <-timer.C:
		}
		var finalized workflows.FinalizeResult
		result <- s.Temporal.GetWorkflow(ctx, run.WorkflowID, "").Get(ctx, &finalized)
	}()

	for {
		select {
		case err := <-result:
			return err
		case batch := <-live:
			for _, event := range batch {
				if models.IsTerminalEvent(event.EventType) {
					return nil
				}
			}
		}
	}
}
