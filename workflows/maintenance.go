package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// MaintenanceTaskQueue carries the scheduled maintenance workflows, apart
// from chat and images, so that a long roll-up takes none of their slots.
const MaintenanceTaskQueue = "aihigress-maintenance"

// Names of the maintenance workflows and activities. Temporal Schedules
// start the workflows by these names, so renaming one breaks the schedules
// that workers created before.
const (
	ExpireAPIKeysWorkflowName         = "ExpireAPIKeysWorkflow"
	DisableFailingAPIKeysWorkflowName = "DisableFailingAPIKeysWorkflow"
	ProbeProvidersWorkflowName        = "ProbeProvidersWorkflow"
	RollUpUsageWorkflowName           = "RollUpUsageWorkflow"
	PruneRunEventsWorkflowName        = "PruneRunEventsWorkflow"

	ExpireAPIKeysActivity        = "ExpireAPIKeys"
	FindFailingAPIKeysActivity   = "FindFailingAPIKeys"
	DisableAPIKeysActivity       = "DisableAPIKeys"
	ListProbeTargetsActivity     = "ListProbeTargets"
	ProbeProviderActivity        = "ProbeProvider"
	RecordProviderHealthActivity = "RecordProviderHealth"
	CoolDownProvidersActivity    = "CoolDownProviders"
	RollUpActivity               = "RollUp"
	DeleteExpiredRowsActivity    = "DeleteExpiredRows"
	PruneRunEventsActivity       = "PruneRunEvents"
)

// Tables that RollUp reads and DeleteExpiredRows prunes. The names are
// those of the database tables.
const (
	TableRequestLogs     = "request_logs"
	TableProviderMetrics = "provider_metrics_minute"
	TableProviderHealth  = "provider_health"
)

// scheduledStartTimeAttribute is the search attribute in which Temporal
// Server passes the action time of a scheduled workflow.
const scheduledStartTimeAttribute = "TemporalScheduledStartTime"

// MaintenanceInput starts a maintenance workflow. Schedules pass it empty.
type MaintenanceInput struct {
	// AsOf is the time that the job runs for: retention cutoffs, the error
	// rate window and the roll-up's last hour count back from it. Zero
	// uses the schedule's action time, or the workflow's start without a
	// schedule.
	AsOf time.Time `json:",omitzero"`
}

// ExpireAPIKeysResult is the outcome of ExpireAPIKeysWorkflow.
type ExpireAPIKeysResult struct {
	Expired int
}

// FindFailingAPIKeysInput is the input of FindFailingAPIKeys.
type FindFailingAPIKeysInput struct {
	AsOf time.Time
}

// FailingAPIKey is an API key whose error rate passed the threshold. It
// names the key by ID only; the key's secret never enters history.
type FailingAPIKey struct {
	KeyID    string
	UserID   string
	Requests int64
	Errors   int64
	// UpdatedAt is the key's updated_at when it was found. DisableAPIKeys
	// leaves alone a key that changed since, such as one that its user
	// enabled again.
	UpdatedAt time.Time
}

// DisableAPIKeysInput is the input of DisableAPIKeys.
type DisableAPIKeysInput struct {
	Keys []FailingAPIKey
}

// DisableAPIKeysResult counts the keys that DisableAPIKeys disabled, and
// those it left alone because they were inactive, changed or deleted.
type DisableAPIKeysResult struct {
	Disabled int
	Skipped  int
}

// DisableFailingAPIKeysResult is the outcome of
// DisableFailingAPIKeysWorkflow.
type DisableFailingAPIKeysResult struct {
	Found    []FailingAPIKey
	Disabled int
}

// ProbeTarget is one enabled provider to probe.
type ProbeTarget struct {
	ProviderID string
	Kind       string
}

// ProbeResult is the outcome of one provider probe. It contains no
// credentials.
type ProbeResult struct {
	ProviderID string
	CheckedAt  time.Time
	Healthy    bool
	// StatusCode is the HTTP status, or 0 when no response arrived.
	StatusCode int
	LatencyMS  float64
	// Error describes a failed probe.
	Error string
	// ErrorKind is the upstream error kind of a failed probe, such as
	// upstream_error or upstream_auth, or "" when the probe was not sent.
	ErrorKind string
	// KeyID is the provider key that the probe used, or "" for a provider
	// without keys.
	KeyID string
	// RetryAfter is the wait that a 429 response asked for.
	RetryAfter time.Duration
	// NotSent is set when no request went out, because every key of the
	// provider was cooling down already.
	NotSent bool
}

// RecordProviderHealthInput is the input of RecordProviderHealth.
type RecordProviderHealthInput struct {
	Results []ProbeResult
}

// CoolDownProvidersInput is the input of CoolDownProviders: the failed
// probes.
type CoolDownProvidersInput struct {
	Results []ProbeResult
}

