package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/mockupstream"
	"github.com/aihigress/aihigress/internal/testenv"
	"go.temporal.io/sdk/temporal"
)

func TestChatStreamingEndToEnd(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	convID := alice.conversation("mock-gpt")

	stream := alice.postStreaming("/v1/conversations/"+convID+"/messages", map[string]any{"content": "Hello there", "streaming": true})
	frames := stream.readUntil(t, "done")
	stream.close()

	if frames[0].Event != "message.created" || frames[0].ID != 1 {
		t.Errorf("first frame = %s id %d, want message.created id 1", frames[0].Event, frames[0].ID)
	}
	checkSequence(t, frames, 0)
	events := runEvents(frames)
	last := events[len(events)-1]
	if last.Event != "message.completed" {
		t.Fatalf("last run event = %s, want message.completed", last.Event)
	}
	var completed struct {
		Payload struct {
			OutputText string    `json:"output_text"`
			Run        runDetail `json:"run"`
		} `json:"payload"`
	}
	if err := json.Unmarshal([]byte(last.Data), &completed); err != nil {
		t.Fatal(err)
	}
	streamed := replyText(t, frames)
	if streamed == "" || !strings.HasPrefix(streamed, "Mock reply to: Hello there") {
		t.Errorf("streamed text = %q", streamed)
	}
	if completed.Payload.OutputText != streamed {
		t.Errorf("completed output_text %q differs from streamed text %q", completed.Payload.OutputText, streamed)
	}
	if completed.Payload.Run.Status != "succeeded" {
		t.Errorf("completed run status = %s", completed.Payload.Run.Status)
	}

	// The history holds the reply, and the run detail matches it.
	var history struct {
		Items []struct {
			Role    string `json:"role"`
			Content struct {
				Text string `json:"text"`
			} `json:"content"`
			Run *runDetail `json:"run"`
		} `json:"items"`
	}
	alice.mustDo("GET", "/v1/conversations/"+convID+"/messages", nil, 200, &history)
	if len(history.Items) != 2 {
		t.Fatalf("history has %d messages, want 2", len(history.Items))
	}
	if history.Items[0].Role != "user" || history.Items[0].Content.Text != "Hello there" {
		t.Errorf("first message = %+v", history.Items[0])
	}
	reply := history.Items[1]
	if reply.Role != "assistant" || reply.Content.Text != streamed {
		t.Errorf("assistant message = %q, want %q", reply.Content.Text, streamed)
	}
	if reply.Run == nil || reply.Run.Status != "succeeded" || reply.Run.SelectedProviderID != "mock" {
		t.Fatalf("assistant run summary = %+v", reply.Run)
	}

	var run runDetail
	alice.mustDo("GET", "/v1/runs/"+reply.Run.RunID, nil, 200, &run)
	if run.OutputText != streamed || run.Kind != "chat" || run.WorkflowID != "chat-run-"+run.RunID {
		t.Errorf("run detail = %+v", run)
	}
	if run.Usage.CompletionTokens == 0 {
		t.Errorf("usage was not recorded: %+v", run.Usage)
	}
	if run.LastSeq != last.ID {
		t.Errorf("last_seq = %d, want %d", run.LastSeq, last.ID)
	}
	recordHistory(t, s, run.WorkflowID, "chat_succeeded")
}

func TestChatSyncAndBackgroundModes(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	convID := alice.conversation("mock-gpt")

	var sync turnResponse
	alice.mustDo("POST", "/v1/conversations/"+convID+"/messages", map[string]any{"content": "sync please"}, 200, &sync)
	if sync.Run.Status != "succeeded" || !strings.Contains(sync.Run.OutputText, "sync please") {
		t.Errorf("sync run = %+v", sync.Run)
	}

	resp := alice.request("POST", "/v1/conversations/"+convID+"/messages", map[string]any{"content": "later", "background": true}, nil)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("background status = %d, want 202", resp.StatusCode)
	}
	var background turnResponse
	if err := json.NewDecoder(resp.Body).Decode(&background); err != nil {
		t.Fatal(err)
	}
	if got, want := resp.Header.Get("Location"), "/v1/runs/"+background.Run.RunID; got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}
	if background.UserMessageID == "" || background.AssistantMessageID == "" {
		t.Errorf("background response lacks message ids: %+v", background)
	}
	waitFor(t, 20*time.Second, "background run to succeed", func() bool {
		var run runDetail
		alice.mustDo("GET", "/v1/runs/"+background.Run.RunID, nil, 200, &run)
		return run.Status == "succeeded"
	})

	// The second run's prompt included the first exchange.
	if got := s.mock.Stats().ChatCompletions; got != 2 {
		t.Errorf("upstream calls = %d, want 2", got)
	}
}

