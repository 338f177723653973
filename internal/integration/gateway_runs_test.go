package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	temporalclient "go.temporal.io/sdk/client"

	"github.com/aihigress/aihigress/internal/apikeys"
	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/models"
)

// backgroundAccepted is the 202 body of a background chat completion.
type backgroundAccepted struct {
	ID     string `json:"id"`
	RunID  string `json:"run_id"`
	Object string `json:"object"`
	Status string `json:"status"`
	Model  string `json:"model"`
}

// completionObject is the body of GET /v1/runs/{id}/result.
type completionObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index   int `json:"index"`
		Message struct {
			Role      string          `json:"role"`
			Content   *string         `json:"content"`
			ToolCalls json.RawMessage `json:"tool_calls"`
		} `json:"message"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
}

// runConflict is the 409 body of GET /v1/runs/{id}/result.
type runConflict struct {
	Error struct {
		Message string `json:"message"`
		Type    string `json:"type"`
		Code    string `json:"code"`
	} `json:"error"`
	Status string `json:"status"`
}

// userID returns the id of c's user.
func (c *client) userID() string {
	c.t.Helper()
	var me struct {
		ID string `json:"id"`
	}
	c.mustDo("GET", "/auth/me", nil, 200, &me)
	return me.ID
}

// newAPIKey creates an API key for owner's user and returns a client that
// authenticates with it.
func (s *stack) newAPIKey(owner *client, in apikeys.NewKey) *client {
	s.t.Helper()
	service, err := apikeys.NewService(s.app.Store, s.cfg.MasterKey, apikeys.Options{})
	if err != nil {
		s.t.Fatal(err)
	}
	if in.Name == "" {
		in.Name = "test key"
	}
	secret, _, err := service.Create(context.Background(), owner.userID(), in)
	if err != nil {
		s.t.Fatal(err)
	}
	return &client{t: s.t, baseURL: owner.baseURL, token: secret}
}

// startBackground posts a background chat completion and returns the 202
// body; it fails the test on any other status.
func (c *client) startBackground(body any, header http.Header) backgroundAccepted {
	c.t.Helper()
	resp := c.request("POST", "/v1/chat/completions", body, header)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		c.t.Fatalf("POST /v1/chat/completions: status %d, want 202: %s", resp.StatusCode, raw)
	}
	var accepted backgroundAccepted
	if err := json.Unmarshal(raw, &accepted); err != nil {
		c.t.Fatalf("decode %s: %v", raw, err)
	}
	if got, want := resp.Header.Get("Location"), "/v1/runs/"+accepted.RunID; got != want {
		c.t.Errorf("Location = %q, want %q", got, want)
	}
	return accepted
}

// waitRun polls the run until it reaches status and returns its detail.
func (c *client) waitRun(runID, status string) runDetail {
	c.t.Helper()
	var run runDetail
	waitFor(c.t, 30*time.Second, "run "+runID+" to be "+status, func() bool {
		c.mustDo("GET", "/v1/runs/"+runID, nil, 200, &run)
		return run.Status == status
	})
	return run
}

func userMessages(text string) []map[string]any {
	return []map[string]any{{"role": "user", "content": text}}
}

// mockCompletion requests the reply to messages from the mock upstream
// directly, without streaming. The mock's reply depends only on the messages, so
// this is what a run with the same messages must return.
func mockCompletion(t *testing.T, s *stack, messages any) (content string, usage providers.Usage) {
	t.Helper()
	raw, err := json.Marshal(map[string]any{"model": "mock-gpt", "messages": messages})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(s.mock.URL()+"/v1/chat/completions", "application/json", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
		Usage providers.Usage `json:"usage"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || len(body.Choices) != 1 {
		t.Fatalf("mock completion: status %d, %d choices, error %v", resp.StatusCode, len(body.Choices), err)
	}
	return body.Choices[0].Message.Content, body.Usage
}

