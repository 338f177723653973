// Package worker wires the workflows and activities into Temporal workers.
package worker

import (
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/aihigress/aihigress/activities"
	"github.com/aihigress/aihigress/workflows"
)

// Options tunes a worker. Zero fields keep the defaults of the task queue
// or of the Temporal Go SDK. The sticky workflow cache is not among them,
// because the SDK sizes it once per process (WORKER_STICKY_CACHE_SIZE,
// which internal/app applies).
type Options struct {
	// MaxConcurrentActivities caps the activities, and separately the local
	// activities, that the worker runs at once.
	MaxConcurrentActivities int
	// WorkflowTaskPollers and ActivityTaskPollers are the maximum number of
	// concurrent long polls for each kind of task. Zero keeps the SDK
	// default, which is 2, or poller autoscaling when the namespace enrolls
	// workers in it. The SDK panics on 1 workflow task poller.
	WorkflowTaskPollers int
	ActivityTaskPollers int
	// HeartbeatThrottle caps how long a heartbeat may wait before it is sent
	// to the server. Cancellation reaches an activity only with a heartbeat
	// reply, so this bounds how quickly a canceled run stops its upstream.
	HeartbeatThrottle time.Duration
	// StopTimeout is how long Stop waits for running activities after the
	// worker stops polling. The SDK then cancels the activities that are
	// still running. They fail or reach their heartbeat timeout, and their
	// workflow or retry policy retries them on another worker. Zero cancels
	// them at once.
	StopTimeout time.Duration
}

// NewChatWorker returns a worker for the chat task queue with every chat
// workflow and activity registered. The caller starts and stops it.
func NewChatWorker(c client.Client, chat *activities.Chat, opts Options) sdkworker.Worker {
	w := newWorker(c, workflows.ChatTaskQueue, opts, 1000)
	RegisterChat(w, chat)
	return w
}

// newWorker returns a worker for taskQueue with the options of sdkOptions.
func newWorker(c client.Client, taskQueue string, opts Options, defaultActivities int) sdkworker.Worker {
	return sdkworker.New(c, taskQueue, sdkOptions(opts, defaultActivities))
}

// sdkOptions converts opts to SDK worker options. A zero
// MaxConcurrentActivities gets defaultActivities, a zero HeartbeatThrottle
// 800 ms, and zero poller counts the SDK default.
func sdkOptions(opts Options, defaultActivities int) sdkworker.Options {
	if opts.MaxConcurrentActivities <= 0 {
		opts.MaxConcurrentActivities = defaultActivities
	}
	if opts.HeartbeatThrottle <= 0 {
		opts.HeartbeatThrottle = 800 * time.Millisecond
	}
	return sdkworker.Options{
		MaxConcurrentActivityExecutionSize:      opts.MaxConcurrentActivities,
		MaxConcurrentLocalActivityExecutionSize: opts.MaxConcurrentActivities,
		MaxConcurrentWorkflowTaskPollers:        max(opts.WorkflowTaskPollers, 0),
		MaxConcurrentActivityTaskPollers:        max(opts.ActivityTaskPollers, 0),
		MaxHeartbeatThrottleInterval:            opts.HeartbeatThrottle,
		DefaultHeartbeatThrottleInterval:        opts.HeartbeatThrottle,
		WorkerStopTimeout:                       opts.StopTimeout,
	}
}

// RegisterChat registers the chat workflow and activities under their
// recorded names. Tests use it with a test environment or a replayer.
func RegisterChat(r interface {
	RegisterWorkflowWithOptions(any, workflow.RegisterOptions)
	RegisterActivityWithOptions(any, activity.RegisterOptions)
}, chat *activities.Chat) {
	r.RegisterWorkflowWithOptions(workflows.ChatRunWorkflow, workflow.RegisterOptions{Name: workflows.ChatRunWorkflowName})
	if chat == nil {
		return
	}
	r.RegisterActivityWithOptions(chat.StartRun, activity.RegisterOptions{Name: workflows.StartRunActivity})
	r.RegisterActivityWithOptions(chat.StreamChat, activity.RegisterOptions{Name: workflows.StreamChatActivity})
	r.RegisterActivityWithOptions(chat.FinalizeRun, activity.RegisterOptions{Name: workflows.FinalizeRunActivity})
}

