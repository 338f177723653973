package workflows_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// fakeActivities replaces the activities package so that the tests
// exercise only the workflow's decisions.
type fakeActivities struct {
	candidates []workflows.Candidate
	startErr   error
	// attempts returns the outcome of StreamChat per attempt (1-based).
	attempts  func(ctx context.Context, in workflows.StreamChatInput) (workflows.StreamChatResult, error)
	seen      []workflows.StreamChatInput
	finalized []workflows.FinalizeInput
}

func (f *fakeActivities) StartRun(_ context.Context, runID string) (workflows.StartRunResult, error) {
	if f.startErr != nil {
		return workflows.StartRunResult{}, f.startErr
	}
	return workflows.StartRunResult{Candidates: f.candidates, LastSeq: 1}, nil
}

func (f *fakeActivities) StreamChat(ctx context.Context, in workflows.StreamChatInput) (workflows.StreamChatResult, error) {
	f.seen = append(f.seen, in)
	return f.attempts(ctx, in)
}

func (f *fakeActivities) FinalizeRun(_ context.Context, in workflows.FinalizeInput) (workflows.FinalizeResult, error) {
	f.finalized = append(f.finalized, in)
	return workflows.FinalizeResult{Status: in.Status, LastSeq: 9}, nil
}

func newEnv(t *testing.T, f *fakeActivities) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(tlog.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(workflows.ChatRunWorkflow, workflow.RegisterOptions{Name: workflows.ChatRunWorkflowName})
	env.RegisterActivityWithOptions(f.StartRun, activity.RegisterOptions{Name: workflows.StartRunActivity})
	env.RegisterActivityWithOptions(f.StreamChat, activity.RegisterOptions{Name: workflows.StreamChatActivity})
	env.RegisterActivityWithOptions(f.FinalizeRun, activity.RegisterOptions{Name: workflows.FinalizeRunActivity})
	env.OnUpsertTypedSearchAttributes(mock.Anything).Return(nil).Maybe()
	return env
}

func twoCandidates() []workflows.Candidate {
	return []workflows.Candidate{{ProviderID: "a", Model: "m-a"}, {ProviderID: "b", Model: "m-b"}}
}

func upstreamError(kind string, nonRetryable bool) error {
	return temporal.NewApplicationErrorWithOptions("upstream said no", kind, temporal.ApplicationErrorOptions{NonRetryable: nonRetryable})
}

func TestChatRunOutcomes(t *testing.T) {
	tests := []struct {
		name         string
		maxAttempts  int
		startErr     error
		attempt      func(in workflows.StreamChatInput) (workflows.StreamChatResult, error)
		wantStatus   string
		wantCode     string
		wantAttempts []string // provider of each attempt, in order
	}{
		{
			name: "first attempt succeeds",
			attempt: func(workflows.StreamChatInput) (workflows.StreamChatResult, error) {
				return workflows.StreamChatResult{TextLength: 5, LastSeq: 4}, nil
			},
			wantStatus:   "succeeded",
			wantAttempts: []string{"a"},
		},
		{
			name: "rate limit fails over to next candidate",
			attempt: func(in workflows.StreamChatInput) (workflows.StreamChatResult, error) {
				if in.Attempt == 1 {
					return workflows.StreamChatResult{}, upstreamError("rate_limited", false)
				}
				return workflows.StreamChatResult{LastSeq: 3}, nil
			},
			wantStatus:   "succeeded",
			wantAttempts: []string{"a", "b"},
		},
		{
			name: "rejected key fails over to next candidate",
			attempt: func(in workflows.StreamChatInput) (workflows.StreamChatResult, error) {
				if in.Attempt == 1 {
					return workflows.StreamChatResult{}, upstreamError(workflows.ErrorKeyRejected, false)
				}
				return workflows.StreamChatResult{LastSeq: 3}, nil
			},
			wantStatus:   "succeeded",
			wantAttempts: []string{"a", "b"},
		},
		{
			// Histories recorded before upstream_key_rejected existed end
			// the run on upstream_auth, and replaying them must too.
			name: "upstream_auth is not retried",
			attempt: func(workflows.StreamChatInput) (workflows.StreamChatResult, error) {
				return workflows.StreamChatResult{}, upstreamError("upstream_auth", true)
			},
			wantStatus:   "failed",
			wantCode:     "upstream_auth",
			wantAttempts: []string{"a"},
		},
		{
			name: "bad request is not retried",
			attempt: func(workflows.StreamChatInput) (workflows.StreamChatResult, error) {
				return workflows.StreamChatResult{}, upstreamError("upstream_bad_request", true)
			},
			wantStatus:   "failed",
			wantCode:     "upstream_bad_request",
			wantAttempts: []string{"a"},
		},
		{
			name:        "retries stop at max attempts",
			maxAttempts: 3,
			attempt: func(workflows.StreamChatInput) (workflows.StreamChatResult, error) {
				return workflows.StreamChatResult{}, upstreamError("upstream_error", false)
			},
			wantStatus:   "failed",
			wantCode:     "upstream_error",
			wantAttempts: []string{"a", "b", "a"},
		},
		{
			name:       "unknown model fails before any attempt",
			startErr:   temporal.NewNonRetryableApplicationError("no such model", workflows.ErrorUnknownModel, nil),
			wantStatus: "failed",
			wantCode:   workflows.ErrorUnknownModel,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeActivities{candidates: twoCandidates(), startErr: tt.startErr}
			f.attempts = func(_ context.Context, in workflows.StreamChatInput) (workflows.StreamChatResult, error) {
				return tt.attempt(in)
			}
			env := newEnv(t, f)
			env.ExecuteWorkflow(workflows.ChatRunWorkflowName, workflows.ChatRunInput{RunID: "run-1", MaxAttempts: tt.maxAttempts})

			if !env.IsWorkflowCompleted() {
				t.Fatal("workflow did not complete")
			}
			if err := env.GetWorkflowError(); err != nil {
				t.Fatalf("workflow error: %v", err)
			}
			var providersTried []string
			for i, in := range f.seen {
				providersTried = append(providersTried, in.Candidate.ProviderID)
				if in.Attempt != i+1 {
					t.Errorf("attempt %d carried Attempt=%d", i+1, in.Attempt)
				}
			}
			if len(providersTried) != len(tt.wantAttempts) {
				t.Fatalf("providers tried = %v, want %v", providersTried, tt.wantAttempts)
			}
			for i := range providersTried {
				if providersTried[i] != tt.wantAttempts[i] {
					t.Errorf("attempt %d provider = %s, want %s", i+1, providersTried[i], tt.wantAttempts[i])
				}
			}
			if len(f.finalized) != 1 {
				t.Fatalf("FinalizeRun called %d times, want 1", len(f.finalized))
			}
			got := f.finalized[0]
			if got.Status != tt.wantStatus {
				t.Errorf("status = %s, want %s", got.Status, tt.wantStatus)
			}
			if got.ErrorCode != tt.wantCode {
				t.Errorf("error code = %q, want %q", got.ErrorCode, tt.wantCode)
			}
		})
	}
}