func TestBackgroundChatCompletion(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})

	tests := []struct {
		name   string
		body   map[string]any
		header http.Header
	}{
		{
			name: "background field",
			body: map[string]any{"model": "mock-gpt", "messages": userMessages("Hello background field"), "background": true},
		},
		{
			name:   "background header",
			body:   map[string]any{"model": "mock-gpt", "messages": userMessages("Hello background header")},
			header: http.Header{"X-Aihigress-Background": []string{"1"}},
		},
		{
			name: "stream ignored",
			body: map[string]any{"model": "mock-gpt", "messages": userMessages("Hello streaming background"), "stream": true, "background": true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := *key
			key.t = t
			accepted := key.startBackground(tt.body, tt.header)
			if accepted.ID == "" || accepted.ID != accepted.RunID {
				t.Errorf("id = %q and run_id = %q, want the same run id", accepted.ID, accepted.RunID)
			}
			if accepted.Object != "chat.completion.run" || accepted.Status != "queued" || accepted.Model != "mock-gpt" {
				t.Errorf("accepted = %+v, want object chat.completion.run, status queued, model mock-gpt", accepted)
			}

			run := key.waitRun(accepted.RunID, "succeeded")
			if run.Kind != "chat" || run.WorkflowID != "chat-run-"+run.RunID || run.SelectedProviderID != "mock" {
				t.Errorf("run = %+v", run)
			}

			wantContent, wantUsage := mockCompletion(t, s, tt.body["messages"])
			var result completionObject
			key.mustDo("GET", "/v1/runs/"+run.RunID+"/result", nil, 200, &result)
			if result.ID != "chatcmpl-"+run.RunID || result.Object != "chat.completion" || result.Model != "mock-gpt" || result.Created == 0 {
				t.Errorf("result header = id %q object %q model %q created %d", result.ID, result.Object, result.Model, result.Created)
			}
			if len(result.Choices) != 1 {
				t.Fatalf("result has %d choices, want 1", len(result.Choices))
			}
			choice := result.Choices[0]
			if choice.Message.Role != "assistant" || choice.Message.Content == nil || *choice.Message.Content != wantContent {
				t.Errorf("result message = %+v, want assistant content %q", choice.Message, wantContent)
			}
			if choice.FinishReason == nil || *choice.FinishReason != "stop" {
				t.Errorf("finish_reason = %v, want stop", choice.FinishReason)
			}
			if result.Usage.PromptTokens != wantUsage.PromptTokens || result.Usage.CompletionTokens != wantUsage.CompletionTokens ||
				result.Usage.TotalTokens != wantUsage.PromptTokens+wantUsage.CompletionTokens {
				t.Errorf("usage = %+v, want %+v", result.Usage, wantUsage)
			}
			if run.OutputText != wantContent {
				t.Errorf("run output_text = %q, want %q", run.OutputText, wantContent)
			}

			// The full event stream, then a replay from Last-Event-ID.
			stream := key.openEvents("/v1/runs/"+run.RunID+"/events", nil)
			frames := stream.readUntil(t, "done")
			stream.close()
			checkSequence(t, frames, 0)
			events := runEvents(frames)
			if len(events) < 3 || events[0].Event != "message.created" || events[len(events)-1].Event != "message.completed" {
				t.Fatalf("events = %v, want message.created ... message.completed", eventNames(events))
			}
			if got := replyText(t, frames); got != wantContent {
				t.Errorf("streamed text = %q, want %q", got, wantContent)
			}
			var created struct {
				Payload map[string]json.RawMessage `json:"payload"`
			}
			if err := json.Unmarshal([]byte(events[0].Data), &created); err != nil {
				t.Fatal(err)
			}
			for _, field := range []string{"conversation_id", "user_message_id", "assistant_message_id"} {
				if v, ok := created.Payload[field]; ok && string(v) != "null" {
					t.Errorf("message.created %s = %s, want null", field, v)
				}
			}
			if string(created.Payload["requested_logical_model"]) != `"mock-gpt"` {
				t.Errorf("message.created requested_logical_model = %s", created.Payload["requested_logical_model"])
			}

			replay := key.openEvents("/v1/runs/"+run.RunID+"/events", http.Header{"Last-Event-ID": []string{"2"}})
			replayed := replay.readUntil(t, "done")
			replay.close()
			checkSequence(t, replayed, 2)
			if n := len(runEvents(replayed)); n != len(events)-2 {
				t.Errorf("replay after seq 2 has %d events, want %d", n, len(events)-2)
			}
		})
	}
}

