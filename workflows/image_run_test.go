package workflows_test

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/aihigress/aihigress/workflows"
)

// fakeImageActivities replaces the image run activities.
type fakeImageActivities struct {
	fakeActivities
	generate func(in workflows.AttemptInput) (workflows.GenerateImagesResult, error)
	// generateCtx, when set, replaces generate and gets the activity's
	// context.
	generateCtx func(ctx context.Context) (workflows.GenerateImagesResult, error)
	seenImg     []workflows.AttemptInput
	// statuses lists the AihRunStatus values that the workflow upserted.
	statuses []string
}

func (f *fakeImageActivities) GenerateImages(ctx context.Context, in workflows.AttemptInput) (workflows.GenerateImagesResult, error) {
	f.seenImg = append(f.seenImg, in)
	if f.generateCtx != nil {
		return f.generateCtx(ctx)
	}
	return f.generate(in)
}

func newImageEnv(t *testing.T, f *fakeImageActivities) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(tlog.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(workflows.ImageGenerationWorkflow, workflow.RegisterOptions{Name: workflows.ImageGenerationWorkflowName})
	env.RegisterActivityWithOptions(f.StartRun, activity.RegisterOptions{Name: workflows.StartRunActivity})
	env.RegisterActivityWithOptions(f.GenerateImages, activity.RegisterOptions{Name: workflows.GenerateImagesActivity})
	env.RegisterActivityWithOptions(f.FinalizeRun, activity.RegisterOptions{Name: workflows.FinalizeRunActivity})
	env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		if status, ok := args.Get(0).(temporal.SearchAttributes).GetKeyword(workflows.AttrRunStatus); ok {
			f.statuses = append(f.statuses, status)
		}
	}).Return(nil).Maybe()
	return env
}

func TestImageRunOutcomes(t *testing.T) {
	stored := workflows.GenerateImagesResult{Images: []workflows.ImageRef{{ObjectKey: "p/images/k.png", Size: 10, ContentType: "image/png"}}, LastSeq: 3}
	tests := []struct {
		name         string
		generate     func(in workflows.AttemptInput) (workflows.GenerateImagesResult, error)
		wantStatus   string
		wantCode     string
		wantAttempts []string
	}{
		{
			name:         "first attempt stores images",
			generate:     func(workflows.AttemptInput) (workflows.GenerateImagesResult, error) { return stored, nil },
			wantStatus:   "succeeded",
			wantAttempts: []string{"a"},
		},
		{
			name: "server error fails over",
			generate: func(in workflows.AttemptInput) (workflows.GenerateImagesResult, error) {
				if in.Attempt == 1 {
					return workflows.GenerateImagesResult{}, upstreamError("upstream_error", false)
				}
				return stored, nil
			},
			wantStatus:   "succeeded",
			wantAttempts: []string{"a", "b"},
		},
		{
			name: "storage failure is retried",
			generate: func(in workflows.AttemptInput) (workflows.GenerateImagesResult, error) {
				if in.Attempt == 1 {
					return workflows.GenerateImagesResult{}, upstreamError("storage_error", false)
				}
				return stored, nil
			},
			wantStatus:   "succeeded",
			wantAttempts: []string{"a", "b"},
		},
		{
			name: "bad request is not retried",
			generate: func(workflows.AttemptInput) (workflows.GenerateImagesResult, error) {
				return workflows.GenerateImagesResult{}, upstreamError("upstream_bad_request", true)
			},
			wantStatus:   "failed",
			wantCode:     "upstream_bad_request",
			wantAttempts: []string{"a"},
		},
		{
			name: "attempts stop at the limit",
			generate: func(workflows.AttemptInput) (workflows.GenerateImagesResult, error) {
				return workflows.GenerateImagesResult{}, upstreamError("rate_limited", false)
			},
			wantStatus:   "failed",
			wantCode:     "rate_limited",
			wantAttempts: []string{"a", "b", "a"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeImageActivities{fakeActivities: fakeActivities{candidates: twoCandidates()}, generate: tt.generate}
			env := newImageEnv(t, f)
			env.ExecuteWorkflow(workflows.ImageGenerationWorkflowName, workflows.ImageRunInput{RunID: "r1", MaxAttempts: 3})

			if !env.IsWorkflowCompleted() {
				t.Fatal("workflow did not complete")
			}
			if err := env.GetWorkflowError(); err != nil {
				t.Fatalf("workflow error: %v", err)
			}
			var result workflows.FinalizeResult
			if err := env.GetWorkflowResult(&result); err != nil {
				t.Fatal(err)
			}
			if result.Status != tt.wantStatus {
				t.Errorf("status = %q, want %q", result.Status, tt.wantStatus)
			}
			if len(f.finalized) != 1 || f.finalized[0].ErrorCode != tt.wantCode {
				t.Errorf("finalized = %+v, want one with error code %q", f.finalized, tt.wantCode)
			}
			var providers []string
			for _, in := range f.seenImg {
				providers = append(providers, in.Candidate.ProviderID)
			}
			if len(providers) != len(tt.wantAttempts) {
				t.Fatalf("attempts on %v, want %v", providers, tt.wantAttempts)
			}
			for i := range providers {
				if providers[i] != tt.wantAttempts[i] {
					t.Errorf("attempt %d on %q, want %q", i+1, providers[i], tt.wantAttempts[i])
				}
			}
		})
	}
}

