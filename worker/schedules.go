package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/aihigress/aihigress/workflows"
)

// IDs of the maintenance schedules. Operators pause and trigger them by
// these IDs, so they are stable.
const (
	ExpireAPIKeysScheduleID         = "aihigress-expire-api-keys"
	DisableFailingAPIKeysScheduleID = "aihigress-disable-failing-api-keys"
	ProbeProvidersScheduleID        = "aihigress-probe-providers"
	RollUpUsageScheduleID           = "aihigress-roll-up-usage"
	PruneRunEventsScheduleID        = "aihigress-prune-run-events"
)

// Schedule is one maintenance schedule that EnsureSchedules keeps.
type Schedule struct {
	ID string
	// Workflow is the registered name of the workflow that each action
	// starts on the maintenance task queue.
	Workflow string
	// Interval is the time between two actions. Zero deletes the schedule.
	Interval time.Duration
}

// catchupWindow is how late a missed action may still start after Temporal
// Server was unavailable: one interval, and at least a minute. The jobs
// are idempotent, so a missed action needs no catching up beyond the next
// one.
func (s Schedule) catchupWindow() time.Duration {
	return max(s.Interval, time.Minute)
}

// runTimeout bounds one run of the job, including the time it waits for a
// worker: two intervals, and at least an hour. While a run is open, the
// overlap policy skips the next actions.
func (s Schedule) runTimeout() time.Duration {
	return max(2*s.Interval, time.Hour)
}

func (s Schedule) spec() client.ScheduleSpec {
	return client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: s.Interval}}}
}

// action returns the workflow that each action starts. It carries no
// arguments and no summary, because both would be payloads that the data
// converter encrypts when TEMPORAL_PAYLOAD_KEY is set, and a schedule
// keeps them after the key is rotated away. The workflow gets a zero
// MaintenanceInput instead.
func (s Schedule) action() *client.ScheduleWorkflowAction {
	return &client.ScheduleWorkflowAction{
		// The server appends the action time to make each workflow ID
		// unique.
		ID:                       s.ID,
		Workflow:                 s.Workflow,
		TaskQueue:                workflows.MaintenanceTaskQueue,
		WorkflowExecutionTimeout: s.runTimeout(),
	}
}

func (s Schedule) policy() *client.SchedulePolicies {
	return &client.SchedulePolicies{
		Overlap:       enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
		CatchupWindow: s.catchupWindow(),
	}
}

// EnsureSchedules creates each schedule that does not exist and deletes
// each one whose Interval is zero. An existing schedule whose spec, action
// or policies differ from s gets them replaced. A schedule's state, such as
// a pause that an operator set, stays as it is. Several workers may call it at once: the
// server keeps one schedule per ID. It returns the joined errors of the
// schedules it could not bring up to date.
func EnsureSchedules(ctx context.Context, c client.Client, schedules []Schedule, logger *slog.Logger) error {
	var failures []error
	for _, s := range schedules {
		logger := logger.With("schedule_id", s.ID)
		if s.Interval <= 0 {
			if err := deleteSchedule(ctx, c, s, logger); err != nil {
				failures = append(failures, err)
			}
			continue
		}
		if err := ensureSchedule(ctx, c, s, logger); err != nil {
			failures = append(failures, err)
		}
	}
	return errors.Join(failures...)
}

func ensureSchedule(ctx context.Context, c client.Client, s Schedule, logger *slog.Logger) error {
	_, err := c.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID:            s.ID,
		Spec:          s.spec(),
		Action:        s.action(),
		Overlap:       enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
		CatchupWindow: s.catchupWindow(),
	})
	if err == nil {
		logger.Info("maintenance schedule created", "workflow", s.Workflow, "interval", s.Interval.String())
		return nil
	}
	if !errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		return fmt.Errorf("create schedule %s: %w", s.ID, err)
	}

	updated := false
	err = c.ScheduleClient().GetHandle(ctx, s.ID).Update(ctx, client.ScheduleUpdateOptions{
		DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			current := in.Description.Schedule
			if scheduleMatches(current, s) {
				return nil, temporal.ErrSkipScheduleUpdate
			}
			updated = true
			spec := s.spec()
			return &client.ScheduleUpdate{Schedule: &client.Schedule{
				Action: s.action(),
				Spec:   &spec,
				Policy: s.policy(),
				State:  current.State,
			}}, nil
		},
	})
	if err != nil {
		return fmt.Errorf("update schedule %s: %w", s.ID, err)
	}
	if updated {
		logger.Info("maintenance schedule updated", "workflow", s.Workflow, "interval", s.Interval.String())
	} else {
		logger.Debug("maintenance schedule is up to date")
	}
	return nil
}

// scheduleMatches reports whether current has the interval, workflow, task
// queue, run timeout and policies of s, and no workflow arguments.
func scheduleMatches(current client.Schedule, s Schedule) bool {
	spec := current.Spec
	if spec == nil || len(spec.Intervals) != 1 || len(spec.Calendars) != 0 || len(spec.CronExpressions) != 0 ||
		spec.Intervals[0] != (client.ScheduleIntervalSpec{Every: s.Interval}) {
		return false
	}
	action, ok := current.Action.(*client.ScheduleWorkflowAction)
	if !ok || action.Workflow != s.Workflow || action.TaskQueue != workflows.MaintenanceTaskQueue ||
		action.WorkflowExecutionTimeout != s.runTimeout() || len(action.Args) != 0 {
		return false
	}
	policy := current.Policy
	return policy != nil && policy.Overlap == enumspb.SCHEDULE_OVERLAP_POLICY_SKIP && policy.CatchupWindow == s.catchupWindow()
}

func deleteSchedule(ctx context.Context, c client.Client, s Schedule, logger *slog.Logger) error {
	err := c.ScheduleClient().GetHandle(ctx, s.ID).Delete(ctx)
	var notFound *serviceerror.NotFound
	switch {
	case errors.As(err, &notFound):
		return nil
	case err != nil:
		return fmt.Errorf("delete schedule %s, whose job is turned off: %w", s.ID, err)
	}
	logger.Info("maintenance schedule deleted because its job is turned off", "workflow", s.Workflow)
	return nil
}