// TestBackgroundRunKeepsRequestOutOfHistory checks that the workflow
// history carries the run id but neither the messages nor the other fields.
// The static summary holds the first 80 characters of the last user
// message, so the marker sits after them.
func TestBackgroundRunKeepsRequestOutOfHistory(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})
	marker := "marker" + testenv.Suffix()
	text := strings.Repeat("padding ", 12) + marker

	accepted := key.startBackground(map[string]any{
		"model": "mock-gpt", "messages": userMessages(text), "background": true,
		"metadata": map[string]any{"note": marker},
	}, nil)
	run := key.waitRun(accepted.RunID, "succeeded")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iter := s.app.Temporal.GetWorkflowHistory(ctx, run.WorkflowID, "", false, 0)
	sawRunID := false
	for iter.HasNext() {
		event, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		encoded := event.String()
		if strings.Contains(encoded, marker) {
			t.Errorf("history event %d (%s) contains the request", event.GetEventId(), event.GetEventType())
		}
		if strings.Contains(encoded, run.RunID) {
			sawRunID = true
		}
	}
	if !sawRunID {
		t.Error("history never mentions the run id")
	}

	description, err := s.app.Temporal.DescribeWorkflowExecution(ctx, run.WorkflowID, "")
	if err != nil {
		t.Fatal(err)
	}
	attributes := description.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()
	for _, name := range []string{"AihUserId", "AihLogicalModel", "AihRunKind", "AihRunStatus"} {
		if _, ok := attributes[name]; !ok {
			t.Errorf("search attribute %s is missing", name)
		}
	}
	if _, ok := attributes["AihConversationId"]; ok {
		t.Error("search attribute AihConversationId is set on a run without a conversation")
	}
}

func TestBackgroundRunAccess(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	bob := s.newUser()
	aliceKey := s.newAPIKey(alice, apikeys.NewKey{Name: "first"})
	aliceOtherKey := s.newAPIKey(alice, apikeys.NewKey{Name: "second"})
	bobKey := s.newAPIKey(bob, apikeys.NewKey{})

	accepted := aliceKey.startBackground(map[string]any{"model": "mock-gpt", "messages": userMessages("mine"), "background": true}, nil)
	keyRun := aliceKey.waitRun(accepted.RunID, "succeeded")

	convID := alice.conversation("mock-gpt")
	var turn turnResponse
	alice.mustDo("POST", "/v1/conversations/"+convID+"/messages", map[string]any{"content": "conversation run"}, 200, &turn)
	convRun := turn.Run.RunID

	paths := func(runID string) []struct{ method, path string } {
		return []struct{ method, path string }{
			{"GET", "/v1/runs/" + runID},
			{"GET", "/v1/runs/" + runID + "/result"},
			{"GET", "/v1/runs/" + runID + "/events"},
			{"POST", "/v1/runs/" + runID + "/cancel"},
		}
	}
	tests := []struct {
		name   string
		caller *client
		runID  string
		want   int
	}{
		{name: "creating key reads its run", caller: aliceKey, runID: keyRun.RunID, want: 200},
		{name: "owner's token reads the key's run", caller: alice, runID: keyRun.RunID, want: 200},
		{name: "owner's token reads a conversation run", caller: alice, runID: convRun, want: 200},
		{name: "other key of the owner", caller: aliceOtherKey, runID: keyRun.RunID, want: 404},
		{name: "key reads a conversation run", caller: aliceKey, runID: convRun, want: 404},
		{name: "other user's token", caller: bob, runID: keyRun.RunID, want: 404},
		{name: "other user's key", caller: bobKey, runID: keyRun.RunID, want: 404},
		{name: "other user's key on a conversation run", caller: bobKey, runID: convRun, want: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, p := range paths(tt.runID) {
				status, header, raw := exchange(t, tt.caller, p.method, p.path, nil, nil)
				if tt.want == 404 {
					checkError(t, status, header, raw, 404, "run_not_found")
					continue
				}
				if status != tt.want {
					t.Errorf("%s %s: status %d, want %d: %.300s", p.method, p.path, status, tt.want, raw)
				}
			}
		})
	}

	var detail runDetail
	alice.mustDo("GET", "/v1/runs/"+keyRun.RunID, nil, 200, &detail)
	if detail.OutputText != keyRun.OutputText || detail.Status != "succeeded" {
		t.Errorf("owner's view = %+v, want the key's run", detail)
	}
}

