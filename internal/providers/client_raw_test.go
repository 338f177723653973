package providers

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"testing"
)

func TestRawMessagesSentUnchanged(t *testing.T) {
	raw := `[{"role":"user","content":[{"type":"text","text":"Look"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},` +
		`{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]},` +
		`{"role":"tool","tool_call_id":"call_1","content":"42"}]`

	tests := []struct {
		name string
		req  ChatRequest
		want string
	}{
		{
			name: "raw messages replace Messages",
			req:  ChatRequest{Model: "m", Messages: []Message{{Role: "user", Content: "ignored"}}, RawMessages: json.RawMessage(raw)},
			want: raw,
		},
		{
			name: "raw messages win over Extra",
			req:  ChatRequest{Model: "m", RawMessages: json.RawMessage(raw), Extra: map[string]json.RawMessage{"messages": json.RawMessage(`[]`)}},
			want: raw,
		},
		{
			name: "empty raw messages fall back to Messages",
			req:  ChatRequest{Model: "m", Messages: []Message{{Role: "user", Content: "Hi"}}},
			want: `[{"role":"user","content":"Hi"}]`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				startSSE(w)
				writeSSE(w, dataEvents(deltaChunk("ok"), finishChunk("stop"), "[DONE]")...)
			})
			client := newTestClient(t, fastOptions())
			onDelta, _ := collectDeltas()

			if _, err := client.StreamChat(context.Background(), upstream.provider(), tt.req, onDelta); err != nil {
				t.Fatalf("StreamChat() error = %v", err)
			}

			if got := string(upstream.lastRequest(t).Body["messages"]); got != tt.want {
				t.Errorf("body messages = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestRawMessagesInvalidJSON(t *testing.T) {
	client := newTestClient(t, fastOptions())
	req := ChatRequest{Model: "m", RawMessages: json.RawMessage(`[{"role":`)}
	onDelta, _ := collectDeltas()

	_, err := client.StreamChat(context.Background(), Provider{ID: "p", BaseURL: "http://127.0.0.1:1/v1"}, req, onDelta)
	if err == nil {
		t.Fatal("StreamChat() with invalid RawMessages succeeded, want an error")
	}
}

func TestStreamChatToolCalls(t *testing.T) {
	chunks := []string{
		`{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"get_time","arguments":"{}"}}]}}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Oslo\"}"}}]}}]}`,
		`{"choices":[{"index":1,"delta":{"tool_calls":[{"index":0,"id":"other_choice","function":{"name":"x"}}]}}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":99999,"id":"too_far"}]}}]}`,
		`{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`,
		"[DONE]",
	}
	upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		startSSE(w)
		writeSSE(w, dataEvents(chunks...)...)
	})
	client := newTestClient(t, fastOptions())
	onDelta, deltas := collectDeltas()

	result, err := client.StreamChat(context.Background(), upstream.provider(), testRequest(), onDelta)
	if err != nil {
		t.Fatalf("StreamChat() error = %v", err)
	}

	want := []ToolCall{
		{ID: "call_a", Type: "function", Function: ToolCallFunction{Name: "get_weather", Arguments: `{"city":"Oslo"}`}},
		{ID: "call_b", Type: "function", Function: ToolCallFunction{Name: "get_time", Arguments: "{}"}},
	}
	if !reflect.DeepEqual(result.ToolCalls, want) {
		t.Errorf("ToolCalls = %+v, want %+v", result.ToolCalls, want)
	}
	if result.FinishReason != "tool_calls" {
		t.Errorf("FinishReason = %q, want tool_calls", result.FinishReason)
	}
	if result.Text != "" || len(deltas()) != 0 {
		t.Errorf("Text = %q and deltas = %q, want none", result.Text, deltas())
	}
}

func TestChatToolCallsNonStreaming(t *testing.T) {
	upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"choices":[{"index":0,"message":{"role":"assistant","content":null,`+
			`"tool_calls":[{"id":"call_a","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]},"finish_reason":"tool_calls"}]}`)
	})
	client := newTestClient(t, fastOptions())

	result, err := client.Chat(context.Background(), upstream.provider(), testRequest())
	if err != nil {
		t.Fatalf("Chat() error = %v", err)
	}

	want := []ToolCall{{ID: "call_a", Type: "function", Function: ToolCallFunction{Name: "f", Arguments: `{"x":1}`}}}
	if !reflect.DeepEqual(result.ToolCalls, want) {
		t.Errorf("ToolCalls = %+v, want %+v", result.ToolCalls, want)
	}
	if result.FinishReason != "tool_calls" {
		t.Errorf("FinishReason = %q, want tool_calls", result.FinishReason)
	}
}
