package runsearch

import (
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/sdk/converter"
)

func TestFilterQuery(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		filter Filter
		want   string
	}{
		{"empty", Filter{}, ""},
		{"status and since", Filter{Status: "failed", Since: time.Hour}, "AihRunStatus='failed' AND StartTime>'2026-12-05T11:00:00Z'"},
		{"every attribute", Filter{Status: "running", Kind: "image", UserID: "u", ConversationID: "c", LogicalModel: "m", Provider: "p"},
			"AihRunStatus='running' AND AihRunKind='image' AND AihUserId='u' AND AihConversationId='c' AND AihLogicalModel='m' AND AihProvider='p'"},
		{"quotes escaped", Filter{Provider: `it's\x`}, `AihProvider='it\'s\\x'`},
		{"extra query", Filter{Kind: "chat", Extra: `AihProvider="a" OR AihProvider="b"`}, `AihRunKind='chat' AND (AihProvider="a" OR AihProvider="b")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.filter.Query(now); got != tt.want {
				t.Errorf("Query() = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestExecutionOf(t *testing.T) {
	keyword := func(value string) *commonpb.Payload {
		payload, err := converter.GetDefaultDataConverter().ToPayload(value)
		if err != nil {
			t.Fatal(err)
		}
		return payload
	}
	tests := []struct {
		name        string
		status      enumspb.WorkflowExecutionStatus
		workflowID  string
		wantRunning bool
		wantRunID   string
	}{
		{"running chat run", enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, "chat-run-r1", true, "r1"},
		{"completed image run", enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED, "image-run-r2", false, "r2"},
		{"other workflow", enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED, "cleanup", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := executionOf(&workflowpb.WorkflowExecutionInfo{
				Execution: &commonpb.WorkflowExecution{WorkflowId: tt.workflowID, RunId: "temporal-run"},
				Status:    tt.status,
				SearchAttributes: &commonpb.SearchAttributes{IndexedFields: map[string]*commonpb.Payload{
					"AihRunStatus": keyword("failed"), "AihProvider": keyword("openai"),
				}},
			})
			if e.Running != tt.wantRunning {
				t.Errorf("Running = %v, want %v (status %s)", e.Running, tt.wantRunning, e.Status)
			}
			if e.AppRunID() != tt.wantRunID {
				t.Errorf("AppRunID() = %q, want %q", e.AppRunID(), tt.wantRunID)
			}
			if e.RunStatus != "failed" || e.Provider != "openai" {
				t.Errorf("RunStatus, Provider = %q, %q, want failed, openai", e.RunStatus, e.Provider)
			}
		})
	}
}

func TestFilterCheck(t *testing.T) {
	tests := []struct {
		name    string
		filter  Filter
		wantErr string
	}{
		{"empty", Filter{}, ""},
		{"known status and kind", Filter{Status: "canceled", Kind: "image", Since: time.Hour}, ""},
		{"unknown status", Filter{Status: "bogus"}, `--status "bogus"`},
		{"status in capitals", Filter{Status: "FAILED"}, `--status "FAILED"`},
		{"unknown kind", Filter{Kind: "video"}, `--kind "video"`},
		{"negative since", Filter{Since: -time.Minute}, "--since -1m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.filter.Check()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Check() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Check() = %v, want an error naming %s", err, tt.wantErr)
			}
		})
	}
}