func TestBackgroundRunCancelAndEarlyResult(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})

	accepted := key.startBackground(map[string]any{"model": "stall", "messages": userMessages("stall please"), "background": true}, nil)

	// The stall fault streams a few tokens and then holds the stream open.
	stream := key.openEvents("/v1/runs/"+accepted.RunID+"/events", nil)
	defer stream.close()
	stream.readUntil(t, "message.delta")

	status, _, raw := exchange(t, key, "GET", "/v1/runs/"+accepted.RunID+"/result", nil, nil)
	var early runConflict
	if err := json.Unmarshal(raw, &early); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	if status != http.StatusConflict || early.Error.Code != "run_not_finished" || early.Status != "running" || early.Error.Type != "conflict_error" {
		t.Errorf("result before the end = %d %+v, want 409 run_not_finished with status running", status, early)
	}

	var canceled runDetail
	key.mustDo("POST", "/v1/runs/"+accepted.RunID+"/cancel", nil, 200, &canceled)
	if canceled.Status != "canceled" {
		t.Errorf("status after cancel = %s, want canceled", canceled.Status)
	}
	frames := stream.readUntil(t, "done")
	events := runEvents(frames)
	if len(events) < 2 || events[len(events)-2].Event != "run.canceled" || events[len(events)-1].Event != "message.failed" {
		t.Errorf("closing events = %v, want run.canceled then message.failed", eventNames(events))
	}
	waitFor(t, 5*time.Second, "upstream request to be aborted", func() bool { return s.mock.Stats().Active == 0 })

	status, _, raw = exchange(t, key, "GET", "/v1/runs/"+accepted.RunID+"/result", nil, nil)
	var after runConflict
	if err := json.Unmarshal(raw, &after); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	if status != http.StatusConflict || after.Error.Code != "canceled" || after.Status != "canceled" || after.Error.Message == "" {
		t.Errorf("result of a canceled run = %d %+v, want 409 canceled", status, after)
	}
}

func TestBackgroundRunFailedResult(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})

	accepted := key.startBackground(map[string]any{"model": "bad-request", "messages": userMessages("fail"), "background": true}, nil)
	key.waitRun(accepted.RunID, "failed")

	status, _, raw := exchange(t, key, "GET", "/v1/runs/"+accepted.RunID+"/result", nil, nil)
	var conflict runConflict
	if err := json.Unmarshal(raw, &conflict); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	if status != http.StatusConflict || conflict.Error.Code != "upstream_bad_request" || conflict.Status != "failed" || conflict.Error.Message == "" {
		t.Errorf("result of a failed run = %d %+v, want 409 upstream_bad_request with status failed", status, conflict)
	}
}

// recordingUpstream is an OpenAI-compatible upstream that keeps every
// request body and streams a reply made of two tool calls.
type recordingUpstream struct {
	mu     sync.Mutex
	bodies []map[string]json.RawMessage
}

