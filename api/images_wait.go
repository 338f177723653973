package api

import (
	"context"

	"github.com/aihigress/aihigress/internal/events"
	"github.com/aihigress/aihigress/models"
	"github.com/aihigress/aihigress/workflows"
)

// waitForRunEnd waits until the run has ended: until its terminal event
// arrives on the event hub or its workflow returns, whichever comes first.
// FinalizeRun publishes the terminal event once the run's outcome is
// stored, which is before the workflow task that ran it completes, so the
// hub usually wakes the request a few milliseconds sooner. The workflow
// result covers a server without a hub, an event published before the
// subscription started and an event that Redis lost. It returns nil once
// the run has ended, and otherwise the error of the workflow result, such as
// ctx's deadline.
func (s *Server) waitForRunEnd(ctx context.Context, run *models.ChatRun) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The goroutine ends when ctx is canceled, and the buffer lets it
	// send its result after this function has returned.
	result := make(chan error, 1)
	go func() {
		var finalized workflows.FinalizeResult
		result <- s.Temporal.GetWorkflow(ctx, run.WorkflowID, "").Get(ctx, &finalized)
	}()

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
