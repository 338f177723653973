package mockupstream

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestStatusFaults(t *testing.T) {
	tests := []struct {
		fault          string
		wantStatus     int
		wantType       string
		wantCode       string
		wantRetryAfter string
	}{
		{fault: "429", wantStatus: http.StatusTooManyRequests, wantType: "requests", wantCode: "rate_limit_exceeded", wantRetryAfter: "1"},
		{fault: "500", wantStatus: http.StatusInternalServerError, wantType: "server_error"},
		{fault: "401", wantStatus: http.StatusUnauthorized, wantType: "invalid_request_error", wantCode: "invalid_api_key"},
		{fault: "403", wantStatus: http.StatusForbidden, wantType: "invalid_request_error", wantCode: "permission_denied"},
		{fault: "400", wantStatus: http.StatusBadRequest, wantType: "invalid_request_error"},
	}

	srv := startServer(t, Options{})
	client := newClient(t)

	for _, tt := range tests {
		for _, via := range []string{"header", "model"} {
			t.Run(tt.fault+" by "+via, func(t *testing.T) {
				model, headers := "mock-gpt", map[string]string{"X-Mock-Fault": tt.fault}
				if via == "model" {
					model, headers = "fault-"+tt.fault, nil
				}

				resp := mustPostChat(t, client, srv, chatBody(model, "hi", map[string]any{"stream": true}), headers)

				if resp.StatusCode != tt.wantStatus {
					t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
				}
				if got := resp.Header.Get("Retry-After"); got != tt.wantRetryAfter {
					t.Errorf("Retry-After = %q, want %q", got, tt.wantRetryAfter)
				}

				errorBody := readErrorBody(t, resp)
				if errorBody.Error.Type != tt.wantType {
					t.Errorf("error type = %q, want %q", errorBody.Error.Type, tt.wantType)
				}

				var code string
				if errorBody.Error.Code != nil {
					code = *errorBody.Error.Code
				}
				if code != tt.wantCode {
					t.Errorf("error code = %q, want %q", code, tt.wantCode)
				}
			})
		}
	}
}

func TestStreamFaults(t *testing.T) {
	tests := []struct {
		name              string
		model             string
		headers           map[string]string
		wantContentChunks int
		wantUnexpectedEOF bool
		wantMalformed     bool
	}{
		{name: "cut by header", model: "mock-gpt", headers: map[string]string{"X-Mock-Fault": "cut", "X-Mock-Cut-After": "2"}, wantContentChunks: 2, wantUnexpectedEOF: true},
		{name: "cut by model", model: "fault-cut", wantContentChunks: 3, wantUnexpectedEOF: true},
		{name: "cut after more tokens than the reply", model: "fault-cut", headers: map[string]string{"X-Mock-Tokens": "2", "X-Mock-Cut-After": "10"}, wantContentChunks: 2, wantUnexpectedEOF: true},
		{name: "cut-before-first by header", model: "mock-gpt", headers: map[string]string{"X-Mock-Fault": "cut-before-first"}, wantUnexpectedEOF: true},
		{name: "cut-before-first by model", model: "fault-cut-before-first", wantUnexpectedEOF: true},
		{name: "malformed by header", model: "mock-gpt", headers: map[string]string{"X-Mock-Fault": "malformed"}, wantContentChunks: 3, wantMalformed: true},
		{name: "malformed by model", model: "fault-malformed", headers: map[string]string{"X-Mock-Cut-After": "1"}, wantContentChunks: 1, wantMalformed: true},
	}

	srv := startServer(t, Options{})
	client := newClient(t)

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := mustPostChat(t, client, srv, chatBody(tt.model, "hi", map[string]any{"stream": true}), tt.headers)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200", resp.StatusCode)
			}

			payloads, err := readEvents(resp.Body)

			if tt.wantUnexpectedEOF && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("read error = %v, want unexpected EOF", err)
			}
			if !tt.wantUnexpectedEOF && err != nil {
				t.Errorf("read error = %v, want a clean end of stream", err)
			}

			contentChunks := 0
			for _, payload := range payloads {
				if payload == "[DONE]" {
					t.Errorf("stream contains [DONE], want none")
				}

				var chunk testChunk
				if json.Unmarshal([]byte(payload), &chunk) != nil {
					continue
				}
				if len(chunk.Choices) > 0 && chunk.Choices[0].FinishReason != nil {
					t.Errorf("stream contains a finish chunk %q, want none", payload)
				}
				if len(chunk.Choices) > 0 && chunk.Choices[0].Delta.Content != nil && *chunk.Choices[0].Delta.Content != "" {
					contentChunks++
				}
			}
			if contentChunks != tt.wantContentChunks {
				t.Errorf("got %d content chunks, want %d", contentChunks, tt.wantContentChunks)
			}

			if !tt.wantMalformed {
				return
			}
			if len(payloads) == 0 || payloads[len(payloads)-1] != "{not json" {
				t.Fatalf("last event = %q, want {not json", payloads)
			}
			var probe map[string]any
			if json.Unmarshal([]byte(payloads[len(payloads)-1]), &probe) == nil {
				t.Error("malformed event parses as JSON")
			}
		})
	}
}

