// Package replay replays recorded workflow histories against the workflow
// code of this binary, so that a change that breaks determinism shows
// before it reaches a cluster with open runs.
package replay

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"unicode"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/aihigress/aihigress/workflows"
)

// Result is the outcome of one replay.
type Result struct {
	WorkflowID string
	RunID      string
	// Source is the file or cluster that the history came from.
	Source string
	Events int
	Err    error
	// EventID is the history event at which replay diverged, or 0 when the
	// error names none.
	EventID int64
}

// Nondeterministic reports whether the replay failed because the workflow
// code no longer produces the recorded commands.
func (r Result) Nondeterministic() bool {
	return r.Err != nil && nondeterminism.MatchString(r.Err.Error())
}

// nondeterminism matches the SDK's error code for a replay that diverged
// from its history (TMPRL1100 in go.temporal.io/sdk v1.51).
var nondeterminism = regexp.MustCompile(`TMPRL1100`)

// Replayer replays histories with the data and failure converters of
// options, which must be those of the workers that recorded them.
type Replayer struct {
	options worker.WorkflowReplayerOptions
	logger  *slog.Logger
}

// New returns a Replayer. Zero options mean the SDK's default converters.
func New(options worker.WorkflowReplayerOptions, logger *slog.Logger) *Replayer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Replayer{options: options, logger: logger}
}

// newWorkflowReplayer registers every workflow of this binary under its
// recorded name.
func (r *Replayer) newWorkflowReplayer() (worker.WorkflowReplayer, error) {
	replayer, err := worker.NewWorkflowReplayerWithOptions(r.options)
	if err != nil {
		return nil, fmt.Errorf("create workflow replayer: %w", err)
	}
	replayer.RegisterWorkflowWithOptions(workflows.ChatRunWorkflow, workflow.RegisterOptions{Name: workflows.ChatRunWorkflowName})
	replayer.RegisterWorkflowWithOptions(workflows.ImageGenerationWorkflow, workflow.RegisterOptions{Name: workflows.ImageGenerationWorkflowName})
	return replayer, nil
}

// History replays one history. source names where it came from.
func (r *Replayer) History(history *historypb.History, source string) Result {
	result := Result{Source: source, Events: len(history.GetEvents())}
	if events := history.GetEvents(); len(events) > 0 {
		if started := events[0].GetWorkflowExecutionStartedEventAttributes(); started != nil {
			result.WorkflowID = started.GetWorkflowId()
			result.RunID = started.GetOriginalExecutionRunId()
		}
	}
	replayer, err := r.newWorkflowReplayer()
	if err != nil {
		result.Err = err
		return result
	}
	result.Err = replayer.ReplayWorkflowHistory(tlog.NewStructuredLogger(r.logger), history)
	if result.Nondeterministic() {
		result.EventID = r.divergence(history, result.Err)
	}
	return result
}

// divergence returns the ID of the history event at which replay failed
// with err. The SDK's error describes the event but not its ID, so the
// workflow task whose commands diverged is found by replaying ever longer
// prefixes that end at task boundaries. Within that task, the event of the
// described type is chosen. It returns 0 when no prefix fails.
func (r *Replayer) divergence(history *historypb.History, err error) int64 {
	events := history.GetEvents()
	// cuts are prefix lengths that end before a new workflow task or at the
	// end, so that each prefix holds whole tasks with all their commands.
	var cuts []int
	for i := 1; i < len(events); i++ {
		if events[i].GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED {
			cuts = append(cuts, i)
		}
	}
	cuts = append(cuts, len(events))

	fails := func(n int) bool {
		replayer, err := r.newWorkflowReplayer()
		if err != nil {
			return false
		}
		err = replayer.ReplayWorkflowHistory(tlog.NewStructuredLogger(r.logger), &historypb.History{Events: events[:n]})
		return err != nil && nondeterminism.MatchString(err.Error())
	}
	first := sort.Search(len(cuts), func(i int) bool { return fails(cuts[i]) })
	if first == len(cuts) {
		return 0
	}
	from := 0
	if first > 0 {
		from = cuts[first-1]
	}
	task := events[from:cuts[first]]

	if described := describedEventType(err); described != enumspb.EVENT_TYPE_UNSPECIFIED {
		for _, event := range task {
			if event.GetEventType() == described {
				return event.GetEventId()
			}
		}
	}
	// The code produced a command that the history lacks: the divergence
	// is where that task's commands start.
	return task[len(task)-1].GetEventId()
}

// describedEventPattern reads the event type from the SDK's replay error,
// as in "history event is ActivityTaskScheduled: (...)".
var describedEventPattern = regexp.MustCompile(`(?:history event is|missing replay command for) ([A-Za-z]+)`)

// describedEventType returns the type of the history event that err
// describes, or EVENT_TYPE_UNSPECIFIED.
func describedEventType(err error) enumspb.EventType {
	match := describedEventPattern.FindStringSubmatch(err.Error())
	if match == nil {
		return enumspb.EVENT_TYPE_UNSPECIFIED
	}
	var name strings.Builder
	name.WriteString("EVENT_TYPE")
	for i, c := range match[1] {
		if unicode.IsUpper(c) || i == 0 {
			name.WriteByte('_')
		}
		name.WriteRune(unicode.ToUpper(c))
	}
	return enumspb.EventType(enumspb.EventType_value[name.String()])
}

// File replays a history saved with `temporal workflow show --output json`.
func (r *Replayer) File(path string) Result {
	file, err := os.Open(path)
	if err != nil {
		return Result{Source: path, Err: fmt.Errorf("open history file: %w", err)}
	}
	defer file.Close()
	history, err := client.HistoryFromJSON(file, client.HistoryJSONOptions{})
	if err != nil {
		return Result{Source: path, Err: fmt.Errorf("read history file %s: %w", path, err)}
	}
	return r.History(history, path)
}

// Path replays the history file at path, or every .json file in it when it
// is a folder, in name order.
func (r *Replayer) Path(path string) ([]Result, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("replay %s: %w", path, err)
	}
	if !info.IsDir() {
		return []Result{r.File(path)}, nil
	}
	files, err := filepath.Glob(filepath.Join(path, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("list histories in %s: %w", path, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no .json history files in %s", path)
	}
	results := make([]Result, 0, len(files))
	for _, file := range files {
		results = append(results, r.File(file))
	}
	return results, nil
}

// Execution fetches the history of a workflow execution from the cluster
// and replays it. An empty runID means the latest run.
func (r *Replayer) Execution(ctx context.Context, c client.Client, workflowID, runID string) Result {
	source := "workflow " + workflowID
	history := &historypb.History{}
	iter := c.GetWorkflowHistory(ctx, workflowID, runID, false, 0)
	for iter.HasNext() {
		event, err := iter.Next()
		if err != nil {
			return Result{WorkflowID: workflowID, RunID: runID, Source: source, Err: fmt.Errorf("fetch history of %s: %w", workflowID, err)}
		}
		history.Events = append(history.Events, event)
	}
	result := r.History(history, source)
	if result.WorkflowID == "" {
		result.WorkflowID = workflowID
	}
	return result
}