func (u *recordingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var body map[string]json.RawMessage
	_ = json.Unmarshal(raw, &body)
	u.mu.Lock()
	u.bodies = append(u.bodies, body)
	u.mu.Unlock()

	w.Header().Set("Content-Type", "text/event-stream")
	for _, chunk := range []string{
		`{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"lookup","arguments":"{\"q\":"}}]}}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"cats\"}"}}]}}]}`,
		`{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":21,"completion_tokens":7,"total_tokens":28}}`,
		`[DONE]`,
	} {
		_, _ = io.WriteString(w, "data: "+chunk+"\n\n")
	}
}

func (u *recordingUpstream) last(t *testing.T) map[string]json.RawMessage {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.bodies) == 0 {
		t.Fatal("the recording upstream received no request")
	}
	return u.bodies[len(u.bodies)-1]
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func TestBackgroundRequestReachesUpstream(t *testing.T) {
	s := newStack(t, stackOptions{})
	upstream := &recordingUpstream{}
	srv := httptest.NewServer(upstream)
	t.Cleanup(srv.Close)
	err := s.app.Catalog.AddProvider(providers.Provider{ID: "recorder", Name: "Recorder", Kind: "openai", BaseURL: srv.URL + "/v1"},
		providers.LogicalModel{Name: "recorded", Capabilities: []providers.Capability{providers.CapabilityChat},
			Candidates: []providers.Candidate{{ProviderID: "recorder", Model: "recorder-upstream"}}})
	if err != nil {
		t.Fatal(err)
	}
	alice := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})

	messages := `[{"role":"system","content":"Answer with tools."},` +
		`{"role":"user","content":[{"type":"text","text":"Find"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"low"}}]},` +
		`{"role":"assistant","content":null,"tool_calls":[{"id":"call_0","type":"function","function":{"name":"lookup","arguments":"{}"}}]},` +
		`{"role":"tool","tool_call_id":"call_0","content":"nothing yet"},` +
		`{"role":"user","name":"alice","content":[{"type":"text","text":"Try again"}]}]`
	tools := `[{"type":"function","function":{"name":"lookup","description":"Search","parameters":{"type":"object","properties":{"q":{"type":"string"}}}}}]`
	body := `{"model":"recorded","messages":` + messages + `,"tools":` + tools +
		`,"tool_choice":"auto","temperature":0.3,"max_tokens":50,"seed":7,"response_format":{"type":"text"},"stream":false,"background":true}`

	accepted := key.startBackground(body, nil)
	run := key.waitRun(accepted.RunID, "succeeded")

	sent := upstream.last(t)
	want := map[string]string{
		"model":           `"recorder-upstream"`,
		"messages":        messages,
		"tools":           tools,
		"tool_choice":     `"auto"`,
		"temperature":     `0.3`,
		"max_tokens":      `50`,
		"seed":            `7`,
		"response_format": `{"type":"text"}`,
		"stream":          `true`,
		"stream_options":  `{"include_usage":true}`,
	}
	for field, value := range want {
		if got, ok := sent[field]; !ok || !jsonEqual(t, got, []byte(value)) {
			t.Errorf("upstream field %s = %s, want %s", field, got, value)
		}
	}
	if _, ok := sent["background"]; ok {
		t.Error("the upstream received the background field")
	}
	if len(sent) != len(want) {
		t.Errorf("upstream body has %d fields, want %d", len(sent), len(want))
	}

	var result completionObject
	key.mustDo("GET", "/v1/runs/"+run.RunID+"/result", nil, 200, &result)
	if len(result.Choices) != 1 {
		t.Fatalf("result has %d choices, want 1", len(result.Choices))
	}
	choice := result.Choices[0]
	if choice.Message.Content != nil {
		t.Errorf("content = %q, want null for a reply of tool calls", *choice.Message.Content)
	}
	wantCalls := `[{"id":"call_1","type":"function","function":{"name":"lookup","arguments":"{\"q\":\"cats\"}"}}]`
	if !jsonEqual(t, choice.Message.ToolCalls, []byte(wantCalls)) {
		t.Errorf("tool_calls = %s, want %s", choice.Message.ToolCalls, wantCalls)
	}
	if choice.FinishReason == nil || *choice.FinishReason != "tool_calls" {
		t.Errorf("finish_reason = %v, want tool_calls", choice.FinishReason)
	}
	if result.Usage.PromptTokens != 21 || result.Usage.CompletionTokens != 7 || result.Usage.TotalTokens != 28 {
		t.Errorf("usage = %+v, want 21/7/28", result.Usage)
	}
}