func TestNonStreamingFaults(t *testing.T) {
	tests := []struct {
		fault             string
		wantUnexpectedEOF bool
		wantBody          string
	}{
		{fault: "cut", wantUnexpectedEOF: true},
		{fault: "cut-before-first", wantUnexpectedEOF: true},
		{fault: "malformed", wantBody: "{not json"},
	}

	srv := startServer(t, Options{})
	client := newClient(t)

	for _, tt := range tests {
		t.Run(tt.fault, func(t *testing.T) {
			resp := mustPostChat(t, client, srv, chatBody("mock-gpt", "hi", nil), map[string]string{"X-Mock-Fault": tt.fault})
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200", resp.StatusCode)
			}

			body, err := io.ReadAll(resp.Body)

			if tt.wantUnexpectedEOF && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("read error = %v, want unexpected EOF (body %q)", err, body)
			}
			if !tt.wantUnexpectedEOF && err != nil {
				t.Errorf("read error = %v, want none", err)
			}
			if tt.wantBody != "" && string(body) != tt.wantBody {
				t.Errorf("body = %q, want %q", body, tt.wantBody)
			}
		})
	}
}

func TestStallFault(t *testing.T) {
	for _, stream := range []bool{true, false} {
		name := "non-streaming"
		if stream {
			name = "streaming"
		}

		t.Run(name, func(t *testing.T) {
			srv := startServer(t, Options{})
			client := newClient(t)

			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()

			resp, err := postChat(ctx, client, srv, chatBody("fault-stall", "hi", map[string]any{"stream": stream}), nil)
			if err != nil {
				t.Fatalf("POST: %v", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200", resp.StatusCode)
			}

			start := time.Now()
			body, err := io.ReadAll(resp.Body)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("read error = %v, want context deadline exceeded", err)
			}

			if stream && strings.Count(string(body), `"content":"`) != 1+3 {
				t.Errorf("stalled stream has %d content fields, want the role chunk and 3 tokens: %q",
					strings.Count(string(body), `"content":"`), body)
			}
			if stream && strings.Contains(string(body), "[DONE]") {
				t.Errorf("stalled stream contains [DONE]")
			}
			if !stream && len(body) != 0 {
				t.Errorf("stalled response body = %q, want empty", body)
			}
			if waited := time.Since(start); waited < 100*time.Millisecond {
				t.Errorf("stall ended after %v, want it to last until the client deadline", waited)
			}

			waitForIdle(t, srv, 2*time.Second)
		})
	}
}

func TestSlowStartFault(t *testing.T) {
	srv := startServer(t, Options{})
	client := newClient(t)

	for _, via := range []string{"header", "model"} {
		t.Run(via, func(t *testing.T) {
			model, headers := "mock-gpt", map[string]string{"X-Mock-Fault": "slow-start", "X-Mock-Slow-Ms": "200"}
			if via == "model" {
				model, headers = "fault-slow-start", map[string]string{"X-Mock-Slow-Ms": "200"}
			}

			start := time.Now()
			resp := mustPostChat(t, client, srv, chatBody(model, "hi", map[string]any{"stream": true}), headers)
			if headersAfter := time.Since(start); headersAfter < 200*time.Millisecond {
				t.Errorf("headers arrived after %v, want at least 200ms", headersAfter)
			}

			summary := readStream(t, resp)
			if summary.contentChunks == 0 {
				t.Error("slow-start stream has no content, want a normal reply")
			}
		})
	}
}

