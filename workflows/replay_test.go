package workflows_test

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/aihigress/aihigress/workflows"
)

// TestReplayRecordedHistories replays every history in testdata/histories
// (recorded from the integration tests by `make replay-fixtures`) against the
// current workflow code, so that a non-deterministic change fails here
// before it reaches a cluster with open runs.
//
// image_succeeded_activity_finalize.json was recorded before the image
// workflow finalized its runs in a local activity, and the image histories
// ending in _start_run before the API planned image runs, so those ran
// StartRun. The image histories ending in _finalize_version were recorded
// while planned runs still asked GetVersion for image-local-finalize, so
// they hold a second version marker. Those ending in _planned_version
// were recorded before the API set the running status at the start, so
// they hold the image-planned-start marker and the running upsert. No test
// records them any more. Keep them: they prove that runs started by older
// workers and APIs still replay.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "histories", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no recorded histories in testdata/histories; run `make replay-fixtures`")
	}
	logger := tlog.NewStructuredLogger(slog.New(slog.DiscardHandler))
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".json"), func(t *testing.T) {
			replayer := worker.NewWorkflowReplayer()
			replayer.RegisterWorkflowWithOptions(workflows.ChatRunWorkflow, workflow.RegisterOptions{Name: workflows.ChatRunWorkflowName})
			replayer.RegisterWorkflowWithOptions(workflows.ImageGenerationWorkflow, workflow.RegisterOptions{Name: workflows.ImageGenerationWorkflowName})
			if err := replayer.ReplayWorkflowHistoryFromJSONFile(logger, file); err != nil {
				t.Fatalf("replay %s: %v", file, err)
			}
		})
	}
}

// changedChatRunWorkflow is ChatRunWorkflow with one extra step at the
// start, as a careless edit would add without workflow.GetVersion.
func changedChatRunWorkflow(ctx workflow.Context, in workflows.ChatRunInput) (workflows.FinalizeResult, error) {
	if err := workflow.Sleep(ctx, 1); err != nil {
		return workflows.FinalizeResult{}, err
	}
	return workflows.ChatRunWorkflow(ctx, in)
}

// changedImageGenerationWorkflow is ImageGenerationWorkflow with the same
// extra step.
func changedImageGenerationWorkflow(ctx workflow.Context, in workflows.ImageRunInput) (workflows.FinalizeResult, error) {
	if err := workflow.Sleep(ctx, 1); err != nil {
		return workflows.FinalizeResult{}, err
	}
	return workflows.ImageGenerationWorkflow(ctx, in)
}

// TestReplayDetectsNonDeterminism proves that the replay test can fail: a
// workflow that schedules a timer the recorded history lacks is rejected.
func TestReplayDetectsNonDeterminism(t *testing.T) {
	tests := []struct {
		history  string
		name     string
		workflow any
	}{
		{"chat_succeeded", workflows.ChatRunWorkflowName, changedChatRunWorkflow},
		{"image_succeeded", workflows.ImageGenerationWorkflowName, changedImageGenerationWorkflow},
	}
	for _, tt := range tests {
		t.Run(tt.history, func(t *testing.T) {
			file := filepath.Join("..", "testdata", "histories", tt.history+".json")
			replayer := worker.NewWorkflowReplayer()
			replayer.RegisterWorkflowWithOptions(tt.workflow, workflow.RegisterOptions{Name: tt.name})
			err := replayer.ReplayWorkflowHistoryFromJSONFile(tlog.NewStructuredLogger(slog.New(slog.DiscardHandler)), file)
			if err == nil {
				t.Fatal("replaying a changed workflow succeeded; want a non-determinism error")
			}
			// TMPRL1100 is the SDK's code for a non-determinism error.
			if !strings.Contains(err.Error(), "TMPRL1100") {
				t.Errorf("replay error = %v, want a non-determinism error (TMPRL1100)", err)
			}
		})
	}
}