// CoolDownProvidersResult counts the providers whose candidates went into
// cooldown and the provider keys that were rejected.
type CoolDownProvidersResult struct {
	Providers    int
	RejectedKeys int
}

// ProbeProvidersResult is the outcome of ProbeProvidersWorkflow.
type ProbeProvidersResult struct {
	Probed    int
	Unhealthy []string
	CoolDown  CoolDownProvidersResult
}

// RollUpInput is the input of RollUp.
type RollUpInput struct {
	// SourceTable is TableRequestLogs or TableProviderMetrics.
	SourceTable string
	AsOf        time.Time
}

// RollUpResult lists the hours [From, Until) that RollUp wrote again.
type RollUpResult struct {
	SourceTable string
	From        time.Time
	Until       time.Time
	Hours       int
	Rows        int64
}

// DeleteExpiredRowsInput is the input of DeleteExpiredRows.
type DeleteExpiredRowsInput struct {
	// Table is TableRequestLogs, TableProviderMetrics or
	// TableProviderHealth.
	Table string
	AsOf  time.Time
}

// DeleteExpiredRowsResult reports the rows deleted before Before; Before is
// zero when the retention is off or nothing has been rolled up yet.
type DeleteExpiredRowsResult struct {
	Table   string
	Before  time.Time
	Deleted int64
}

// RollUpUsageResult is the outcome of RollUpUsageWorkflow.
type RollUpUsageResult struct {
	RolledUp []RollUpResult
	Deleted  []DeleteExpiredRowsResult
}

// PruneRunEventsInput is the input of PruneRunEvents.
type PruneRunEventsInput struct {
	AsOf time.Time
}

// PruneRunEventsResult reports the run events deleted before Before.
type PruneRunEventsResult struct {
	Before  time.Time
	Deleted int64
}

// Activity options of the maintenance jobs. Quick jobs retry a few times
// within their run. The batch jobs heartbeat after every batch, so a worker
// that dies stops heartbeating and another attempt continues the work.
var (
	quickJobOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 10 * time.Second, MaximumAttempts: 3},
	}
	batchJobOptions = workflow.ActivityOptions{
		StartToCloseTimeout: time.Hour,
		HeartbeatTimeout:    2 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 5 * time.Second, MaximumInterval: time.Minute, MaximumAttempts: 5},
	}
	// A probe is a measurement, so it is not retried: a retry would hide
	// the failure that the probe exists to see.
	probeOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	}
)

// ExpireAPIKeysWorkflow marks every active API key whose expires_at has
// passed as inactive and drops it from the API processes' caches.
func ExpireAPIKeysWorkflow(ctx workflow.Context, in MaintenanceInput) (ExpireAPIKeysResult, error) {
	ctx = workflow.WithActivityOptions(ctx, quickJobOptions)
	var result ExpireAPIKeysResult
	err := workflow.ExecuteActivity(ctx, ExpireAPIKeysActivity).Get(ctx, &result)
	return result, err
}

// DisableFailingAPIKeysWorkflow finds the API keys whose recent requests
// were mostly client errors and disables them, which also drops them from
// the API processes' caches.
func DisableFailingAPIKeysWorkflow(ctx workflow.Context, in MaintenanceInput) (DisableFailingAPIKeysResult, error) {
	asOf := maintenanceTime(ctx, in)
	ctx = workflow.WithActivityOptions(ctx, quickJobOptions)

	var result DisableFailingAPIKeysResult
	err := workflow.ExecuteActivity(ctx, FindFailingAPIKeysActivity, FindFailingAPIKeysInput{AsOf: asOf}).Get(ctx, &result.Found)
	if err != nil || len(result.Found) == 0 {
		return result, err
	}

	var disabled DisableAPIKeysResult
	err = workflow.ExecuteActivity(ctx, DisableAPIKeysActivity, DisableAPIKeysInput{Keys: result.Found}).Get(ctx, &disabled)
	result.Disabled = disabled.Disabled
	return result, err
}

