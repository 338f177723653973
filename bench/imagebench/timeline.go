package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/aihigress/aihigress/workflows"
)

// timeline is the steps of the image workflows of one stack, each as its
// offsets from the workflow's start event, in the order they first occur.
type timeline struct {
	workflows int
	steps     []string
	offsets   map[string][]time.Duration
	// durations are the times from the start event to the close event.
	durations []time.Duration
	// Per-run counts of the tasks that Temporal hands over: workflow
	// tasks, activity tasks and local activities.
	workflowTasks, activityTasks, localActivities []int
	// Per-run sums: the waits from a task's scheduled event to its started
	// event, the workflow tasks from started to completed (which includes
	// their local activities), and the activities from started to
	// completed.
	dispatchWaits, workflowTaskTimes, activityTimes []time.Duration
	// runs holds the start event's time and the first activity's started
	// event's time of each workflow, by the prompt in its summary.
	runs map[string]runTimes
}

// runTimes are the event times of one workflow that the report joins with
// the client's sample of the same prompt.
type runTimes struct {
	started, activityStarted time.Time
}

// fetchTimeline reads the histories of the image workflows for model that
// started at or after since.
func fetchTimeline(ctx context.Context, c client.Client, model string, since time.Time) (*timeline, error) {
	query := fmt.Sprintf("WorkflowType = '%s' AND %s = '%s' AND StartTime >= '%s'",
		workflows.ImageGenerationWorkflowName, workflows.AttrLogicalModel.GetName(), model, since.UTC().Format(time.RFC3339Nano))
	t := &timeline{offsets: map[string][]time.Duration{}, runs: map[string]runTimes{}}
	var token []byte
	for {
		page, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, NextPageToken: token})
		if err != nil {
			return nil, fmt.Errorf("list image workflows: %w", err)
		}
		for _, info := range page.GetExecutions() {
			if err := t.add(ctx, c, info.GetExecution().GetWorkflowId(), info.GetExecution().GetRunId()); err != nil {
				return nil, err
			}
		}
		token = page.GetNextPageToken()
		if len(token) == 0 {
			return t, nil
		}
	}
}

