package workflows_test

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/aihigress/aihigress/workflows"
)

// fakeMaintenance replaces the maintenance activities and records their
// inputs, so that the tests exercise only the workflows' decisions.
type fakeMaintenance struct {
	failing      []workflows.FailingAPIKey
	disabled     []workflows.DisableAPIKeysInput
	targets      []workflows.ProbeTarget
	probe        func(workflows.ProbeTarget) (workflows.ProbeResult, error)
	recorded     []workflows.ProbeResult
	cooledDown   []workflows.ProbeResult
	rollUpErr    map[string]error
	calls        []string
	findInputs   []workflows.FindFailingAPIKeysInput
	pruneInputs  []workflows.PruneRunEventsInput
	deleteInputs []workflows.DeleteExpiredRowsInput
}

func (f *fakeMaintenance) ExpireAPIKeys(context.Context) (workflows.ExpireAPIKeysResult, error) {
	f.calls = append(f.calls, "ExpireAPIKeys")
	return workflows.ExpireAPIKeysResult{Expired: 2}, nil
}

func (f *fakeMaintenance) FindFailingAPIKeys(_ context.Context, in workflows.FindFailingAPIKeysInput) ([]workflows.FailingAPIKey, error) {
	f.findInputs = append(f.findInputs, in)
	return f.failing, nil
}

func (f *fakeMaintenance) DisableAPIKeys(_ context.Context, in workflows.DisableAPIKeysInput) (workflows.DisableAPIKeysResult, error) {
	f.disabled = append(f.disabled, in)
	return workflows.DisableAPIKeysResult{Disabled: len(in.Keys)}, nil
}

func (f *fakeMaintenance) ListProbeTargets(context.Context) ([]workflows.ProbeTarget, error) {
	return f.targets, nil
}

func (f *fakeMaintenance) ProbeProvider(_ context.Context, target workflows.ProbeTarget) (workflows.ProbeResult, error) {
	return f.probe(target)
}

func (f *fakeMaintenance) RecordProviderHealth(_ context.Context, in workflows.RecordProviderHealthInput) error {
	f.recorded = append(f.recorded, in.Results...)
	return nil
}

func (f *fakeMaintenance) CoolDownProviders(_ context.Context, in workflows.CoolDownProvidersInput) (workflows.CoolDownProvidersResult, error) {
	f.cooledDown = append(f.cooledDown, in.Results...)
	return workflows.CoolDownProvidersResult{Providers: len(in.Results)}, nil
}

func (f *fakeMaintenance) RollUp(_ context.Context, in workflows.RollUpInput) (workflows.RollUpResult, error) {
	f.calls = append(f.calls, "RollUp "+in.SourceTable)
	if err := f.rollUpErr[in.SourceTable]; err != nil {
		return workflows.RollUpResult{}, err
	}
	return workflows.RollUpResult{SourceTable: in.SourceTable, Until: in.AsOf.Truncate(time.Hour)}, nil
}

func (f *fakeMaintenance) DeleteExpiredRows(_ context.Context, in workflows.DeleteExpiredRowsInput) (workflows.DeleteExpiredRowsResult, error) {
	f.calls = append(f.calls, "DeleteExpiredRows "+in.Table)
	f.deleteInputs = append(f.deleteInputs, in)
	return workflows.DeleteExpiredRowsResult{Table: in.Table, Deleted: 1}, nil
}

func (f *fakeMaintenance) PruneRunEvents(_ context.Context, in workflows.PruneRunEventsInput) (workflows.PruneRunEventsResult, error) {
	f.pruneInputs = append(f.pruneInputs, in)
	return workflows.PruneRunEventsResult{Before: in.AsOf, Deleted: 3}, nil
}