// TestImageRunFinalizesLocally checks that new image runs finalize in a
// local activity, which saves an activity task and a workflow task, also
// when the run is canceled.
func TestImageRunFinalizesLocally(t *testing.T) {
	stored := workflows.GenerateImagesResult{Images: []workflows.ImageRef{{ObjectKey: "p/images/k.png", Size: 10, ContentType: "image/png"}}, LastSeq: 3}
	tests := []struct {
		name       string
		generate   func(ctx context.Context) (workflows.GenerateImagesResult, error)
		cancel     bool
		wantStatus string
	}{
		{
			name:       "succeeded",
			generate:   func(context.Context) (workflows.GenerateImagesResult, error) { return stored, nil },
			wantStatus: "succeeded",
		},
		{
			name: "failed",
			generate: func(context.Context) (workflows.GenerateImagesResult, error) {
				return workflows.GenerateImagesResult{}, upstreamError("upstream_bad_request", true)
			},
			wantStatus: "failed",
		},
		{
			name: "canceled",
			generate: func(ctx context.Context) (workflows.GenerateImagesResult, error) {
				<-ctx.Done()
				return workflows.GenerateImagesResult{}, ctx.Err()
			},
			cancel:     true,
			wantStatus: "canceled",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeImageActivities{fakeActivities: fakeActivities{candidates: twoCandidates()}}
			f.generateCtx = tt.generate
			env := newImageEnv(t, f)
			var activities, localActivities []string
			env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
				activities = append(activities, info.ActivityType.Name)
			})
			env.SetOnLocalActivityStartedListener(func(info *activity.Info, _ context.Context, _ []any) {
				localActivities = append(localActivities, info.ActivityType.Name)
			})
			if tt.cancel {
				env.RegisterDelayedCallback(env.CancelWorkflow, time.Second)
			}
			env.ExecuteWorkflow(workflows.ImageGenerationWorkflowName, workflows.ImageRunInput{RunID: "r1", MaxAttempts: 1})

			if !env.IsWorkflowCompleted() {
				t.Fatal("workflow did not complete")
			}
			if len(f.finalized) != 1 || f.finalized[0].Status != tt.wantStatus {
				t.Errorf("finalized = %+v, want one with status %q", f.finalized, tt.wantStatus)
			}
			if slices.Contains(activities, workflows.FinalizeRunActivity) {
				t.Errorf("activities = %v, want FinalizeRun only as a local activity", activities)
			}
			if !slices.Equal(localActivities, []string{workflows.StartRunActivity, workflows.FinalizeRunActivity}) {
				t.Errorf("local activities = %v, want StartRun and FinalizeRun", localActivities)
			}
		})
	}
}

