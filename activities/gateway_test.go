package activities_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"testing"

	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/aihigress/aihigress/activities"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/models"
	"github.com/aihigress/aihigress/workflows"
)

// gatewayRun stores a background chat completion run of an API key of the
// fixture's user.
func (f *fixture) gatewayRun(t *testing.T, body string) *models.ChatRun {
	t.Helper()
	ctx := context.Background()
	key := models.APIKey{UserID: f.user.ID, Name: "k", Prefix: "ahk-" + testenv.Suffix(), KeyHash: testenv.Suffix(), IsActive: true}
	if err := f.store.CreateAPIKey(ctx, &key); err != nil {
		t.Fatal(err)
	}
	run, existing, err := f.store.CreateGatewayRun(ctx, store.NewGatewayRun{
		UserID: f.user.ID, APIKeyID: key.ID, LogicalModel: "model-x", RequestBody: models.JSON(body),
	})
	if err != nil || existing {
		t.Fatalf("CreateGatewayRun() = existing %v, error %v", existing, err)
	}
	return run
}

func newActivityEnv(f *fixture) *testsuite.TestActivityEnvironment {
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(tlog.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(f.chat.StartRun)
	env.RegisterActivity(f.chat.StreamChat)
	env.RegisterActivity(f.chat.FinalizeRun)
	return env
}

// jsonEqual reports whether two JSON documents decode to equal values.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("decode %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

func TestStreamChatGatewayRunForwardsRequest(t *testing.T) {
	f := newFixture(t, activities.ChatLimits{HistoryMaxMessages: 40, HistoryMaxChars: 10000})
	messages := `[{"role":"system","content":"Be brief."},` +
		`{"role":"user","content":[{"type":"text","text":"What is in"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA","detail":"low"}}]},` +
		`{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"look","arguments":"{}"}}]},` +
		`{"role":"tool","tool_call_id":"call_1","content":"a cat"}]`
	tools := `[{"type":"function","function":{"name":"look","parameters":{"type":"object","properties":{}}}}]`
	body := `{"model":"model-x","messages":` + messages + `,"temperature":0.25,"max_tokens":64,"tools":` + tools +
		`,"user":"end-user-7","stream_options":{"include_obfuscation":false}}`
	run := f.gatewayRun(t, body)
	env := newActivityEnv(f)

	if _, err := env.ExecuteActivity(f.chat.StartRun, run.ID); err != nil {
		t.Fatalf("StartRun: %v", err)
	}
	if _, err := env.ExecuteActivity(f.chat.StreamChat, workflows.StreamChatInput{
		RunID: run.ID, Attempt: 1, Candidate: workflows.Candidate{ProviderID: "up", Model: "upstream-x"},
	}); err != nil {
		t.Fatalf("StreamChat: %v", err)
	}
	if _, err := env.ExecuteActivity(f.chat.FinalizeRun, workflows.FinalizeInput{RunID: run.ID, Status: models.RunSucceeded}); err != nil {
		t.Fatalf("FinalizeRun: %v", err)
	}

	f.upstream.mu.Lock()
	sent := f.upstream.bodies[len(f.upstream.bodies)-1]
	f.upstream.mu.Unlock()
	want := map[string]string{
		"model":          `"upstream-x"`,
		"messages":       messages,
		"stream":         `true`,
		"temperature":    `0.25`,
		"max_tokens":     `64`,
		"tools":          tools,
		"user":           `"end-user-7"`,
		"stream_options": `{"include_obfuscation":false,"include_usage":true}`,
	}
	for field, value := range want {
		if got, ok := sent[field]; !ok || !jsonEqual(t, got, []byte(value)) {
			t.Errorf("upstream field %s = %s, want %s", field, got, value)
		}
	}
	if len(sent) != len(want) {
		t.Errorf("upstream body has %d fields, want %d: %v", len(sent), len(want), sent)
	}

	stored, err := f.store.RunByID(context.Background(), run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Status != models.RunSucceeded || stored.OutputText != "Hello world" {
		t.Errorf("run = %s %q, want succeeded with %q", stored.Status, stored.OutputText, "Hello world")
	}
	if stored.FinishReason != "stop" {
		t.Errorf("finish_reason = %q, want stop", stored.FinishReason)
	}
	if stored.PromptTokens != 11 || stored.CompletionTokens != 2 {
		t.Errorf("usage = %d/%d, want 11/2", stored.PromptTokens, stored.CompletionTokens)
	}
	if stored.OutputToolCalls != nil {
		t.Errorf("output_tool_calls = %s, want null", stored.OutputToolCalls)
	}
}

func TestGatewayRunEventsHaveNoMessageIDs(t *testing.T) {
	tests := []struct {
		name      string
		status    string
		wantTypes []string
	}{
		{name: "succeeded", status: models.RunSucceeded, wantTypes: []string{models.EventMessageCreated, models.EventMessageDelta, models.EventMessageCompleted}},
		{name: "failed", status: models.RunFailed, wantTypes: []string{models.EventMessageCreated, models.EventMessageDelta, models.EventMessageFailed}},
		{name: "canceled", status: models.RunCanceled, wantTypes: []string{models.EventMessageCreated, models.EventMessageDelta, models.EventRunCanceled, models.EventMessageFailed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, activities.ChatLimits{HistoryMaxMessages: 40, HistoryMaxChars: 10000})
			run := f.gatewayRun(t, `{"model":"model-x","messages":[{"role":"user","content":"hi"}]}`)
			env := newActivityEnv(f)
			if _, err := env.ExecuteActivity(f.chat.StartRun, run.ID); err != nil {
				t.Fatalf("StartRun: %v", err)
			}
			if _, err := env.ExecuteActivity(f.chat.StreamChat, workflows.StreamChatInput{
				RunID: run.ID, Attempt: 1, Candidate: workflows.Candidate{ProviderID: "up", Model: "upstream-x"},
			}); err != nil {
				t.Fatalf("StreamChat: %v", err)
			}
			if _, err := env.ExecuteActivity(f.chat.FinalizeRun, workflows.FinalizeInput{
				RunID: run.ID, Status: tt.status, ErrorCode: "test_error", ErrorMessage: "ended by the test",
			}); err != nil {
				t.Fatalf("FinalizeRun: %v", err)
			}

			evs, err := f.store.EventsAfter(context.Background(), run.ID, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			var types []string
			for _, e := range evs {
				if len(types) == 0 || types[len(types)-1] != e.EventType {
					types = append(types, e.EventType)
				}
				var payload map[string]json.RawMessage
				if err := json.Unmarshal(e.Payload, &payload); err != nil {
					t.Fatalf("event %d payload %s: %v", e.Seq, e.Payload, err)
				}
				for _, field := range []string{"conversation_id", "user_message_id", "assistant_message_id"} {
					if v, ok := payload[field]; ok && string(v) != "null" {
						t.Errorf("event %s has %s = %s, want null or absent", e.EventType, field, v)
					}
					if nested, ok := payload["run"]; ok {
						var detail map[string]json.RawMessage
						_ = json.Unmarshal(nested, &detail)
						if v, ok := detail[field]; ok && string(v) != "null" {
							t.Errorf("event %s run.%s = %s, want null or absent", e.EventType, field, v)
						}
					}
				}
			}
			if !reflect.DeepEqual(types, tt.wantTypes) {
				t.Errorf("event types = %v, want %v", types, tt.wantTypes)
			}
		})
	}
}

func TestStreamChatGatewayRunInvalidBody(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{name: "not an object", body: `["model-x"]`},
		{name: "no messages", body: `{"model":"model-x"}`},
		{name: "messages not an array", body: `{"model":"model-x","messages":"hi"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, activities.ChatLimits{HistoryMaxMessages: 40, HistoryMaxChars: 10000})
			run := f.gatewayRun(t, tt.body)
			env := newActivityEnv(f)
			if _, err := env.ExecuteActivity(f.chat.StartRun, run.ID); err != nil {
				t.Fatalf("StartRun: %v", err)
			}

			_, err := env.ExecuteActivity(f.chat.StreamChat, workflows.StreamChatInput{
				RunID: run.ID, Attempt: 1, Candidate: workflows.Candidate{ProviderID: "up", Model: "upstream-x"},
			})

			var appErr *temporal.ApplicationError
			if !errors.As(err, &appErr) || appErr.Type() != workflows.ErrorInvalidInput || !appErr.NonRetryable() {
				t.Fatalf("StreamChat error = %v, want a non-retryable %s", err, workflows.ErrorInvalidInput)
			}
			f.upstream.mu.Lock()
			calls := len(f.upstream.bodies)
			f.upstream.mu.Unlock()
			if calls != 0 {
				t.Errorf("upstream got %d requests, want none", calls)
			}
		})
	}
}