func TestChatRunCancelDuringUpstream(t *testing.T) {
	f := &fakeActivities{candidates: twoCandidates()}
	f.attempts = func(ctx context.Context, _ workflows.StreamChatInput) (workflows.StreamChatResult, error) {
		for {
			select {
			case <-ctx.Done():
				return workflows.StreamChatResult{}, ctx.Err()
			case <-time.After(10 * time.Millisecond):
				activity.RecordHeartbeat(ctx)
			}
		}
	}
	env := newEnv(t, f)
	env.RegisterDelayedCallback(env.CancelWorkflow, time.Second)
	env.ExecuteWorkflow(workflows.ChatRunWorkflowName, workflows.ChatRunInput{RunID: "run-1"})

	if !env.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	if len(f.finalized) != 1 {
		t.Fatalf("FinalizeRun called %d times, want 1", len(f.finalized))
	}
	if got := f.finalized[0].Status; got != "canceled" {
		t.Errorf("status = %s, want canceled", got)
	}
	if got := f.finalized[0].ErrorCode; got != "canceled" {
		t.Errorf("error code = %s, want canceled", got)
	}
}

func TestChatRunStateQuery(t *testing.T) {
	f := &fakeActivities{candidates: twoCandidates()}
	f.attempts = func(_ context.Context, in workflows.StreamChatInput) (workflows.StreamChatResult, error) {
		if in.Attempt == 1 {
			return workflows.StreamChatResult{}, upstreamError("upstream_error", false)
		}
		return workflows.StreamChatResult{LastSeq: 7}, nil
	}
	env := newEnv(t, f)

	var during workflows.RunState
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		if info.ActivityType.Name != workflows.StreamChatActivity || info.ActivityID == "" || len(f.seen) != 1 {
			return
		}
		// The second StreamChat is starting: the workflow has recorded the
		// new attempt in its state.
		value, err := env.QueryWorkflow(workflows.RunStateQuery)
		if err != nil {
			t.Errorf("query during run: %v", err)
			return
		}
		if err := value.Get(&during); err != nil {
			t.Errorf("decode query result: %v", err)
		}
	})
	env.ExecuteWorkflow(workflows.ChatRunWorkflowName, workflows.ChatRunInput{RunID: "run-1"})

	if during.Status != "running" || during.Attempt != 2 || during.Provider != "b" || during.Model != "m-b" {
		t.Errorf("run_state during attempt 2 = %+v", during)
	}
	value, err := env.QueryWorkflow(workflows.RunStateQuery)
	if err != nil {
		t.Fatal(err)
	}
	var final workflows.RunState
	if err := value.Get(&final); err != nil {
		t.Fatal(err)
	}
	if final.Status != "succeeded" || final.LastSeq != 9 {
		t.Errorf("run_state after the run = %+v, want succeeded with last_seq 9", final)
	}
}