// TestImageRunPlannedStart checks that a run whose input carries the API's
// plan skips the StartRun local activity and tries the planned candidates,
// and that a run without a plan, or one that GetVersion sends down the old
// path, still runs StartRun. A run that the API started as running
// skips GetVersion and upserts only its final status.
func TestImageRunPlannedStart(t *testing.T) {
	planned := []workflows.Candidate{{ProviderID: "c", Model: "m-c"}, {ProviderID: "d", Model: "m-d"}}
	stored := workflows.GenerateImagesResult{Images: []workflows.ImageRef{{ObjectKey: "p/images/k.png", Size: 10, ContentType: "image/png"}}, LastSeq: 3}
	// The first attempt fails over, so the second candidate shows too.
	generate := func(in workflows.AttemptInput) (workflows.GenerateImagesResult, error) {
		if in.Attempt == 1 {
			return workflows.GenerateImagesResult{}, upstreamError("upstream_error", false)
		}
		return stored, nil
	}
	tests := []struct {
		name                string
		candidates          []workflows.Candidate
		runningAtStart      bool
		oldVersion          bool
		wantLocalActivities []string
		wantAttempts        []string
		wantStatuses        []string
	}{
		{
			name:                "plan in the input",
			candidates:          planned,
			wantLocalActivities: []string{workflows.FinalizeRunActivity},
			wantAttempts:        []string{"c", "d"},
			wantStatuses:        []string{"running", "succeeded"},
		},
		{
			name:                "plan and running status set by the API",
			candidates:          planned,
			runningAtStart:      true,
			wantLocalActivities: []string{workflows.FinalizeRunActivity},
			wantAttempts:        []string{"c", "d"},
			wantStatuses:        []string{"succeeded"},
		},
		{
			// GetVersion would send the run down the old path, so the
			// planned attempts show that the workflow did not ask it.
			name:                "running status set by the API, GetVersion mocked old",
			candidates:          planned,
			runningAtStart:      true,
			oldVersion:          true,
			wantLocalActivities: []string{workflows.FinalizeRunActivity},
			wantAttempts:        []string{"c", "d"},
			wantStatuses:        []string{"succeeded"},
		},
		{
			name:                "no plan",
			wantLocalActivities: []string{workflows.StartRunActivity, workflows.FinalizeRunActivity},
			wantAttempts:        []string{"a", "b"},
			wantStatuses:        []string{"running", "succeeded"},
		},
		{
			name:                "plan recorded by an older worker",
			candidates:          planned,
			oldVersion:          true,
			wantLocalActivities: []string{workflows.StartRunActivity, workflows.FinalizeRunActivity},
			wantAttempts:        []string{"a", "b"},
			wantStatuses:        []string{"running", "succeeded"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeImageActivities{fakeActivities: fakeActivities{candidates: twoCandidates()}, generate: generate}
			env := newImageEnv(t, f)
			if tt.oldVersion {
				env.OnGetVersion("image-planned-start", workflow.DefaultVersion, workflow.Version(1)).Return(workflow.DefaultVersion).Maybe()
			}
			var localActivities []string
			env.SetOnLocalActivityStartedListener(func(info *activity.Info, _ context.Context, _ []any) {
				localActivities = append(localActivities, info.ActivityType.Name)
			})
			env.ExecuteWorkflow(workflows.ImageGenerationWorkflowName, workflows.ImageRunInput{
				RunID: "r1", MaxAttempts: 3, Candidates: tt.candidates, RunningAtStart: tt.runningAtStart,
			})

			if !env.IsWorkflowCompleted() {
				t.Fatal("workflow did not complete")
			}
			if err := env.GetWorkflowError(); err != nil {
				t.Fatalf("workflow error: %v", err)
			}
			if !slices.Equal(localActivities, tt.wantLocalActivities) {
				t.Errorf("local activities = %v, want %v", localActivities, tt.wantLocalActivities)
			}
			var attempts []string
			for _, in := range f.seenImg {
				attempts = append(attempts, in.Candidate.ProviderID)
			}
			if !slices.Equal(attempts, tt.wantAttempts) {
				t.Errorf("attempts on %v, want %v", attempts, tt.wantAttempts)
			}
			if len(f.finalized) != 1 || f.finalized[0].Status != "succeeded" {
				t.Errorf("finalized = %+v, want one succeeded", f.finalized)
			}
			if !slices.Equal(f.statuses, tt.wantStatuses) {
				t.Errorf("upserted statuses = %v, want %v", f.statuses, tt.wantStatuses)
			}
		})
	}
}