func newMaintenanceEnv(t *testing.T, f *fakeMaintenance) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(tlog.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(workflows.ExpireAPIKeysWorkflow, workflow.RegisterOptions{Name: workflows.ExpireAPIKeysWorkflowName})
	env.RegisterWorkflowWithOptions(workflows.DisableFailingAPIKeysWorkflow, workflow.RegisterOptions{Name: workflows.DisableFailingAPIKeysWorkflowName})
	env.RegisterWorkflowWithOptions(workflows.ProbeProvidersWorkflow, workflow.RegisterOptions{Name: workflows.ProbeProvidersWorkflowName})
	env.RegisterWorkflowWithOptions(workflows.RollUpUsageWorkflow, workflow.RegisterOptions{Name: workflows.RollUpUsageWorkflowName})
	env.RegisterWorkflowWithOptions(workflows.PruneRunEventsWorkflow, workflow.RegisterOptions{Name: workflows.PruneRunEventsWorkflowName})
	register := func(fn any, name string) {
		env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
	register(f.ExpireAPIKeys, workflows.ExpireAPIKeysActivity)
	register(f.FindFailingAPIKeys, workflows.FindFailingAPIKeysActivity)
	register(f.DisableAPIKeys, workflows.DisableAPIKeysActivity)
	register(f.ListProbeTargets, workflows.ListProbeTargetsActivity)
	register(f.ProbeProvider, workflows.ProbeProviderActivity)
	register(f.RecordProviderHealth, workflows.RecordProviderHealthActivity)
	register(f.CoolDownProviders, workflows.CoolDownProvidersActivity)
	register(f.RollUp, workflows.RollUpActivity)
	register(f.DeleteExpiredRows, workflows.DeleteExpiredRowsActivity)
	register(f.PruneRunEvents, workflows.PruneRunEventsActivity)
	return env
}

func TestExpireAPIKeysWorkflow(t *testing.T) {
	f := &fakeMaintenance{}
	env := newMaintenanceEnv(t, f)
	env.ExecuteWorkflow(workflows.ExpireAPIKeysWorkflowName, workflows.MaintenanceInput{})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var result workflows.ExpireAPIKeysResult
	if err := env.GetWorkflowResult(&result); err != nil {
		t.Fatal(err)
	}
	if result.Expired != 2 {
		t.Errorf("Expired = %d, want 2", result.Expired)
	}
}

func TestDisableFailingAPIKeysWorkflow(t *testing.T) {
	key := workflows.FailingAPIKey{KeyID: "k1", UserID: "u1", Requests: 120, Errors: 118}
	tests := []struct {
		name         string
		failing      []workflows.FailingAPIKey
		wantDisabled int
		wantCalls    int
	}{
		{"no failing key disables nothing", nil, 0, 0},
		{"failing keys are disabled", []workflows.FailingAPIKey{key}, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeMaintenance{failing: tt.failing}
			env := newMaintenanceEnv(t, f)
			asOf := time.Date(2026, 3, 4, 10, 30, 0, 0, time.UTC)
			env.ExecuteWorkflow(workflows.DisableFailingAPIKeysWorkflowName, workflows.MaintenanceInput{AsOf: asOf})
			if err := env.GetWorkflowError(); err != nil {
				t.Fatal(err)
			}
			var result workflows.DisableFailingAPIKeysResult
			if err := env.GetWorkflowResult(&result); err != nil {
				t.Fatal(err)
			}
			if result.Disabled != tt.wantDisabled {
				t.Errorf("Disabled = %d, want %d", result.Disabled, tt.wantDisabled)
			}
			if len(f.disabled) != tt.wantCalls {
				t.Fatalf("DisableAPIKeys ran %d times, want %d", len(f.disabled), tt.wantCalls)
			}
			if tt.wantCalls > 0 && f.disabled[0].Keys[0].KeyID != "k1" {
				t.Errorf("DisableAPIKeys got %+v, want key k1", f.disabled[0])
			}
			if len(f.findInputs) != 1 || !f.findInputs[0].AsOf.Equal(asOf) {
				t.Errorf("FindFailingAPIKeys inputs = %+v, want one with AsOf %s", f.findInputs, asOf)
			}
		})
	}
}

func TestProbeProvidersWorkflow(t *testing.T) {
	f := &fakeMaintenance{
		targets: []workflows.ProbeTarget{{ProviderID: "up"}, {ProviderID: "down"}, {ProviderID: "lost"}},
		probe: func(target workflows.ProbeTarget) (workflows.ProbeResult, error) {
			switch target.ProviderID {
			case "up":
				return workflows.ProbeResult{ProviderID: "up", Healthy: true, StatusCode: 200}, nil
			case "down":
				return workflows.ProbeResult{ProviderID: "down", StatusCode: 500, ErrorKind: "upstream_error", Error: "HTTP 500"}, nil
			}
			return workflows.ProbeResult{}, temporal.NewNonRetryableApplicationError("worker lost", "internal_error", nil)
		},
	}
	env := newMaintenanceEnv(t, f)
	env.ExecuteWorkflow(workflows.ProbeProvidersWorkflowName, workflows.MaintenanceInput{})

	// The failed probe activity fails the run, after the other results
	// were recorded and the failing provider cooled down.
	if err := env.GetWorkflowError(); err == nil {
		t.Error("workflow succeeded although a probe activity failed")
	}
	var recorded []string
	for _, r := range f.recorded {
		recorded = append(recorded, r.ProviderID)
	}
	if !slices.Equal(recorded, []string{"up", "down"}) {
		t.Errorf("recorded providers = %v, want [up down]", recorded)
	}
	if len(f.cooledDown) != 1 || f.cooledDown[0].ProviderID != "down" {
		t.Errorf("cooled down = %+v, want only provider down", f.cooledDown)
	}
}