func TestChatRunFinalizeFailureFailsWorkflow(t *testing.T) {
	f := &fakeActivities{candidates: twoCandidates()}
	f.attempts = func(context.Context, workflows.StreamChatInput) (workflows.StreamChatResult, error) {
		return workflows.StreamChatResult{}, nil
	}
	env := newEnv(t, f)
	env.OnActivity(workflows.FinalizeRunActivity, mock.Anything, mock.Anything).
		Return(workflows.FinalizeResult{}, temporal.NewNonRetryableApplicationError("database gone", "internal_error", nil))
	env.ExecuteWorkflow(workflows.ChatRunWorkflowName, workflows.ChatRunInput{RunID: "run-1"})

	err := env.GetWorkflowError()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		t.Fatalf("workflow error = %v, want the finalize application error", err)
	}
}

func attemptFailure(kind string, used workflows.Candidate) error {
	return temporal.NewApplicationErrorWithOptions("upstream said no", kind, temporal.ApplicationErrorOptions{
		Details: []any{workflows.AttemptFailure{Candidate: used}},
	})
}

func TestChatRunTracksCandidatesUsed(t *testing.T) {
	a, b, c := workflows.Candidate{ProviderID: "a", Model: "m-a"}, workflows.Candidate{ProviderID: "b", Model: "m-b"}, workflows.Candidate{ProviderID: "c", Model: "m-c"}
	f := &fakeActivities{candidates: []workflows.Candidate{a, b, c}}
	f.attempts = func(_ context.Context, in workflows.StreamChatInput) (workflows.StreamChatResult, error) {
		switch in.Attempt {
		case 1:
			// The activity found a cooling down and used b instead.
			return workflows.StreamChatResult{}, attemptFailure("upstream_error", b)
		case 2:
			return workflows.StreamChatResult{}, attemptFailure("upstream_error", in.Candidate)
		default:
			return workflows.StreamChatResult{LastSeq: 5, Candidate: b}, nil
		}
	}
	env := newEnv(t, f)
	env.ExecuteWorkflow(workflows.ChatRunWorkflowName, workflows.ChatRunInput{RunID: "run-1"})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}

	want := []struct {
		candidate workflows.Candidate
		tried     []workflows.Candidate
	}{
		{candidate: a, tried: nil},
		// b was used, so the first unused candidate is a.
		{candidate: a, tried: []workflows.Candidate{b}},
		{candidate: c, tried: []workflows.Candidate{b, a}},
	}
	if len(f.seen) != len(want) {
		t.Fatalf("StreamChat ran %d times, want %d", len(f.seen), len(want))
	}
	for i, w := range want {
		if f.seen[i].Candidate != w.candidate {
			t.Errorf("attempt %d planned %+v, want %+v", i+1, f.seen[i].Candidate, w.candidate)
		}
		if fmt.Sprint(f.seen[i].Tried) != fmt.Sprint(w.tried) {
			t.Errorf("attempt %d Tried = %+v, want %+v", i+1, f.seen[i].Tried, w.tried)
		}
	}

	value, err := env.QueryWorkflow(workflows.RunStateQuery)
	if err != nil {
		t.Fatal(err)
	}
	var state workflows.RunState
	if err := value.Get(&state); err != nil {
		t.Fatal(err)
	}
	if state.Provider != "b" || state.Model != "m-b" {
		t.Errorf("run_state names %s/%s, want the candidate that answered, b/m-b", state.Provider, state.Model)
	}
}

func TestChatRunRetryDelay(t *testing.T) {
	tests := []struct {
		name      string
		nextRetry time.Duration
		want      time.Duration
	}{
		{name: "policy backoff without a delay", nextRetry: 0, want: 500 * time.Millisecond},
		{name: "shorter delay keeps the backoff", nextRetry: 100 * time.Millisecond, want: 500 * time.Millisecond},
		{name: "longer delay is honoured", nextRetry: 7 * time.Second, want: 7 * time.Second},
		{name: "delay capped at the maximum interval", nextRetry: time.Hour, want: 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeActivities{candidates: twoCandidates()}
			var env *testsuite.TestWorkflowEnvironment
			var started []time.Time
			f.attempts = func(_ context.Context, in workflows.StreamChatInput) (workflows.StreamChatResult, error) {
				started = append(started, env.Now())
				if in.Attempt == 1 {
					return workflows.StreamChatResult{}, temporal.NewApplicationErrorWithOptions("cooling", workflows.ErrorCoolingDown,
						temporal.ApplicationErrorOptions{NextRetryDelay: tt.nextRetry})
				}
				return workflows.StreamChatResult{LastSeq: 2}, nil
			}
			env = newEnv(t, f)
			env.ExecuteWorkflow(workflows.ChatRunWorkflowName, workflows.ChatRunInput{RunID: "run-1"})
			if err := env.GetWorkflowError(); err != nil {
				t.Fatal(err)
			}
			if len(started) != 2 {
				t.Fatalf("StreamChat ran %d times, want 2", len(started))
			}
			if got := started[1].Sub(started[0]); got < tt.want || got > tt.want+time.Second {
				t.Errorf("second attempt started %s after the first, want %s", got, tt.want)
			}
		})
	}
}