// NewImageWorker returns a worker for the image task queue. Image runs share
// the StartRun and FinalizeRun activities of chat, so chat provides them.
func NewImageWorker(c client.Client, chat *activities.Chat, images *activities.Images, opts Options) sdkworker.Worker {
	// Image attempts hold megabytes each, so fewer run at once than chat.
	w := newWorker(c, workflows.ImageTaskQueue, opts, 100)
	RegisterImages(w, chat, images)
	return w
}

// RegisterImages registers the image workflow and its activities under
// their recorded names. Tests use it with a test environment or a replayer.
func RegisterImages(r interface {
	RegisterWorkflowWithOptions(any, workflow.RegisterOptions)
	RegisterActivityWithOptions(any, activity.RegisterOptions)
}, chat *activities.Chat, images *activities.Images) {
	r.RegisterWorkflowWithOptions(workflows.ImageGenerationWorkflow, workflow.RegisterOptions{Name: workflows.ImageGenerationWorkflowName})
	if chat == nil || images == nil {
		return
	}
	r.RegisterActivityWithOptions(chat.StartRun, activity.RegisterOptions{Name: workflows.StartRunActivity})
	r.RegisterActivityWithOptions(chat.FinalizeRun, activity.RegisterOptions{Name: workflows.FinalizeRunActivity})
	r.RegisterActivityWithOptions(images.GenerateImages, activity.RegisterOptions{Name: workflows.GenerateImagesActivity})
}

// NewMaintenanceWorker returns a worker for the maintenance task queue,
// which the maintenance schedules start their workflows on.
func NewMaintenanceWorker(c client.Client, maintenance *activities.Maintenance, opts Options) sdkworker.Worker {
	// A probe run starts one activity per provider at once; the other jobs
	// run one activity at a time.
	w := newWorker(c, workflows.MaintenanceTaskQueue, opts, 20)
	RegisterMaintenance(w, maintenance)
	return w
}

// RegisterMaintenance registers the maintenance workflows and activities
// under the names that the schedules use. Tests use it with a test
// environment.
func RegisterMaintenance(r interface {
	RegisterWorkflowWithOptions(any, workflow.RegisterOptions)
	RegisterActivityWithOptions(any, activity.RegisterOptions)
}, m *activities.Maintenance) {
	r.RegisterWorkflowWithOptions(workflows.ExpireAPIKeysWorkflow, workflow.RegisterOptions{Name: workflows.ExpireAPIKeysWorkflowName})
	r.RegisterWorkflowWithOptions(workflows.DisableFailingAPIKeysWorkflow, workflow.RegisterOptions{Name: workflows.DisableFailingAPIKeysWorkflowName})
	r.RegisterWorkflowWithOptions(workflows.ProbeProvidersWorkflow, workflow.RegisterOptions{Name: workflows.ProbeProvidersWorkflowName})
	r.RegisterWorkflowWithOptions(workflows.RollUpUsageWorkflow, workflow.RegisterOptions{Name: workflows.RollUpUsageWorkflowName})
	r.RegisterWorkflowWithOptions(workflows.PruneRunEventsWorkflow, workflow.RegisterOptions{Name: workflows.PruneRunEventsWorkflowName})
	if m == nil {
		return
	}
	activitiesByName := []struct {
		name string
		fn   any
	}{
		{workflows.ExpireAPIKeysActivity, m.ExpireAPIKeys},
		{workflows.FindFailingAPIKeysActivity, m.FindFailingAPIKeys},
		{workflows.DisableAPIKeysActivity, m.DisableAPIKeys},
		{workflows.ListProbeTargetsActivity, m.ListProbeTargets},
		{workflows.ProbeProviderActivity, m.ProbeProvider},
		{workflows.RecordProviderHealthActivity, m.RecordProviderHealth},
		{workflows.CoolDownProvidersActivity, m.CoolDownProviders},
		{workflows.RollUpActivity, m.RollUp},
		{workflows.DeleteExpiredRowsActivity, m.DeleteExpiredRows},
		{workflows.PruneRunEventsActivity, m.PruneRunEvents},
	}
	for _, a := range activitiesByName {
		r.RegisterActivityWithOptions(a.fn, activity.RegisterOptions{Name: a.name})
	}
}