// ProbeProvidersWorkflow probes every enabled provider at once, records
// each result and puts the providers that failed into cooldown.
func ProbeProvidersWorkflow(ctx workflow.Context, in MaintenanceInput) (ProbeProvidersResult, error) {
	listCtx := workflow.WithActivityOptions(ctx, quickJobOptions)
	var targets []ProbeTarget
	if err := workflow.ExecuteActivity(listCtx, ListProbeTargetsActivity).Get(listCtx, &targets); err != nil {
		return ProbeProvidersResult{}, err
	}

	futures := make([]workflow.Future, len(targets))
	for i, target := range targets {
		probeCtx := workflow.WithActivityOptions(ctx, withSummary(probeOptions, "probe "+target.ProviderID))
		futures[i] = workflow.ExecuteActivity(probeCtx, ProbeProviderActivity, target)
	}
	var results []ProbeResult
	var failures []error
	for i, future := range futures {
		var result ProbeResult
		if err := future.Get(ctx, &result); err != nil {
			// The activity, not the provider, failed, so there is no
			// health to record for it.
			failures = append(failures, fmt.Errorf("probe provider %s: %w", targets[i].ProviderID, err))
			continue
		}
		results = append(results, result)
	}

	summary := ProbeProvidersResult{Probed: len(results)}
	var unhealthy []ProbeResult
	for _, result := range results {
		if !result.Healthy {
			unhealthy = append(unhealthy, result)
			summary.Unhealthy = append(summary.Unhealthy, result.ProviderID)
		}
	}

	recordCtx := workflow.WithActivityOptions(ctx, quickJobOptions)
	if len(results) > 0 {
		if err := workflow.ExecuteActivity(recordCtx, RecordProviderHealthActivity, RecordProviderHealthInput{Results: results}).Get(recordCtx, nil); err != nil {
			failures = append(failures, err)
		}
	}
	if len(unhealthy) > 0 {
		err := workflow.ExecuteActivity(recordCtx, CoolDownProvidersActivity, CoolDownProvidersInput{Results: unhealthy}).Get(recordCtx, &summary.CoolDown)
		if err != nil {
			failures = append(failures, err)
		}
	}
	return summary, errors.Join(failures...)
}

// RollUpUsageWorkflow rolls the request log and the provider metric minute
// buckets up into their hourly tables. Then it deletes the raw rows that
// are rolled up and older than their retention, and the provider probe
// results older than the metrics retention. A failure of one table does
// not stop the other.
func RollUpUsageWorkflow(ctx workflow.Context, in MaintenanceInput) (RollUpUsageResult, error) {
	asOf := maintenanceTime(ctx, in)
	var result RollUpUsageResult
	var failures []error

	for _, source := range []string{TableRequestLogs, TableProviderMetrics} {
		rollCtx := workflow.WithActivityOptions(ctx, withSummary(batchJobOptions, "roll up "+source))
		var rolled RollUpResult
		if err := workflow.ExecuteActivity(rollCtx, RollUpActivity, RollUpInput{SourceTable: source, AsOf: asOf}).Get(rollCtx, &rolled); err != nil {
			// Rows that were not rolled up must stay, so the deletion
			// waits for the next run.
			failures = append(failures, err)
			continue
		}
		result.RolledUp = append(result.RolledUp, rolled)
		deleted, err := deleteExpiredRows(ctx, source, asOf)
		if err != nil {
			failures = append(failures, err)
			continue
		}
		result.Deleted = append(result.Deleted, deleted)
	}

	deleted, err := deleteExpiredRows(ctx, TableProviderHealth, asOf)
	if err != nil {
		failures = append(failures, err)
	} else {
		result.Deleted = append(result.Deleted, deleted)
	}
	return result, errors.Join(failures...)
}

func deleteExpiredRows(ctx workflow.Context, table string, asOf time.Time) (DeleteExpiredRowsResult, error) {
	ctx = workflow.WithActivityOptions(ctx, withSummary(batchJobOptions, "delete expired rows of "+table))
	var result DeleteExpiredRowsResult
	err := workflow.ExecuteActivity(ctx, DeleteExpiredRowsActivity, DeleteExpiredRowsInput{Table: table, AsOf: asOf}).Get(ctx, &result)
	return result, err
}

// PruneRunEventsWorkflow deletes the stored events of finished runs that
// are older than the retention, except each run's terminal events, which
// carry its final state.
func PruneRunEventsWorkflow(ctx workflow.Context, in MaintenanceInput) (PruneRunEventsResult, error) {
	asOf := maintenanceTime(ctx, in)
	ctx = workflow.WithActivityOptions(ctx, batchJobOptions)
	var result PruneRunEventsResult
	err := workflow.ExecuteActivity(ctx, PruneRunEventsActivity, PruneRunEventsInput{AsOf: asOf}).Get(ctx, &result)
	return result, err
}

// maintenanceTime returns the time that a job runs for: in.AsOf when set,
// else the action time of the schedule that started the workflow, else the
// workflow's current time. All three are replay-safe.
func maintenanceTime(ctx workflow.Context, in MaintenanceInput) time.Time {
	if !in.AsOf.IsZero() {
		return in.AsOf.UTC()
	}
	if attributes := workflow.GetInfo(ctx).SearchAttributes; attributes != nil {
		if payload, ok := attributes.GetIndexedFields()[scheduledStartTimeAttribute]; ok {
			var scheduled time.Time
			if err := converter.GetDefaultDataConverter().FromPayload(payload, &scheduled); err == nil && !scheduled.IsZero() {
				return scheduled.UTC()
			}
		}
	}
	return workflow.Now(ctx).UTC()
}

func withSummary(options workflow.ActivityOptions, summary string) workflow.ActivityOptions {
	options.Summary = summary
	return options
}