// TestBackgroundFieldsReachMock checks with the mock upstream that content
// part arrays and max_tokens arrive: the mock quotes the text parts of the
// last user message and stops at max_tokens with finish_reason "length".
func TestBackgroundFieldsReachMock(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})
	messages := []map[string]any{{"role": "user", "content": []map[string]any{
		{"type": "text", "text": "first part"},
		{"type": "image_url", "image_url": map[string]any{"url": "data:image/png;base64,iVBORw0KGgo="}},
		{"type": "text", "text": "second part"},
	}}}

	accepted := key.startBackground(map[string]any{"model": "mock-gpt", "messages": messages, "max_tokens": 10, "background": true}, nil)
	run := key.waitRun(accepted.RunID, "succeeded")

	var result completionObject
	key.mustDo("GET", "/v1/runs/"+run.RunID+"/result", nil, 200, &result)
	if len(result.Choices) != 1 || result.Choices[0].Message.Content == nil {
		t.Fatalf("result = %+v, want one choice with content", result)
	}
	content := *result.Choices[0].Message.Content
	if !strings.HasPrefix(content, "Mock reply to: first part second part") {
		t.Errorf("content = %q, want the mock to quote both text parts", content)
	}
	if result.Choices[0].FinishReason == nil || *result.Choices[0].FinishReason != "length" {
		t.Errorf("finish_reason = %v, want length from max_tokens", result.Choices[0].FinishReason)
	}
	if result.Usage.CompletionTokens != 10 {
		t.Errorf("completion_tokens = %d, want 10 from max_tokens", result.Usage.CompletionTokens)
	}
}