func TestChatSyncWaitCapReturns202(t *testing.T) {
	s := newStack(t, stackOptions{syncWait: 300 * time.Millisecond})
	alice := s.newUser()
	convID := alice.conversation("slow-start")

	resp := alice.request("POST", "/v1/conversations/"+convID+"/messages", map[string]any{"content": "slow"}, nil)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status = %d, want 202 after the wait cap", resp.StatusCode)
	}
	var turn turnResponse
	if err := json.NewDecoder(resp.Body).Decode(&turn); err != nil {
		t.Fatal(err)
	}
	if turn.Run.Status != "queued" && turn.Run.Status != "running" {
		t.Errorf("run status = %s, want queued or running", turn.Run.Status)
	}
	alice.mustDo("POST", "/v1/runs/"+turn.Run.RunID+"/cancel", nil, 200, nil)
}

func TestIdempotencyKeyReturnsSameRun(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	convID := alice.conversation("mock-gpt")
	header := http.Header{"Idempotency-Key": []string{"retry-me-1"}}
	body := map[string]any{"content": "only once", "background": true}

	var first, second turnResponse
	for i, out := range []*turnResponse{&first, &second} {
		resp := alice.request("POST", "/v1/conversations/"+convID+"/messages", body, header)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("post %d: status %d", i+1, resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if first.Run.RunID != second.Run.RunID || first.UserMessageID != second.UserMessageID {
		t.Errorf("retried POST created a new run: %s then %s", first.Run.RunID, second.Run.RunID)
	}
	var history struct {
		Items []json.RawMessage `json:"items"`
	}
	alice.mustDo("GET", "/v1/conversations/"+convID+"/messages", nil, 200, &history)
	if len(history.Items) != 2 {
		t.Errorf("conversation has %d messages, want 2", len(history.Items))
	}

	// The same key on another conversation is a client error, not a replay.
	otherConv := alice.conversation("mock-gpt")
	resp := alice.request("POST", "/v1/conversations/"+otherConv+"/messages", body, header)
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("reused key on another conversation: status %d, want 409", resp.StatusCode)
	}
}

func TestFailoverAndErrors(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()

	tests := []struct {
		model       string
		wantStatus  string
		wantModel   string
		wantCode    string
		wantAttempt int
		wantReset   bool
	}{
		{model: "failover-429", wantStatus: "succeeded", wantModel: "mock-gpt", wantAttempt: 2},
		{model: "failover-cut", wantStatus: "succeeded", wantModel: "mock-gpt", wantAttempt: 2, wantReset: true},
		{model: "bad-request", wantStatus: "failed", wantModel: "fault-400", wantCode: "upstream_bad_request", wantAttempt: 1},
		// Attempts 1 to 3 get a 500, and the third failure puts the only
		// candidate into cooldown, so attempt 4 finds nothing usable.
		{model: "always-500", wantStatus: "failed", wantModel: "fault-500", wantCode: "upstream_cooling_down", wantAttempt: 4},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			convID := alice.conversation(tt.model)
			stream := alice.postStreaming("/v1/conversations/"+convID+"/messages", map[string]any{"content": "try " + tt.model, "streaming": true})
			frames := stream.readUntil(t, "done")
			stream.close()
			checkSequence(t, frames, 0)

			sawReset := false
			for _, f := range frames {
				if f.Event == "message.reset" {
					sawReset = true
				}
			}
			if sawReset != tt.wantReset {
				t.Errorf("message.reset seen = %v, want %v", sawReset, tt.wantReset)
			}

			events := runEvents(frames)
			var run runDetail
			runID := runIDOf(t, events[0])
			alice.mustDo("GET", "/v1/runs/"+runID, nil, 200, &run)
			if run.Status != tt.wantStatus || run.SelectedProviderModel != tt.wantModel || run.Attempt != tt.wantAttempt {
				t.Errorf("run = status %s model %s attempt %d, want %s %s %d", run.Status, run.SelectedProviderModel, run.Attempt, tt.wantStatus, tt.wantModel, tt.wantAttempt)
			}
			gotCode := ""
			if run.ErrorCode != nil {
				gotCode = *run.ErrorCode
			}
			if gotCode != tt.wantCode {
				t.Errorf("error_code = %q, want %q", gotCode, tt.wantCode)
			}
			wantLast := "message.completed"
			if tt.wantStatus == "failed" {
				wantLast = "message.failed"
			}
			if got := events[len(events)-1].Event; got != wantLast {
				t.Errorf("last event = %s, want %s", got, wantLast)
			}
			if tt.wantStatus == "succeeded" && replyText(t, frames) != run.OutputText {
				t.Errorf("streamed text after resets %q differs from output %q", replyText(t, frames), run.OutputText)
			}
			recordHistory(t, s, run.WorkflowID, "chat_"+strings.ReplaceAll(tt.model, "-", "_"))
		})
	}
}

