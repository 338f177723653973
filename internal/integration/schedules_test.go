package integration

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	tclient "go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/aihigress/aihigress/internal/apikeys"
	"github.com/aihigress/aihigress/internal/app"
	"github.com/aihigress/aihigress/internal/config"
	"github.com/aihigress/aihigress/models"
	"github.com/aihigress/aihigress/worker"
	"github.com/aihigress/aihigress/workflows"
)

var maintenanceScheduleIDs = []string{
	worker.ExpireAPIKeysScheduleID,
	worker.DisableFailingAPIKeysScheduleID,
	worker.ProbeProvidersScheduleID,
	worker.RollUpUsageScheduleID,
	worker.PruneRunEventsScheduleID,
}

// runWorkerApp connects a new App with cfg, as another `aihigress
// worker` process would, and runs its workers until the returned function
// is called or the test ends.
func runWorkerApp(t *testing.T, s *stack, cfg config.Config) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.Connect(ctx, cfg, testCatalog(t, s.mock.URL()+"/v1"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.RunWorker(ctx, cfg.Worker.TaskQueues) }()
	stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunWorker: %v", err)
		}
		a.Close()
	})
	t.Cleanup(stop)
	return stop
}

// scheduleCounts lists the schedules of the namespace and counts each ID.
func scheduleCounts(t *testing.T, c tclient.Client) map[string]int {
	t.Helper()
	iter, err := c.ScheduleClient().List(context.Background(), tclient.ScheduleListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for iter.HasNext() {
		entry, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		counts[entry.ID]++
	}
	return counts
}

// triggerAndWait triggers the schedule and waits for the workflow it
// starts, whose result goes to out.
func triggerAndWait(t *testing.T, c tclient.Client, scheduleID string, out any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	handle := c.ScheduleClient().GetHandle(ctx, scheduleID)
	before, err := handle.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := handle.Trigger(ctx, tclient.ScheduleTriggerOptions{}); err != nil {
		t.Fatalf("trigger %s: %v", scheduleID, err)
	}
	var workflowID string
	waitFor(t, 30*time.Second, "the triggered action of "+scheduleID, func() bool {
		desc, err := handle.Describe(ctx)
		if err != nil || desc.Info.NumActions <= before.Info.NumActions || len(desc.Info.RecentActions) == 0 {
			return false
		}
		workflowID = desc.Info.RecentActions[len(desc.Info.RecentActions)-1].StartWorkflowResult.WorkflowID
		return true
	})
	if err := c.GetWorkflow(ctx, workflowID, "").Get(ctx, out); err != nil {
		t.Fatalf("workflow %s of %s: %v", workflowID, scheduleID, err)
	}
	return workflowID
}

// TestMaintenanceSchedules starts the worker three times against one
// Temporal dev server. The first two starts have the same settings and must
// leave one schedule per job. The third has a changed interval and a job
// turned off, so it must update one schedule and delete another, but keep
// an operator's pause. The test then triggers two schedules and checks
// that their jobs ran.
func TestMaintenanceSchedules(t *testing.T) {
	s := newStack(t, stackOptions{noWorker: true, env: map[string]string{
		"MAINTENANCE_SCHEDULES": "on",
		"WORKER_METRICS_ADDR":   "off",
		// The schedules must work with encrypted payloads too.
		"TEMPORAL_PAYLOAD_KEY": "5c9f1e0b7a3d2c4e6f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6",
	}})
	c := s.app.Temporal
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, id := range maintenanceScheduleIDs {
			_ = c.ScheduleClient().GetHandle(ctx, id).Delete(ctx)
		}
	})

	runWorkerApp(t, s, s.cfg)
	second := runWorkerApp(t, s, s.cfg)
	waitFor(t, 30*time.Second, "one schedule per maintenance job", func() bool {
		counts := scheduleCounts(t, c)
		for _, id := range maintenanceScheduleIDs {
			if counts[id] != 1 {
				return false
			}
		}
		return true
	})
	second()

	ctx := context.Background()
	expireHandle := c.ScheduleClient().GetHandle(ctx, worker.ExpireAPIKeysScheduleID)
	expireBefore, err := expireHandle.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	probe := c.ScheduleClient().GetHandle(ctx, worker.ProbeProvidersScheduleID)
	if err := probe.Pause(ctx, tclient.SchedulePauseOptions{Note: "paused by the test"}); err != nil {
		t.Fatal(err)
	}

	// A worker with a longer probe interval and the error rate job off.
	changed := s.cfg
	changed.Maintenance.ProbeProvidersInterval = 2 * time.Minute
	changed.Maintenance.APIKeyErrorRate.Threshold = 0
	runWorkerApp(t, s, changed)
	waitFor(t, 30*time.Second, "the error rate schedule to be deleted", func() bool {
		counts := scheduleCounts(t, c)
		return counts[worker.DisableFailingAPIKeysScheduleID] == 0 && counts[worker.ExpireAPIKeysScheduleID] == 1 &&
			counts[worker.ProbeProvidersScheduleID] == 1 && counts[worker.RollUpUsageScheduleID] == 1 && counts[worker.PruneRunEventsScheduleID] == 1
	})
	waitFor(t, 30*time.Second, "the probe schedule to get the new interval", func() bool {
		desc, err := probe.Describe(ctx)
		return err == nil && len(desc.Schedule.Spec.Intervals) == 1 && desc.Schedule.Spec.Intervals[0].Every == 2*time.Minute
	})
	desc, err := probe.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !desc.Schedule.State.Paused {
		t.Error("the update unpaused the probe schedule")
	}
	if desc.Schedule.Policy.CatchupWindow != 2*time.Minute {
		t.Errorf("probe catch-up window = %s, want 2m", desc.Schedule.Policy.CatchupWindow)
	}
	expire, err := expireHandle.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A schedule that matches the settings is not written again.
	if !expire.Info.LastUpdateAt.Equal(expireBefore.Info.LastUpdateAt) {
		t.Errorf("the unchanged expiry schedule was updated at %s, after %s", expire.Info.LastUpdateAt, expireBefore.Info.LastUpdateAt)
	}
	action, ok := expire.Schedule.Action.(*tclient.ScheduleWorkflowAction)
	if !ok || action.Workflow != workflows.ExpireAPIKeysWorkflowName || action.TaskQueue != workflows.MaintenanceTaskQueue {
		t.Errorf("expiry schedule action = %+v, want %s on %s", expire.Schedule.Action, workflows.ExpireAPIKeysWorkflowName, workflows.MaintenanceTaskQueue)
	}
	// Arguments would be payloads encrypted with today's key, which a
	// schedule keeps after the key is rotated away.
	if ok && len(action.Args) != 0 {
		t.Errorf("expiry schedule action has %d arguments, want none", len(action.Args))
	}
	if got := expire.Schedule.Spec.Intervals; len(got) != 1 || got[0].Every != time.Minute {
		t.Errorf("expiry schedule intervals = %+v, want every 1m", got)
	}

	// A worker without the maintenance task queue leaves the schedules as
	// they are, although its settings differ from them. Its /healthz
	// returns 200 only after the point where it would write them.
	noMaintenance := changed
	noMaintenance.Worker.TaskQueues = config.TaskQueues{Chat: true, Image: true}
	noMaintenance.Maintenance.ProbeProvidersInterval = 3 * time.Minute
	noMaintenance.Maintenance.APIKeyErrorRate.Threshold = 0.5
	noMaintenance.Metrics.WorkerAddr = freeAddr(t)
	probeBefore, err := probe.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stopNoMaintenance := runWorkerApp(t, s, noMaintenance)
	waitFor(t, 30*time.Second, "the /healthz of the worker without maintenance to return 200", func() bool {
		status, _ := getWithToken(t, "http://"+noMaintenance.Metrics.WorkerAddr+"/healthz", "")
		return status == http.StatusOK
	})
	stopNoMaintenance()
	probeAfter, err := probe.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := probeAfter.Schedule.Spec.Intervals; len(got) != 1 || got[0].Every != 2*time.Minute {
		t.Errorf("probe schedule intervals after a worker without maintenance = %+v, want every 2m", got)
	}
	if !probeAfter.Info.LastUpdateAt.Equal(probeBefore.Info.LastUpdateAt) {
		t.Errorf("a worker without maintenance updated the probe schedule at %s, after %s", probeAfter.Info.LastUpdateAt, probeBefore.Info.LastUpdateAt)
	}
	if counts := scheduleCounts(t, c); counts[worker.DisableFailingAPIKeysScheduleID] != 0 {
		t.Errorf("a worker without maintenance created %d error rate schedules, want 0", counts[worker.DisableFailingAPIKeysScheduleID])
	}

	// Trigger the expiry job for a key that expired a moment ago.
	owner := s.newUser()
	keys, err := apikeys.NewService(s.app.Store, s.cfg.MasterKey, apikeys.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := keys.Create(ctx, owner.userID(), apikeys.NewKey{Name: "expires"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.app.Store.DB.Model(&models.APIKey{}).Where("id = ?", key.ID).Update("expires_at", time.Now().Add(-time.Second).UTC()).Error; err != nil {
		t.Fatal(err)
	}
	var expired workflows.ExpireAPIKeysResult
	triggerAndWait(t, c, worker.ExpireAPIKeysScheduleID, &expired)
	if expired.Expired != 1 {
		t.Errorf("triggered expiry job expired %d keys, want 1", expired.Expired)
	}
	var row models.APIKey
	if err := s.app.Store.DB.Where("id = ?", key.ID).Take(&row).Error; err != nil {
		t.Fatal(err)
	}
	if row.IsActive || row.DisabledReason != "expired" {
		t.Errorf("key after the job: active %v reason %q, want inactive and expired", row.IsActive, row.DisabledReason)
	}

	// The roll-up job runs for the action time that the server passes in
	// the TemporalScheduledStartTime search attribute.
	var rolled workflows.RollUpUsageResult
	workflowID := triggerAndWait(t, c, worker.RollUpUsageScheduleID, &rolled)
	described, err := c.DescribeWorkflowExecution(ctx, workflowID, "")
	if err != nil {
		t.Fatal(err)
	}
	payload := described.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()["TemporalScheduledStartTime"]
	var scheduled time.Time
	if err := converter.GetDefaultDataConverter().FromPayload(payload, &scheduled); err != nil || scheduled.IsZero() {
		t.Fatalf("TemporalScheduledStartTime of %s = %v (%v), want a time", workflowID, scheduled, err)
	}
	if len(rolled.RolledUp) != 2 {
		t.Fatalf("roll-up result = %+v, want both tables rolled up", rolled)
	}
	for _, r := range rolled.RolledUp {
		if want := scheduled.UTC().Truncate(time.Hour); !r.Until.Equal(want) {
			t.Errorf("%s rolled up until %s, want the hour of the action time, %s", r.SourceTable, r.Until, want)
		}
	}
	progress, ok, err := s.app.Store.RollupProgress(ctx, workflows.TableRequestLogs)
	if err != nil || !ok {
		t.Fatalf("roll-up progress of request_logs: found %v, error %v", ok, err)
	}
	if !progress.RolledUntil.Equal(scheduled.UTC().Truncate(time.Hour)) {
		t.Errorf("rolled_until = %s, want %s", progress.RolledUntil, scheduled.UTC().Truncate(time.Hour))
	}
}