func TestFaultOnceByHeader(t *testing.T) {
	srv := startServer(t, Options{})
	client := newClient(t)

	status := func(key string) int {
		resp := mustPostChat(t, client, srv, chatBody("mock-gpt", "hi", nil),
			map[string]string{"X-Mock-Fault": "500", "X-Mock-Fault-Once": key})
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}

	steps := []struct {
		key        string
		wantStatus int
	}{
		{key: "retry-a", wantStatus: http.StatusInternalServerError},
		{key: "retry-a", wantStatus: http.StatusOK},
		{key: "retry-a", wantStatus: http.StatusOK},
		{key: "retry-b", wantStatus: http.StatusInternalServerError},
		{key: "retry-b", wantStatus: http.StatusOK},
	}
	for i, step := range steps {
		if got := status(step.key); got != step.wantStatus {
			t.Errorf("request %d with key %q: status = %d, want %d", i, step.key, got, step.wantStatus)
		}
	}

	other := startServer(t, Options{})
	resp := mustPostChat(t, client, other, chatBody("mock-gpt", "hi", nil),
		map[string]string{"X-Mock-Fault": "500", "X-Mock-Fault-Once": "retry-a"})
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("another server: status = %d, want 500 because fault-once state is per handler", resp.StatusCode)
	}
}

func TestFaultOnceByModel(t *testing.T) {
	srv := startServer(t, Options{})
	client := newClient(t)

	wantStatuses := []int{http.StatusTooManyRequests, http.StatusOK, http.StatusOK}
	for i, want := range wantStatuses {
		resp := mustPostChat(t, client, srv, chatBody("fault-once-429", "hi", nil), nil)
		io.Copy(io.Discard, resp.Body)

		if resp.StatusCode != want {
			t.Errorf("request %d: status = %d, want %d", i, resp.StatusCode, want)
		}
	}

	resp := mustPostChat(t, client, srv, chatBody("fault-once-cut", "hi", map[string]any{"stream": true}), nil)
	if _, err := readEvents(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("first fault-once-cut stream: read error = %v, want unexpected EOF", err)
	}
	resp = mustPostChat(t, client, srv, chatBody("fault-once-cut", "hi", map[string]any{"stream": true}), nil)
	readStream(t, resp)
}

func TestFaultOnceConcurrent(t *testing.T) {
	srv := startServer(t, Options{})
	client := newClient(t)

	const requests = 20
	statuses := make([]int, requests)

	var wg sync.WaitGroup
	for i := range requests {
		wg.Go(func() {
			resp, err := postChat(t.Context(), client, srv, chatBody("mock-gpt", "hi", nil),
				map[string]string{"X-Mock-Fault": "500", "X-Mock-Fault-Once": "shared"})
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	wg.Wait()

	failures := 0
	for _, status := range statuses {
		if status == http.StatusInternalServerError {
			failures++
		}
	}
	if failures != 1 {
		t.Errorf("%d of %d concurrent requests failed, want exactly 1: %v", failures, requests, statuses)
	}
}

func TestClientDisconnectStopsHandler(t *testing.T) {
	tests := []struct {
		name    string
		model   string
		headers map[string]string
		// readFirstChunk reads one event before disconnecting. Without it the
		// client disconnects while waiting for headers or the first chunk.
		readFirstChunk bool
	}{
		{name: "paced stream", model: "mock-gpt", headers: map[string]string{"X-Mock-TPS": "5", "X-Mock-Tokens": "1000"}, readFirstChunk: true},
		{name: "unpaced long stream", model: "mock-gpt", headers: map[string]string{"X-Mock-Tokens": "1000000"}, readFirstChunk: true},
		{name: "waiting for first token", model: "mock-gpt", headers: map[string]string{"X-Mock-TTFT-Ms": "60000"}},
		{name: "slow start", model: "fault-slow-start", headers: map[string]string{"X-Mock-Slow-Ms": "60000"}},
		{name: "stall", model: "fault-stall", headers: map[string]string{"X-Mock-Cut-After": "1"}, readFirstChunk: true},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, Options{})
			client := newClient(t)
			goroutinesBefore := runtime.NumGoroutine()

			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()

			// Cancel after a while, so requests that never send headers end too.
			timer := time.AfterFunc(150*time.Millisecond, cancel)
			defer timer.Stop()

			resp, err := postChat(ctx, client, srv, chatBody(tt.model, "hi", map[string]any{"stream": true}), tt.headers)
			if err == nil {
				if tt.readFirstChunk {
					buf := make([]byte, 64)
					if _, err := resp.Body.Read(buf); err != nil {
						t.Errorf("read first chunk: %v", err)
					}
				}
				cancel()
				resp.Body.Close()
			}

			if srv.Stats().ChatCompletions != 1 {
				t.Fatalf("server received %d requests, want 1", srv.Stats().ChatCompletions)
			}
			waitForIdle(t, srv, 2*time.Second)

			client.CloseIdleConnections()
			deadline := time.Now().Add(2 * time.Second)
			for runtime.NumGoroutine() > goroutinesBefore {
				if time.Now().After(deadline) {
					t.Fatalf("%d goroutines remain, want at most %d as before the request", runtime.NumGoroutine(), goroutinesBefore)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}
