package providers

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestEncodeForwardBody(t *testing.T) {
	tests := []struct {
		name   string
		fields string
		stream bool
		want   string
	}{
		{
			name:   "model replaced, unknown fields kept",
			fields: `{"model":"logical","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"x_vendor":{"a":[1,2]}}`,
			want:   `{"messages":[{"role":"user","content":"hi"}],"model":"upstream","temperature":0.2,"x_vendor":{"a":[1,2]}}`,
		},
		{
			name:   "stream gets include_usage",
			fields: `{"model":"logical","messages":[],"stream":true}`,
			stream: true,
			want:   `{"messages":[],"model":"upstream","stream":true,"stream_options":{"include_usage":true}}`,
		},
		{
			name:   "stream keeps other stream_options",
			fields: `{"model":"logical","messages":[],"stream":true,"stream_options":{"include_obfuscation":false,"include_usage":false}}`,
			stream: true,
			want:   `{"messages":[],"model":"upstream","stream":true,"stream_options":{"include_obfuscation":false,"include_usage":true}}`,
		},
		{
			name:   "invalid stream_options left for the upstream",
			fields: `{"model":"logical","messages":[],"stream":true,"stream_options":"yes"}`,
			stream: true,
			want:   `{"messages":[],"model":"upstream","stream":true,"stream_options":"yes"}`,
		},
		{
			name:   "non-streaming request keeps stream_options as sent",
			fields: `{"model":"logical","messages":[],"stream_options":{"include_usage":true}}`,
			want:   `{"messages":[],"model":"upstream","stream_options":{"include_usage":true}}`,
		},
		{
			name:   "field names are escaped",
			fields: `{"model":"logical","messages":[],"we\"ird":1}`,
			want:   `{"messages":[],"model":"upstream","we\"ird":1}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fields map[string]json.RawMessage
			if err := json.Unmarshal([]byte(tt.fields), &fields); err != nil {
				t.Fatal(err)
			}
			body, err := EncodeForwardBody(fields, "upstream", tt.stream)
			if err != nil {
				t.Fatal(err)
			}
			if string(body) != tt.want {
				t.Errorf("body =\n %s\nwant\n %s", body, tt.want)
			}
			if !json.Valid(body) {
				t.Errorf("body is not valid JSON: %s", body)
			}
		})
	}
}

func TestInspectChunk(t *testing.T) {
	usage := &Usage{PromptTokens: 3, CompletionTokens: 2, TotalTokens: 5}
	tests := []struct {
		name string
		data string
		want ChunkInfo
		// wantLater is the result of InspectLaterChunk, which leaves out the
		// error check.
		wantLater ChunkInfo
	}{
		{"content", deltaChunk("hi"), ChunkInfo{}, ChunkInfo{}},
		{"finish", finishChunk("stop"), ChunkInfo{Finished: true}, ChunkInfo{Finished: true}},
		{"finish with spaces", `{"choices": [{"index": 0, "finish_reason" : "length"}]}`, ChunkInfo{Finished: true}, ChunkInfo{Finished: true}},
		{"null finish", `{"choices":[{"index":0,"finish_reason":null}]}`, ChunkInfo{}, ChunkInfo{}},
		{"usage only", usageChunk, ChunkInfo{Usage: usage, UsageOnly: true}, ChunkInfo{Usage: usage, UsageOnly: true}},
		{"usage with a choice", `{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`,
			ChunkInfo{Finished: true, Usage: usage}, ChunkInfo{Finished: true, Usage: usage}},
		{"usage with spaces", `{"choices":[], "usage" :	{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`,
			ChunkInfo{Usage: usage, UsageOnly: true}, ChunkInfo{Usage: usage, UsageOnly: true}},
		{"member names inside content", deltaChunk(`say "usage":{"x":1} and "finish_reason":"stop" and "error"`), ChunkInfo{}, ChunkInfo{}},
		{"member names ending content", deltaChunk(`usage`) + deltaChunk(`x finish_reason`), ChunkInfo{}, ChunkInfo{}},
		{"error object", `{"error":{"message":"overloaded","type":"server_error"}}`, ChunkInfo{Error: true}, ChunkInfo{}},
		{"null error", `{"choices":[],"error":null}`, ChunkInfo{}, ChunkInfo{}},
		{"member name at the end", `{"choices":[],"usage"`, ChunkInfo{}, ChunkInfo{}},
		{"model with escapes", escapedModelChunk, ChunkInfo{}, ChunkInfo{}},
		{"usage after escaped model", `{"model":"a\"usage\":{","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`,
			ChunkInfo{Usage: usage, UsageOnly: true}, ChunkInfo{Usage: usage, UsageOnly: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := InspectChunk([]byte(tt.data)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("InspectChunk = %+v, want %+v", got, tt.want)
			}
			if got := InspectLaterChunk([]byte(tt.data)); !reflect.DeepEqual(got, tt.wantLater) {
				t.Errorf("InspectLaterChunk = %+v, want %+v", got, tt.wantLater)
			}
		})
	}
}

func TestForwardRetryAfterHeader(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		value string
		want  time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{" 10 ", 10 * time.Second},
		{"0", 0},
		{"-5", 0},
		{"1.5", 0},
		{"99999999999", 24 * time.Hour},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"soon", 0},
	}
	for _, tt := range tests {
		if got := ParseRetryAfter(tt.value, now); got != tt.want {
			t.Errorf("ParseRetryAfter(%q) = %s, want %s", tt.value, got, tt.want)
		}
	}
}

func TestForwardStatusError(t *testing.T) {
	upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"error":{"message":"slow down, key `+testAPIKey+`","code":"rate_limit_exceeded"}}`)
	})
	client := newTestClient(t, fastOptions())

	_, err := client.Forward(context.Background(), upstream.provider(), []byte(`{"model":"m","messages":[]}`), false)
	var forwardErr *ForwardError
	if !errors.As(err, &forwardErr) {
		t.Fatalf("error = %v (%T), want *ForwardError", err, err)
	}
	upstreamErr := asUpstreamError(t, err)
	if upstreamErr.Kind != ErrorRateLimited || upstreamErr.StatusCode != 429 {
		t.Errorf("kind/status = %s/%d, want rate_limited/429", upstreamErr.Kind, upstreamErr.StatusCode)
	}
	if got := forwardErr.Header.Get("Retry-After"); got != "7" {
		t.Errorf("Retry-After header = %q, want 7", got)
	}
	if strings.Contains(string(forwardErr.Body), testAPIKey) || !strings.Contains(string(forwardErr.Body), "[REDACTED]") {
		t.Errorf("body = %s, want the API key redacted", forwardErr.Body)
	}

	request := upstream.lastRequest(t)
	if got := request.Header.Get("Authorization"); got != "Bearer "+testAPIKey {
		t.Errorf("Authorization = %q, want the provider key", got)
	}
	if string(request.Body["model"]) != `"m"` {
		t.Errorf("forwarded model = %s, want the body unchanged", request.Body["model"])
	}
}

func TestForwardStream(t *testing.T) {
	tests := []struct {
		name     string
		parts    []string
		wantData []string
		// wantRaw is the relayed bytes, every part when empty.
		wantRaw string
		wantErr ErrorKind // "" for a clean io.EOF
	}{
		{
			name:     "complete",
			parts:    dataEvents(roleChunk, deltaChunk("Hi"), finishChunk("stop"), "[DONE]"),
			wantData: []string{roleChunk, deltaChunk("Hi"), finishChunk("stop"), "[DONE]"},
		},
		{
			name:     "cut inside an event",
			parts:    []string{"data: " + roleChunk + "\n\n", "data: {\"cho"},
			wantData: []string{roleChunk},
			wantRaw:  "data: " + roleChunk + "\n\n",
			wantErr:  ErrorStreamCut,
		},
		{
			name:     "named event and comment kept",
			parts:    []string{"event: ping\ndata: {}\n\n", ": comment\n\n", "data: [DONE]\n\n"},
			wantData: []string{"{}", "[DONE]"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				startSSE(w)
				writeSSE(w, tt.parts...)
			})
			client := newTestClient(t, fastOptions())

			forwarded, err := client.Forward(context.Background(), upstream.provider(), []byte(`{"model":"m","messages":[],"stream":true}`), true)
			if err != nil {
				t.Fatal(err)
			}
			defer forwarded.Close()
			if !forwarded.IsEventStream() {
				t.Errorf("IsEventStream = false for Content-Type %q", forwarded.Header.Get("Content-Type"))
			}

			var data []string
			var raw strings.Builder
			for {
				event, err := forwarded.NextEvent()
				if err != nil {
					if tt.wantErr == "" && !errors.Is(err, io.EOF) {
						t.Errorf("error = %v, want io.EOF", err)
					}
					if tt.wantErr != "" {
						if got := asUpstreamError(t, err); got.Kind != tt.wantErr {
							t.Errorf("error kind = %s, want %s", got.Kind, tt.wantErr)
						}
					}
					break
				}
				raw.Write(event.Raw)
				if event.HasData {
					data = append(data, string(event.Data))
				}
			}
			if !reflect.DeepEqual(data, tt.wantData) {
				t.Errorf("event data = %q, want %q", data, tt.wantData)
			}
			wantRaw := tt.wantRaw
			if wantRaw == "" {
				wantRaw = strings.Join(tt.parts, "")
			}
			if raw.String() != wantRaw {
				t.Errorf("raw events = %q, want %q", raw.String(), wantRaw)
			}
			if got := upstream.lastRequest(t).Header.Get("Accept"); got != "text/event-stream" {
				t.Errorf("Accept = %q, want text/event-stream", got)
			}
		})
	}
}

func TestForwardFirstEventTimeout(t *testing.T) {
	upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		startSSE(w)
		waitForDisconnect(r)
	})
	client := newTestClient(t, ClientOptions{FirstByteTimeout: 100 * time.Millisecond, IdleTimeout: time.Second})

	forwarded, err := client.Forward(context.Background(), upstream.provider(), []byte(`{}`), true)
	if err != nil {
		t.Fatal(err)
	}
	defer forwarded.Close()

	started := time.Now()
	_, err = forwarded.NextEvent()
	if got := asUpstreamError(t, err); got.Kind != ErrorTimeout {
		t.Errorf("error kind = %s, want upstream_timeout", got.Kind)
	}
	if elapsed := time.Since(started); elapsed > 900*time.Millisecond {
		t.Errorf("first-event timeout fired after %s, want about 100ms", elapsed)
	}
}

func TestForwardIdleTimeout(t *testing.T) {
	tests := []struct {
		name string
		// trickle sends part of an event every 40 ms after the second event,
		// which must not move the deadline without a whole event.
		trickle bool
	}{
		{name: "silent upstream"},
		{name: "partial event trickles", trickle: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				startSSE(w)
				writeSSE(w, dataEvents(roleChunk)...)
				// Within the idle timeout of the first event.
				time.Sleep(100 * time.Millisecond)
				writeSSE(w, dataEvents(deltaChunk("a"))...)
				if tt.trickle {
					writeSSE(w, "data: {")
					for r.Context().Err() == nil {
						time.Sleep(40 * time.Millisecond)
						writeSSE(w, " ")
					}
				}
				waitForDisconnect(r)
			})
			client := newTestClient(t, ClientOptions{FirstByteTimeout: time.Second, IdleTimeout: 300 * time.Millisecond})

			// The context ends a deadline that never fires, so that the test
			// fails instead of hanging.
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			forwarded, err := client.Forward(ctx, upstream.provider(), []byte(`{}`), true)
			if err != nil {
				t.Fatal(err)
			}
			defer forwarded.Close()

			for i := range 2 {
				if _, err := forwarded.NextEvent(); err != nil {
					t.Fatalf("event %d: %v", i+1, err)
				}
			}
			started := time.Now()
			_, err = forwarded.NextEvent()
			got := asUpstreamError(t, err)
			if got.Kind != ErrorTimeout || !got.Streamed {
				t.Errorf("error kind/streamed = %s/%v, want upstream_timeout/true", got.Kind, got.Streamed)
			}
			if elapsed := time.Since(started); elapsed > 2*time.Second {
				t.Errorf("idle timeout fired after %s, want about 300 ms", elapsed)
			}
		})
	}
}

func TestForwardReadBody(t *testing.T) {
	const body = `{"id":"x","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`
	upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
	})
	client := newTestClient(t, fastOptions())

	for i := range 2 {
		var reused bool
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
		})
		forwarded, err := client.Forward(ctx, upstream.provider(), []byte(`{}`), false)
		if err != nil {
			t.Fatal(err)
		}
		data, err := forwarded.ReadBody()
		forwarded.Close()
		if err != nil {
			t.Fatal(err)
		}
		if string(data) != body {
			t.Errorf("body = %s, want %s", data, body)
		}
		// Reading the body to its end returns the connection to the pool.
		if i == 1 && !reused {
			t.Error("second request opened a new connection, want the first one reused")
		}
	}
}

func TestForwardBeforeRead(t *testing.T) {
	upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		startSSE(w)
		// Three events in one write, then one more after a pause.
		writeSSE(w, strings.Join(dataEvents(roleChunk, deltaChunk("a"), deltaChunk("b")), ""))
		time.Sleep(50 * time.Millisecond)
		writeSSE(w, dataEvents("[DONE]")...)
	})
	client := newTestClient(t, fastOptions())

	forwarded, err := client.Forward(context.Background(), upstream.provider(), []byte(`{}`), true)
	if err != nil {
		t.Fatal(err)
	}
	defer forwarded.Close()
	reads := 0
	forwarded.BeforeRead(func() { reads++ })

	for i := range 3 {
		if _, err := forwarded.NextEvent(); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	if reads >= 3 {
		t.Errorf("BeforeRead ran %d times for 3 events sent in one write, want fewer reads than events", reads)
	}
	before := reads
	event, err := forwarded.NextEvent()
	if err != nil || string(event.Data) != "[DONE]" {
		t.Fatalf("fourth event = %q, %v; want [DONE]", event.Data, err)
	}
	if reads == before {
		t.Error("BeforeRead did not run before waiting for the delayed event")
	}
}
