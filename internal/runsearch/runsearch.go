// Package runsearch finds run workflows through Temporal's visibility API,
// by the search attributes that the workflows set.
package runsearch

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
)

// Filter selects runs. Empty fields select everything.
type Filter struct {
	Status         string // AihRunStatus: queued, running, succeeded, failed or canceled
	Kind           string // AihRunKind: chat or image
	UserID         string
	ConversationID string
	LogicalModel   string
	Provider       string
	// Since keeps runs started within this duration before now.
	Since time.Duration
	// Extra is a visibility query joined with AND.
	Extra string
}

// Check returns an error naming the first field of f whose value no run can
// have, so that a typo does not look like an empty result.
func (f Filter) Check() error {
	choices := []struct {
		name, value string
		allowed     []string
	}{
		{"status", f.Status, []string{"queued", "running", "succeeded", "failed", "canceled"}},
		{"kind", f.Kind, []string{"chat", "image"}},
	}
	for _, c := range choices {
		if c.value != "" && !slices.Contains(c.allowed, c.value) {
			return fmt.Errorf("invalid --%s %q: use one of %s", c.name, c.value, strings.Join(c.allowed, ", "))
		}
	}
	if f.Since < 0 {
		return fmt.Errorf("invalid --since %s: use a positive duration such as 1h", f.Since)
	}
	return nil
}

// Query returns the visibility query of f at now.
func (f Filter) Query(now time.Time) string {
	var parts []string
	add := func(attribute, value string) {
		if value != "" {
			parts = append(parts, fmt.Sprintf("%s=%s", attribute, quote(value)))
		}
	}
	add("AihRunStatus", f.Status)
	add("AihRunKind", f.Kind)
	add("AihUserId", f.UserID)
	add("AihConversationId", f.ConversationID)
	add("AihLogicalModel", f.LogicalModel)
	add("AihProvider", f.Provider)
	if f.Since > 0 {
		parts = append(parts, fmt.Sprintf("StartTime>%s", quote(now.Add(-f.Since).UTC().Format(time.RFC3339))))
	}
	if strings.TrimSpace(f.Extra) != "" {
		parts = append(parts, "("+f.Extra+")")
	}
	return strings.Join(parts, " AND ")
}

// quote writes value as a visibility query string literal.
func quote(value string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(value, `\`, `\\`), "'", `\'`) + "'"
}

// Execution is one workflow execution that a search found.
type Execution struct {
	WorkflowID string
	RunID      string
	Type       string
	Status     string // Temporal's status, such as Completed or Running
	Running    bool
	RunStatus  string // AihRunStatus
	Provider   string // AihProvider
	StartTime  time.Time
}

// AppRunID returns the AI Higress run ID, which follows the workflow ID's
// prefix, or "" for another workflow.
func (e Execution) AppRunID() string {
	for _, prefix := range []string{"chat-run-", "image-run-"} {
		if id, ok := strings.CutPrefix(e.WorkflowID, prefix); ok {
			return id
		}
	}
	return ""
}

// List returns at most limit executions that match query, newest first.
// limit <= 0 means 1000.
func List(ctx context.Context, c client.Client, namespace, query string, limit int) ([]Execution, error) {
	if limit <= 0 {
		limit = 1000
	}
	var executions []Execution
	var pageToken []byte
	for {
		response, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace:     namespace,
			PageSize:      int32(min(limit, 1000)),
			NextPageToken: pageToken,
			Query:         query,
		})
		if err != nil {
			return nil, fmt.Errorf("list workflows matching %q: %w", query, err)
		}
		for _, info := range response.GetExecutions() {
			executions = append(executions, executionOf(info))
			if len(executions) >= limit {
				return executions, nil
			}
		}
		pageToken = response.GetNextPageToken()
		if len(pageToken) == 0 {
			return executions, nil
		}
	}
}

func executionOf(info *workflowpb.WorkflowExecutionInfo) Execution {
	e := Execution{
		WorkflowID: info.GetExecution().GetWorkflowId(),
		RunID:      info.GetExecution().GetRunId(),
		Type:       info.GetType().GetName(),
		Status:     strings.TrimPrefix(info.GetStatus().String(), "WORKFLOW_EXECUTION_STATUS_"),
		Running:    info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING,
		StartTime:  info.GetStartTime().AsTime(),
	}
	fields := info.GetSearchAttributes().GetIndexedFields()
	decode := func(name string) string {
		var value string
		if payload, ok := fields[name]; ok {
			// Search attributes bypass payload codecs, so the default
			// converter decodes them.
			_ = converter.GetDefaultDataConverter().FromPayload(payload, &value)
		}
		return value
	}
	e.RunStatus = decode("AihRunStatus")
	e.Provider = decode("AihProvider")
	return e
}

// UILink returns the Temporal Web UI page of an execution.
func UILink(uiBaseURL, namespace string, e Execution) string {
	return fmt.Sprintf("%s/namespaces/%s/workflows/%s/%s/history", strings.TrimRight(uiBaseURL, "/"), namespace, e.WorkflowID, e.RunID)
}