func TestFailoverRejectedKey(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	convID := alice.conversation("failover-401")
	badKey, err := s.app.Store.ProviderKeyByLabel(context.Background(), "mock-badkey", "default")
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name         string
		wantAttempt  int
		wantProvider string
	}{
		// The first run meets the rejected key and moves on.
		{name: "first run", wantAttempt: 2, wantProvider: "mock"},
		// The key is disabled and cooling down now, so the plan skips its
		// provider.
		{name: "second run", wantAttempt: 1, wantProvider: "mock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream := alice.postStreaming("/v1/conversations/"+convID+"/messages", map[string]any{"content": tt.name, "streaming": true})
			frames := stream.readUntil(t, "done")
			stream.close()

			var run runDetail
			alice.mustDo("GET", "/v1/runs/"+runIDOf(t, runEvents(frames)[0]), nil, 200, &run)
			if run.Status != "succeeded" || run.Attempt != tt.wantAttempt || run.SelectedProviderID != tt.wantProvider {
				t.Errorf("run = status %s attempt %d provider %s, want succeeded %d %s",
					run.Status, run.Attempt, run.SelectedProviderID, tt.wantAttempt, tt.wantProvider)
			}

			cooldowns, err := s.app.Router.Cooldowns(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var keyCooling bool
			for _, c := range cooldowns {
				if c.KeyID == badKey.ID && c.Until.After(time.Now().Add(time.Minute)) {
					keyCooling = true
				}
			}
			if !keyCooling {
				t.Errorf("cooldowns = %+v, want key %s cooling for minutes", cooldowns, badKey.ID)
			}

			stored, err := s.app.Store.ProviderKeyByLabel(context.Background(), "mock-badkey", "default")
			if err != nil {
				t.Fatal(err)
			}
			if stored.Enabled || !strings.Contains(stored.DisabledReason, "401") {
				t.Errorf("stored key enabled=%t reason=%q, want disabled for the upstream's 401", stored.Enabled, stored.DisabledReason)
			}
		})
	}
}

func runIDOf(t *testing.T, f frame) string {
	t.Helper()
	var data struct {
		RunID string `json:"run_id"`
	}
	if err := json.Unmarshal([]byte(f.Data), &data); err != nil || data.RunID == "" {
		t.Fatalf("frame %s has no run_id: %s", f.Event, f.Data)
	}
	return data.RunID
}

func TestCancelAbortsUpstream(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	convID := alice.conversation("stall")

	var turn turnResponse
	alice.mustDo("POST", "/v1/conversations/"+convID+"/messages", map[string]any{"content": "stall", "background": true}, 202, &turn)
	stream := alice.openEvents("/v1/runs/"+turn.Run.RunID+"/events", nil)
	defer stream.close()
	stream.readUntil(t, "message.delta")
	waitFor(t, 5*time.Second, "upstream request to be active", func() bool { return s.mock.Stats().Active == 1 })

	var canceled runDetail
	alice.mustDo("POST", "/v1/runs/"+turn.Run.RunID+"/cancel", nil, 200, &canceled)
	start := time.Now()
	waitFor(t, 2*time.Second, "upstream request to be aborted", func() bool { return s.mock.Stats().Active == 0 })
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("upstream request aborted %s after the cancel returned, want within 1s", elapsed)
	}

	frames := stream.readUntil(t, "done")
	events := runEvents(frames)
	if len(events) < 2 || events[len(events)-2].Event != "run.canceled" || events[len(events)-1].Event != "message.failed" {
		t.Errorf("closing events = %v, want run.canceled then message.failed", eventNames(events))
	}
	var run runDetail
	alice.mustDo("GET", "/v1/runs/"+turn.Run.RunID, nil, 200, &run)
	if run.Status != "canceled" {
		t.Errorf("run status = %s, want canceled", run.Status)
	}

	// Canceling an ended run changes nothing.
	var again runDetail
	alice.mustDo("POST", "/v1/runs/"+turn.Run.RunID+"/cancel", nil, 200, &again)
	if again.Status != "canceled" || again.LastSeq != run.LastSeq {
		t.Errorf("second cancel changed the run: %+v", again)
	}
	recordHistory(t, s, run.WorkflowID, "chat_canceled")
}

