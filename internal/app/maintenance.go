package app

import (
	"context"
	"fmt"
	"time"

	sdkworker "go.temporal.io/sdk/worker"

	"github.com/aihigress/aihigress/activities"
	"github.com/aihigress/aihigress/internal/apikeys"
	"github.com/aihigress/aihigress/worker"
	"github.com/aihigress/aihigress/workflows"
)

// scheduleSetupTimeout bounds the creation and update of the maintenance
// schedules at worker start.
const scheduleSetupTimeout = 30 * time.Second

// MaintenanceWorker builds the worker of the maintenance task queue.
func (a *App) MaintenanceWorker() (sdkworker.Worker, error) {
	maintenance, err := a.maintenanceActivities()
	if err != nil {
		return nil, err
	}
	return worker.NewMaintenanceWorker(a.Temporal, maintenance, worker.Options{StopTimeout: a.Config.Shutdown.WorkerStopTimeout}), nil
}

func (a *App) maintenanceActivities() (*activities.Maintenance, error) {
	// This service only writes: it marks keys inactive and publishes their
	// invalidations to the API processes. Its Run never starts, so it
	// neither sweeps nor listens.
	keys, err := apikeys.NewService(a.Store, a.Config.MasterKey, apikeys.Options{
		Redis:       a.Redis,
		RedisPrefix: a.Config.RedisPrefix,
		CacheTTL:    a.Config.APIKeyCacheTTL,
		Logger:      a.Logger.With("component", "apikeys"),
	})
	if err != nil {
		return nil, fmt.Errorf("API key service of the maintenance worker: %w", err)
	}
	return &activities.Maintenance{
		Store:    a.Store,
		APIKeys:  keys,
		Catalog:  a.Catalog,
		Router:   a.Router,
		Client:   a.Upstream,
		Settings: a.Config.Maintenance,
		Logger:   a.Logger.With("component", "maintenance"),
	}, nil
}

// MaintenanceSchedules returns the maintenance schedules of the
// configuration. A job that is turned off gets a zero Interval, so that
// worker.EnsureSchedules deletes its schedule.
func (a *App) MaintenanceSchedules() []worker.Schedule {
	m := a.Config.Maintenance
	errorRateInterval := time.Duration(0)
	if m.ErrorRateJobEnabled() {
		errorRateInterval = m.APIKeyErrorRateInterval
	}
	runEventsInterval := time.Duration(0)
	if m.RunEventsJobEnabled() {
		runEventsInterval = m.RunEventsInterval
	}
	return []worker.Schedule{
		{ID: worker.ExpireAPIKeysScheduleID, Workflow: workflows.ExpireAPIKeysWorkflowName, Interval: m.ExpireAPIKeysInterval},
		{ID: worker.DisableFailingAPIKeysScheduleID, Workflow: workflows.DisableFailingAPIKeysWorkflowName, Interval: errorRateInterval},
		{ID: worker.ProbeProvidersScheduleID, Workflow: workflows.ProbeProvidersWorkflowName, Interval: m.ProbeProvidersInterval},
		{ID: worker.RollUpUsageScheduleID, Workflow: workflows.RollUpUsageWorkflowName, Interval: m.RollupInterval},
		{ID: worker.PruneRunEventsScheduleID, Workflow: workflows.PruneRunEventsWorkflowName, Interval: runEventsInterval},
	}
}

// ensureSchedules brings the maintenance schedules up to date unless
// MAINTENANCE_SCHEDULES is off. A failure is logged and not returned,
// because the chat and image workers run without the schedules.
func (a *App) ensureSchedules(ctx context.Context) {
	if !a.Config.Maintenance.Schedules {
		a.Logger.Info("MAINTENANCE_SCHEDULES is off, so the maintenance schedules are left as they are")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, scheduleSetupTimeout)
	defer cancel()
	if err := worker.EnsureSchedules(ctx, a.Temporal, a.MaintenanceSchedules(), a.Logger.With("component", "schedules")); err != nil {
		a.Logger.Error("maintenance schedules are not up to date, and the next worker start tries again", "error", err)
	}
}