func TestBackgroundChatRejectsBadInput(t *testing.T) {
	s := newStack(t, stackOptions{})
	err := s.app.Catalog.AddProvider(providers.Provider{ID: "images", Name: "Images", Kind: "openai", BaseURL: s.mock.URL() + "/v1"},
		providers.LogicalModel{Name: "image-only", Capabilities: []providers.Capability{providers.CapabilityImageGeneration},
			Candidates: []providers.Candidate{{ProviderID: "images", Model: "mock-gpt"}}})
	if err != nil {
		t.Fatal(err)
	}
	alice := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})
	limited := s.newAPIKey(alice, apikeys.NewKey{AllowedModels: []string{"failover-429"}})
	hi := `[{"role":"user","content":"hi"}]`

	tests := []struct {
		name      string
		caller    *client
		body      string
		header    http.Header
		wantCode  int
		wantError string
	}{
		{name: "unknown model", body: `{"model":"no-such-model","messages":` + hi + `,"background":true}`, wantCode: 404, wantError: "model_not_found"},
		{name: "model without chat", body: `{"model":"image-only","messages":` + hi + `,"background":true}`, wantCode: 400, wantError: "model_does_not_support_chat"},
		{name: "model not allowed for the key", caller: limited, body: `{"model":"mock-gpt","messages":` + hi + `,"background":true}`, wantCode: 403, wantError: "model_not_allowed"},
		{name: "missing model", body: `{"messages":` + hi + `,"background":true}`, wantCode: 400, wantError: "missing_field"},
		{name: "missing messages", body: `{"model":"mock-gpt","background":true}`, wantCode: 400, wantError: "invalid_field"},
		{name: "empty messages", body: `{"model":"mock-gpt","messages":[],"background":true}`, wantCode: 400, wantError: "invalid_field"},
		{name: "message not an object", body: `{"model":"mock-gpt","messages":["hi"],"background":true}`, wantCode: 400, wantError: "invalid_field"},
		{name: "message without role", body: `{"model":"mock-gpt","messages":[{"content":"hi"}],"background":true}`, wantCode: 400, wantError: "invalid_field"},
		{name: "role not a string", body: `{"model":"mock-gpt","messages":[{"role":7,"content":"hi"}],"background":true}`, wantCode: 400, wantError: "invalid_field"},
		{name: "two choices", body: `{"model":"mock-gpt","messages":` + hi + `,"n":2,"background":true}`, wantCode: 400, wantError: "invalid_field"},
		{name: "background not a boolean", body: `{"model":"mock-gpt","messages":` + hi + `,"background":"yes"}`, wantCode: 400, wantError: "invalid_field"},
		{name: "invalid JSON", body: `{"model":"mock-gpt",`, header: http.Header{"X-Aihigress-Background": []string{"1"}}, wantCode: 400, wantError: "invalid_json"},
		{name: "NUL in a string", body: `{"model":"mock-gpt","messages":[{"role":"user","content":"a\u0000b"}],"background":true}`, wantCode: 400, wantError: "invalid_field"},
		{
			name: "idempotency key too long", body: `{"model":"mock-gpt","messages":` + hi + `,"background":true}`,
			header: http.Header{"Idempotency-Key": []string{strings.Repeat("k", 256)}}, wantCode: 400, wantError: "invalid_idempotency_key",
		},
		{name: "access token instead of a key", caller: alice, body: `{"model":"mock-gpt","messages":` + hi + `,"background":true}`, wantCode: 401, wantError: "missing_api_key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			caller := tt.caller
			if caller == nil {
				caller = key
			}
			status, header, raw := exchange(t, caller, "POST", "/v1/chat/completions", tt.body, tt.header)
			checkError(t, status, header, raw, tt.wantCode, tt.wantError)
		})
	}

	var runs int64
	if err := s.app.Store.DB.Model(&models.ChatRun{}).Count(&runs).Error; err != nil {
		t.Fatal(err)
	}
	if runs != 0 {
		t.Errorf("rejected requests stored %d runs, want 0", runs)
	}
}

func TestBackgroundIdempotencyKey(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})
	otherKey := s.newAPIKey(alice, apikeys.NewKey{})
	header := http.Header{"Idempotency-Key": []string{"retry-1"}}
	body := map[string]any{"model": "mock-gpt", "messages": userMessages("only once"), "temperature": 0.5, "background": true}

	first := key.startBackground(body, header)
	key.waitRun(first.RunID, "succeeded")
	second := key.startBackground(body, header)
	if second.RunID != first.RunID || second.Status != "succeeded" {
		t.Errorf("retry = %+v, want run %s as succeeded", second, first.RunID)
	}
	if got := s.mock.Stats().ChatCompletions; got != 1 {
		t.Errorf("upstream calls = %d, want 1", got)
	}

	changed := map[string]any{"model": "mock-gpt", "messages": userMessages("only once"), "temperature": 0.9, "background": true}
	status, respHeader, raw := exchange(t, key, "POST", "/v1/chat/completions", changed, header)
	checkError(t, status, respHeader, raw, 409, "idempotency_key_reused")

	// Idempotency keys belong to one API key, and to no conversation.
	other := otherKey.startBackground(body, header)
	if other.RunID == first.RunID {
		t.Error("another API key with the same Idempotency-Key got the first key's run")
	}
	otherKey.waitRun(other.RunID, "succeeded")
	convID := alice.conversation("mock-gpt")
	var turn turnResponse
	resp := alice.request("POST", "/v1/conversations/"+convID+"/messages", map[string]any{"content": "hi", "background": true}, header)
	if err := json.NewDecoder(resp.Body).Decode(&turn); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || turn.Run.RunID == first.RunID || turn.Run.RunID == other.RunID {
		t.Errorf("conversation message with the same Idempotency-Key: status %d, run %s", resp.StatusCode, turn.Run.RunID)
	}
}