func eventNames(frames []frame) []string {
	names := make([]string, len(frames))
	for i, f := range frames {
		names[i] = f.Event
	}
	return names
}

// TestReconnectReceivesEachEventOnce disconnects a client in the middle of
// a run and reconnects it, with Last-Event-ID, to another API server that
// has no Redis subscription at all. It must get exactly the later events.
func TestReconnectReceivesEachEventOnce(t *testing.T) {
	s := newStack(t, stackOptions{mock: mockupstream.Options{TokensPerSecond: 40}})
	alice := s.newUser()
	convID := alice.conversation("mock-gpt")

	var turn turnResponse
	alice.mustDo("POST", "/v1/conversations/"+convID+"/messages", map[string]any{"content": "reconnect", "background": true}, 202, &turn)
	stream := alice.openEvents("/v1/runs/"+turn.Run.RunID+"/events", nil)
	first := stream.readUntil(t, "message.delta")
	first = append(first, stream.readUntil(t, "message.delta")...)
	stream.close()
	cursor := first[len(first)-1].ID

	otherURL, stop := s.startAPI(t.Context(), false)
	defer stop()
	resumed := alice.at(otherURL).openEvents("/v1/runs/"+turn.Run.RunID+"/events", http.Header{"Last-Event-ID": []string{itoa(cursor)}})
	rest := resumed.readUntil(t, "done")
	resumed.close()

	checkSequence(t, first, 0)
	checkSequence(t, rest, cursor)
	all := append(runEvents(first), runEvents(rest)...)
	var run runDetail
	alice.mustDo("GET", "/v1/runs/"+turn.Run.RunID, nil, 200, &run)
	if replyText(t, all) != run.OutputText {
		t.Errorf("text across the reconnect %q differs from the output %q", replyText(t, all), run.OutputText)
	}

	// After the run, any cursor replays exactly the later events.
	for _, after := range []int64{0, 1, cursor, run.LastSeq} {
		replay := alice.openEvents("/v1/runs/"+turn.Run.RunID+"/events?after_seq="+itoa(after), nil)
		frames := replay.readUntil(t, "done")
		replay.close()
		checkSequence(t, frames, after)
		if got := int64(len(runEvents(frames))); got != run.LastSeq-after {
			t.Errorf("after_seq=%d replayed %d events, want %d", after, got, run.LastSeq-after)
		}
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestRunVisibleInTemporal checks the operator's view: the run_state
// query, the search attributes and the workflow summary.
func TestRunVisibleInTemporal(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	convID := alice.conversation("mock-gpt")

	var turn turnResponse
	alice.mustDo("POST", "/v1/conversations/"+convID+"/messages", map[string]any{"content": "Where am I visible?"}, 200, &turn)

	value, err := s.app.Temporal.QueryWorkflow(t.Context(), turn.Run.WorkflowID, "", "run_state")
	if err != nil {
		t.Fatalf("query run_state: %v", err)
	}
	var state struct {
		Status   string `json:"status"`
		LastSeq  int64  `json:"last_seq"`
		Attempt  int    `json:"attempt"`
		Provider string `json:"provider"`
		Model    string `json:"model"`
	}
	if err := value.Get(&state); err != nil {
		t.Fatal(err)
	}
	if state.Status != "succeeded" || state.Attempt != 1 || state.Provider != "mock" || state.Model != "mock-gpt" || state.LastSeq != turn.Run.LastSeq {
		t.Errorf("run_state = %+v, want succeeded on mock/mock-gpt attempt 1 with last_seq %d", state, turn.Run.LastSeq)
	}

	desc, err := s.app.Temporal.DescribeWorkflow(t.Context(), turn.Run.WorkflowID, "")
	if err != nil {
		t.Fatalf("describe workflow: %v", err)
	}
	attrs := desc.TypedSearchAttributes
	for key, want := range map[string]string{
		"AihRunStatus":      "succeeded",
		"AihRunKind":        "chat",
		"AihLogicalModel":   "mock-gpt",
		"AihConversationId": convID,
		"AihProvider":       "mock",
	} {
		got, ok := attrs.GetKeyword(temporalKeyword(key))
		if !ok || got != want {
			t.Errorf("search attribute %s = %q (set: %v), want %q", key, got, ok, want)
		}
	}
	summary, err := desc.GetStaticSummary()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(summary, "Where am I visible?") || !strings.Contains(summary, "mock-gpt") {
		t.Errorf("static summary = %q, want the model and the prompt", summary)
	}
}

// TestEventStreamHeartbeatAndAccept opens a stream with the Accept header
// instead of the streaming flag and checks that quiet spells carry
// heartbeats.
func TestEventStreamHeartbeatAndAccept(t *testing.T) {
	s := newStack(t, stackOptions{env: map[string]string{"SSE_HEARTBEAT": "300ms"}})
	alice := s.newUser()
	convID := alice.conversation("stall")

	resp := alice.request("POST", "/v1/conversations/"+convID+"/messages", map[string]any{"content": "wait"}, http.Header{"Accept": []string{"text/event-stream"}})
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || !strings.HasPrefix(ct, "text/event-stream") {
		resp.Body.Close()
		t.Fatalf("status %d, Content-Type %q; want an SSE stream", resp.StatusCode, ct)
	}
	stream := &sseStream{resp: resp, reader: bufio.NewReader(resp.Body)}
	defer stream.close()
	frames := stream.readUntil(t, "message.delta")
	start := time.Now()
	heartbeat := stream.readUntil(t, "heartbeat")
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("first heartbeat after %s, want within 2s at a 300ms interval", elapsed)
	}
	last := heartbeat[len(heartbeat)-1]
	if !last.HasID || last.ID < frames[len(frames)-1].ID {
		t.Errorf("heartbeat id = %d, want the last event id %d", last.ID, frames[len(frames)-1].ID)
	}
	alice.mustDo("POST", "/v1/runs/"+runIDOf(t, frames[0])+"/cancel", nil, 200, nil)
}

func temporalKeyword(name string) temporal.SearchAttributeKeyKeyword {
	return temporal.NewSearchAttributeKeyKeyword(name)
}

// TestStartFailureFailsRun points the API at a namespace that does not
// exist, so every workflow start fails. The client must get a 503 and the
// run must end failed, with a terminal event that ends its streams.
func TestStartFailureFailsRun(t *testing.T) {
	s := newStack(t, stackOptions{noWorker: true, env: map[string]string{"TEMPORAL_NAMESPACE": "missing-" + testenv.Suffix()}})
	alice := s.newUser()
	convID := alice.conversation("mock-gpt")

	status, body := alice.do("POST", "/v1/conversations/"+convID+"/messages", map[string]any{"content": "no server"}, nil)
	if status != http.StatusServiceUnavailable || !strings.Contains(string(body), "workflow_start_failed") {
		t.Fatalf("status %d body %s, want 503 workflow_start_failed", status, body)
	}

	var history struct {
		Items []struct {
			RunID *string    `json:"run_id"`
			Run   *runDetail `json:"run"`
		} `json:"items"`
	}
	alice.mustDo("GET", "/v1/conversations/"+convID+"/messages", nil, 200, &history)
	if len(history.Items) != 2 || history.Items[1].Run == nil {
		t.Fatalf("history = %+v, want the turn with its run", history.Items)
	}
	run := history.Items[1].Run
	if run.Status != "failed" || run.ErrorCode == nil || *run.ErrorCode != "workflow_start_failed" {
		t.Errorf("run = %+v, want failed with workflow_start_failed", run)
	}
	stream := alice.openEvents("/v1/runs/"+run.RunID+"/events", nil)
	frames := stream.readUntil(t, "done")
	stream.close()
	events := runEvents(frames)
	if last := events[len(events)-1].Event; last != "message.failed" {
		t.Errorf("last event = %s, want message.failed", last)
	}
}

func TestMetricsAfterRun(t *testing.T) {
	s := newStack(t, stackOptions{env: map[string]string{"METRICS_TOKEN": "metrics-secret"}})
	alice := s.newUser()
	convID := alice.conversation("mock-gpt")
	alice.mustDo("POST", "/v1/conversations/"+convID+"/messages", map[string]any{"content": "count me"}, 200, nil)

	anonymous := &client{t: t, baseURL: s.baseURL}
	if status, _ := anonymous.do("GET", "/metrics", nil, nil); status != http.StatusUnauthorized {
		t.Errorf("/metrics without the token: status %d, want 401", status)
	}
	withToken := &client{t: t, baseURL: s.baseURL, token: "metrics-secret"}
	status, body := withToken.do("GET", "/metrics", nil, nil)
	if status != http.StatusOK {
		t.Fatalf("/metrics with the token: status %d", status)
	}
	for _, want := range []string{
		`aihigress_runs_started_total{kind="chat"} 1`,
		`aihigress_http_requests_total{method="POST",route="/v1/conversations/:id/messages",status="200"} 1`,
		`aihigress_sse_streams_open 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