func TestProbeProvidersWorkflowAllHealthy(t *testing.T) {
	f := &fakeMaintenance{
		targets: []workflows.ProbeTarget{{ProviderID: "a"}, {ProviderID: "b"}},
		probe: func(target workflows.ProbeTarget) (workflows.ProbeResult, error) {
			return workflows.ProbeResult{ProviderID: target.ProviderID, Healthy: true, StatusCode: 200}, nil
		},
	}
	env := newMaintenanceEnv(t, f)
	env.ExecuteWorkflow(workflows.ProbeProvidersWorkflowName, workflows.MaintenanceInput{})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var result workflows.ProbeProvidersResult
	if err := env.GetWorkflowResult(&result); err != nil {
		t.Fatal(err)
	}
	if result.Probed != 2 || len(result.Unhealthy) != 0 {
		t.Errorf("result = %+v, want 2 probed and none unhealthy", result)
	}
	if len(f.cooledDown) != 0 {
		t.Errorf("CoolDownProviders got %+v, want no call", f.cooledDown)
	}
}

func TestRollUpUsageWorkflow(t *testing.T) {
	tests := []struct {
		name      string
		rollUpErr map[string]error
		wantCalls []string
		wantErr   bool
	}{
		{
			name: "rolls up, then deletes, table by table",
			wantCalls: []string{
				"RollUp request_logs", "DeleteExpiredRows request_logs",
				"RollUp provider_metrics_minute", "DeleteExpiredRows provider_metrics_minute",
				"DeleteExpiredRows provider_health",
			},
		},
		{
			name:      "failed roll-up keeps that table's rows",
			rollUpErr: map[string]error{"request_logs": temporal.NewNonRetryableApplicationError("database gone", "internal_error", nil)},
			wantCalls: []string{
				"RollUp request_logs",
				"RollUp provider_metrics_minute", "DeleteExpiredRows provider_metrics_minute",
				"DeleteExpiredRows provider_health",
			},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeMaintenance{rollUpErr: tt.rollUpErr}
			env := newMaintenanceEnv(t, f)
			env.ExecuteWorkflow(workflows.RollUpUsageWorkflowName, workflows.MaintenanceInput{})
			if err := env.GetWorkflowError(); (err != nil) != tt.wantErr {
				t.Fatalf("workflow error = %v, want error: %v", err, tt.wantErr)
			}
			if !slices.Equal(f.calls, tt.wantCalls) {
				t.Errorf("calls = %q, want %q", f.calls, tt.wantCalls)
			}
		})
	}
}

// TestMaintenanceTimeSources checks where a job takes its time from: the
// input, the schedule's action time, or the workflow clock.
func TestMaintenanceTimeSources(t *testing.T) {
	input := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	scheduled := time.Date(2026, 2, 3, 4, 0, 0, 0, time.UTC)
	clock := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	tests := []struct {
		name      string
		in        workflows.MaintenanceInput
		scheduled bool
		want      time.Time
	}{
		{"input wins", workflows.MaintenanceInput{AsOf: input}, true, input},
		{"schedule action time", workflows.MaintenanceInput{}, true, scheduled},
		{"workflow clock without a schedule", workflows.MaintenanceInput{}, false, clock},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeMaintenance{}
			env := newMaintenanceEnv(t, f)
			env.SetStartTime(clock)
			if tt.scheduled {
				key := temporal.NewSearchAttributeKeyTime("TemporalScheduledStartTime")
				if err := env.SetTypedSearchAttributesOnStart(temporal.NewSearchAttributes(key.ValueSet(scheduled))); err != nil {
					t.Fatal(err)
				}
			}
			env.ExecuteWorkflow(workflows.PruneRunEventsWorkflowName, tt.in)
			if err := env.GetWorkflowError(); err != nil {
				t.Fatal(err)
			}
			if len(f.pruneInputs) != 1 {
				t.Fatalf("PruneRunEvents ran %d times, want 1", len(f.pruneInputs))
			}
			if got := f.pruneInputs[0].AsOf; !got.Equal(tt.want) {
				t.Errorf("AsOf = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestRollUpUsagePassesOneTime checks that every step of a run counts back
// from the same time.
func TestRollUpUsagePassesOneTime(t *testing.T) {
	f := &fakeMaintenance{}
	env := newMaintenanceEnv(t, f)
	asOf := time.Date(2026, 7, 1, 12, 15, 0, 0, time.UTC)
	env.ExecuteWorkflow(workflows.RollUpUsageWorkflowName, workflows.MaintenanceInput{AsOf: asOf})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var result workflows.RollUpUsageResult
	if err := env.GetWorkflowResult(&result); err != nil {
		t.Fatal(err)
	}
	for _, rolled := range result.RolledUp {
		if !rolled.Until.Equal(asOf.Truncate(time.Hour)) {
			t.Errorf("%s rolled up until %s, want %s", rolled.SourceTable, rolled.Until, asOf.Truncate(time.Hour))
		}
	}
	for _, in := range f.deleteInputs {
		if !in.AsOf.Equal(asOf) {
			t.Errorf("DeleteExpiredRows %s AsOf = %s, want %s", in.Table, in.AsOf, asOf)
		}
	}
	if len(result.Deleted) != 3 {
		t.Errorf("Deleted has %d entries, want 3", len(result.Deleted))
	}
}