// add reads one workflow's history and records its steps.
func (t *timeline) add(ctx context.Context, c client.Client, workflowID, runID string) error {
	iter := c.GetWorkflowHistory(ctx, workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var events []*historypb.HistoryEvent
	for iter.HasNext() {
		event, err := iter.Next()
		if err != nil {
			return fmt.Errorf("read history of %s: %w", workflowID, err)
		}
		events = append(events, event)
	}
	if len(events) == 0 || events[0].GetEventType() != enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED {
		return fmt.Errorf("history of %s does not begin with its start event", workflowID)
	}

	start := events[0].GetEventTime().AsTime()
	times := runTimes{started: start}
	var dispatchWait, workflowTaskTime, activityTime time.Duration
	scheduledAt := map[int64]time.Time{} // by the scheduled event's ID
	startedAt := map[int64]time.Time{}   // by the started event's ID
	activityNames := map[int64]string{}
	seen := map[string]int{}
	workflowTasks, activityTasks, localActivities := 0, 0, 0
	for _, event := range events[1:] {
		at := event.GetEventTime().AsTime()
		label := ""
		switch event.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
			workflowTasks++
			scheduledAt[event.GetEventId()] = at
			label = fmt.Sprintf("workflow task %d scheduled", workflowTasks)
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED:
			startedAt[event.GetEventId()] = at
			dispatchWait += at.Sub(scheduledAt[event.GetWorkflowTaskStartedEventAttributes().GetScheduledEventId()])
			label = fmt.Sprintf("workflow task %d started", workflowTasks)
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
			workflowTaskTime += at.Sub(startedAt[event.GetWorkflowTaskCompletedEventAttributes().GetStartedEventId()])
			label = fmt.Sprintf("workflow task %d completed", workflowTasks)
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			activityTasks++
			scheduledAt[event.GetEventId()] = at
			name := event.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName()
			activityNames[event.GetEventId()] = name
			label = name + " scheduled"
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
			startedAt[event.GetEventId()] = at
			if times.activityStarted.IsZero() {
				times.activityStarted = at
			}
			scheduled := event.GetActivityTaskStartedEventAttributes().GetScheduledEventId()
			dispatchWait += at.Sub(scheduledAt[scheduled])
			label = activityNames[scheduled] + " started"
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			attrs := event.GetActivityTaskCompletedEventAttributes()
			activityTime += at.Sub(startedAt[attrs.GetStartedEventId()])
			label = activityNames[attrs.GetScheduledEventId()] + " completed"
		case enumspb.EVENT_TYPE_MARKER_RECORDED:
			name := markerName(event.GetMarkerRecordedEventAttributes())
			if event.GetMarkerRecordedEventAttributes().GetMarkerName() == "LocalActivity" {
				localActivities++
			}
			label = name + " recorded"
		case enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
			label = "search attributes upserted"
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
			label = "workflow completed"
			t.durations = append(t.durations, event.GetEventTime().AsTime().Sub(start))
		default:
			label = event.GetEventType().String()
		}
		// A step that repeats in one history, such as a second upsert,
		// gets a number.
		seen[label]++
		if seen[label] > 1 {
			label = fmt.Sprintf("%s (%d)", label, seen[label])
		}
		if _, ok := t.offsets[label]; !ok {
			t.steps = append(t.steps, label)
		}
		t.offsets[label] = append(t.offsets[label], event.GetEventTime().AsTime().Sub(start))
	}
	t.workflows++
	if prompt := summaryPrompt(events[0]); prompt != "" {
		t.runs[prompt] = times
	}
	t.dispatchWaits = append(t.dispatchWaits, dispatchWait)
	t.workflowTaskTimes = append(t.workflowTaskTimes, workflowTaskTime)
	t.activityTimes = append(t.activityTimes, activityTime)
	t.workflowTasks = append(t.workflowTasks, workflowTasks)
	t.activityTasks = append(t.activityTasks, activityTasks)
	t.localActivities = append(t.localActivities, localActivities)
	return nil
}

// summaryPrompt returns the prompt in the static summary of a workflow's
// start event, which the API writes as "<kind> <model>: <prompt>", or ""
// when the summary has none.
func summaryPrompt(started *historypb.HistoryEvent) string {
	var summary string
	if json.Unmarshal(started.GetUserMetadata().GetSummary().GetData(), &summary) != nil {
		return ""
	}
	_, prompt, ok := strings.Cut(summary, ": ")
	if !ok {
		return ""
	}
	return prompt
}

// markerName names a marker by its kind and, for a local activity, the
// activity type that its data records.
func markerName(attrs *historypb.MarkerRecordedEventAttributes) string {
	kind := attrs.GetMarkerName()
	if kind != "LocalActivity" {
		return kind + " marker"
	}
	for _, payload := range attrs.GetDetails()["data"].GetPayloads() {
		var data struct {
			ActivityType string
		}
		if json.Unmarshal(payload.GetData(), &data) == nil && data.ActivityType != "" {
			return "local activity " + data.ActivityType
		}
	}
	return "local activity"
}

// orderedSteps returns the steps sorted by their median offset.
func (t *timeline) orderedSteps() []string {
	steps := slices.Clone(t.steps)
	slices.SortStableFunc(steps, func(a, b string) int {
		return cmp.Compare(percentile(t.offsets[a], 50), percentile(t.offsets[b], 50))
	})
	return steps
}

// medianCount returns the median of counts.
func medianCount(counts []int) int {
	if len(counts) == 0 {
		return 0
	}
	sorted := slices.Clone(counts)
	slices.Sort(sorted)
	return sorted[len(sorted)/2]
}