// failingStarts is a Temporal client whose workflow starts fail, as when the
// frontend is down.
type failingStarts struct {
	temporalclient.Client
}

func (failingStarts) ExecuteWorkflow(context.Context, temporalclient.StartWorkflowOptions, any, ...any) (temporalclient.WorkflowRun, error) {
	return nil, errors.New("frontend unavailable (injected by the test)")
}

func TestWorkflowStartFailure(t *testing.T) {
	tests := []struct {
		name string
		path string
		body map[string]any
	}{
		{"background chat", "/v1/chat/completions", map[string]any{"model": "mock-gpt", "messages": userMessages("never starts"), "background": true}},
		// Image runs without an Idempotency-Key store their row while the
		// start call runs.
		{"background image", "/v1/images/generations", map[string]any{"model": "image-openai", "prompt": "never starts", "background": true}},
		{"sync image", "/v1/images/generations", map[string]any{"model": "image-openai", "prompt": "never starts"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStack(t, stackOptions{})
			apiServer, err := s.app.APIServer(nil)
			if err != nil {
				t.Fatal(err)
			}
			apiServer.Temporal = failingStarts{Client: s.app.Temporal}
			srv := httptest.NewServer(apiServer.Handler())
			t.Cleanup(srv.Close)

			alice := s.newUser()
			key := s.newAPIKey(alice, apikeys.NewKey{})
			broken := key.at(srv.URL)

			status, header, raw := exchange(t, broken, "POST", tt.path, tt.body, nil)
			checkError(t, status, header, raw, 503, "workflow_start_failed")

			var runs []models.ChatRun
			if err := s.app.Store.DB.Find(&runs).Error; err != nil {
				t.Fatal(err)
			}
			if len(runs) != 1 {
				t.Fatalf("stored %d runs, want 1", len(runs))
			}
			if runs[0].Status != models.RunFailed || runs[0].ErrorCode != "workflow_start_failed" {
				t.Errorf("run = %s %s, want failed with workflow_start_failed", runs[0].Status, runs[0].ErrorCode)
			}
			var detail runDetail
			key.mustDo("GET", "/v1/runs/"+runs[0].ID, nil, 200, &detail)
			if detail.Status != "failed" {
				t.Errorf("run detail status = %s, want failed", detail.Status)
			}
		})
	}
}

// TestImageRunInsertFailure covers an image run whose row cannot be stored
// after its workflow started: the user was deleted while the API key cache
// still accepted the key, so the insert violates the user foreign key. The
// request fails with a 500 and the workflow is terminated.
func TestImageRunInsertFailure(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})
	key.mustDo("GET", "/v1/models", nil, 200, nil)

	var user models.User
	if err := s.app.Store.DB.Where("username <> ?", s.cfg.AdminUsername).First(&user).Error; err != nil {
		t.Fatal(err)
	}
	if err := s.app.Store.DB.Exec("DELETE FROM users WHERE id = ?", user.ID).Error; err != nil {
		t.Fatal(err)
	}

	status, header, raw := exchange(t, key, "POST", "/v1/images/generations",
		map[string]any{"model": "image-openai", "prompt": "a deleted owner", "background": true}, nil)
	checkError(t, status, header, raw, 500, "internal_error")

	ctx := context.Background()
	query := "WorkflowType = 'ImageGenerationWorkflow' AND AihUserId = '" + user.ID + "'"
	var statuses []string
	waitFor(t, 30*time.Second, "the image workflow to be terminated", func() bool {
		page, err := s.app.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query})
		if err != nil {
			t.Fatal(err)
		}
		statuses = statuses[:0]
		for _, execution := range page.GetExecutions() {
			statuses = append(statuses, execution.GetStatus().String())
		}
		return len(statuses) == 1 && statuses[0] == enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED.String()
	})
	if got := s.mock.Stats().Images; got != 0 {
		t.Errorf("the upstream received %d image requests, want none for a run that was never stored", got)
	}
}
