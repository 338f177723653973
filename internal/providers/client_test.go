package providers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const testAPIKey = "sk-test-0123456789abcdef"

// recordedRequest is what the test upstream received.
type recordedRequest struct {
	Method string
	Path   string
	Query  string
	Header http.Header
	Body   map[string]json.RawMessage
}

// testUpstream is a loopback OpenAI-compatible server whose handler the test
// supplies. It records each request after reading its body, which also lets
// the server notice a client disconnect.
type testUpstream struct {
	server *httptest.Server

	mu       sync.Mutex
	requests []recordedRequest
}

func newTestUpstream(t *testing.T, handler http.HandlerFunc) *testUpstream {
	t.Helper()

	upstream := &testUpstream{}
	upstream.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstream.record(t, r)
		handler(w, r)
	}))
	t.Cleanup(upstream.server.Close)
	return upstream
}

func (u *testUpstream) record(t *testing.T, r *http.Request) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		t.Errorf("upstream: read request body: %v", err)
		return
	}
	// The handler may read the body too.
	r.Body = io.NopCloser(bytes.NewReader(data))

	var body map[string]json.RawMessage
	if err := json.Unmarshal(data, &body); err != nil {
		t.Errorf("upstream: request body is not a JSON object: %v: %s", err, data)
	}

	u.mu.Lock()
	defer u.mu.Unlock()
	u.requests = append(u.requests, recordedRequest{
		Method: r.Method,
		Path:   r.URL.Path,
		Query:  r.URL.RawQuery,
		Header: r.Header.Clone(),
		Body:   body,
	})
}

func (u *testUpstream) lastRequest(t *testing.T) recordedRequest {
	t.Helper()

	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.requests) == 0 {
		t.Fatal("upstream received no request")
	}
	return u.requests[len(u.requests)-1]
}

func (u *testUpstream) provider() Provider {
	return Provider{ID: "test", Kind: "openai", BaseURL: u.server.URL + "/v1", APIKey: testAPIKey}
}

func newTestClient(t *testing.T, opts ClientOptions) *Client {
	t.Helper()

	client := NewClient(opts)
	t.Cleanup(client.CloseIdleConnections)
	return client
}

// fastOptions keeps failing tests short. Tests that need a timeout to fire
// set it lower.
func fastOptions() ClientOptions {
	return ClientOptions{ConnectTimeout: 2 * time.Second, FirstByteTimeout: 3 * time.Second, IdleTimeout: 3 * time.Second}
}

func testRequest() ChatRequest {
	return ChatRequest{Model: "upstream-model", Messages: []Message{{Role: "user", Content: "Hi"}}}
}

func deltaChunk(content string) string {
	encoded, _ := json.Marshal(content)
	return fmt.Sprintf(`{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":%s},"finish_reason":null}],"usage":null}`, encoded)
}

func finishChunk(reason string) string {
	return fmt.Sprintf(`{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":%q}],"usage":null}`, reason)
}

const (
	roleChunk  = `{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`
	usageChunk = `{"id":"c1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`
)

// writeSSE sends each raw string to the client and flushes it.
func writeSSE(w http.ResponseWriter, parts ...string) {
	flusher := w.(http.Flusher)
	for _, part := range parts {
		io.WriteString(w, part)
		flusher.Flush()
	}
}

func startSSE(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
}

func dataEvents(chunks ...string) []string {
	events := make([]string, len(chunks))
	for i, chunk := range chunks {
		events[i] = "data: " + chunk + "\n\n"
	}
	return events
}

// collectDeltas returns an onDelta callback and a function that returns the
// deltas received so far.
func collectDeltas() (func(string) error, func() []string) {
	var mu sync.Mutex
	var deltas []string
	onDelta := func(delta string) error {
		mu.Lock()
		defer mu.Unlock()
		deltas = append(deltas, delta)
		return nil
	}
	get := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), deltas...)
	}
	return onDelta, get
}

func asUpstreamError(t *testing.T, err error) *UpstreamError {
	t.Helper()

	var upstreamErr *UpstreamError
	if !errors.As(err, &upstreamErr) {
		t.Fatalf("error = %v (%T), want *UpstreamError", err, err)
	}
	return upstreamErr
}

// waitForDisconnect blocks the handler until the client goes away, with a
// bound so that a broken test cannot hang the server.
func waitForDisconnect(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(5 * time.Second):
	}
}

func TestStreamChatHappyPath(t *testing.T) {
	upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		startSSE(w)
		writeSSE(w, dataEvents(roleChunk, deltaChunk("Hel"), deltaChunk("lo"), finishChunk("stop"), usageChunk, "[DONE]")...)
	})
	provider := upstream.provider()
	provider.Headers = map[string]string{"X-Org": "acme"}
	client := newTestClient(t, fastOptions())
	onDelta, deltas := collectDeltas()

	result, err := client.StreamChat(context.Background(), provider, testRequest(), onDelta)
	if err != nil {
		t.Fatalf("StreamChat() error = %v", err)
	}

	if got, want := deltas(), []string{"Hel", "lo"}; !reflect.DeepEqual(got, want) {
		t.Errorf("deltas = %q, want %q", got, want)
	}
	if result.Text != "Hello" {
		t.Errorf("Text = %q, want %q", result.Text, "Hello")
	}
	if result.FinishReason != "stop" {
		t.Errorf("FinishReason = %q, want stop", result.FinishReason)
	}
	if want := (&Usage{PromptTokens: 3, CompletionTokens: 2, TotalTokens: 5}); !reflect.DeepEqual(result.Usage, want) {
		t.Errorf("Usage = %+v, want %+v", result.Usage, want)
	}

	request := upstream.lastRequest(t)
	if request.Method != http.MethodPost {
		t.Errorf("method = %s, want POST", request.Method)
	}
	if request.Path != "/v1/chat/completions" {
		t.Errorf("path = %s, want /v1/chat/completions", request.Path)
	}
	if got := request.Header.Get("Authorization"); got != "Bearer "+testAPIKey {
		t.Errorf("Authorization = %q, want the bearer key", got)
	}
	if got := request.Header.Get("X-Org"); got != "acme" {
		t.Errorf("X-Org = %q, want acme", got)
	}
	if got := request.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
	if got := string(request.Body["model"]); got != `"upstream-model"` {
		t.Errorf("body model = %s, want \"upstream-model\"", got)
	}
	if got := string(request.Body["messages"]); got != `[{"role":"user","content":"Hi"}]` {
		t.Errorf("body messages = %s", got)
	}
	if got := string(request.Body["stream"]); got != "true" {
		t.Errorf("body stream = %s, want true", got)
	}
	if got := string(request.Body["stream_options"]); got != `{"include_usage":true}` {
		t.Errorf("body stream_options = %s, want include_usage true", got)
	}
}

func TestStreamChatFormats(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		wantDeltas []string
		wantFinish string
		wantUsage  *Usage
	}{
		{
			name:       "CRLF line endings",
			body:       "data: " + deltaChunk("a") + "\r\n\r\ndata: " + finishChunk("stop") + "\r\n\r\ndata: [DONE]\r\n\r\n",
			wantDeltas: []string{"a"},
			wantFinish: "stop",
		},
		{
			name:       "multi-line data",
			body:       "data: {\"choices\":[{\"index\":0,\ndata: \"delta\":{\"content\":\"split\"}}]}\n\ndata: " + finishChunk("stop") + "\n\ndata: [DONE]\n\n",
			wantDeltas: []string{"split"},
			wantFinish: "stop",
		},
		{
			name:       "comments and ping events",
			body:       ": processing\n\nevent: ping\ndata: {}\n\ndata: " + deltaChunk("x") + "\n: keep-alive\n\ndata: " + finishChunk("length") + "\n\ndata: [DONE]\n\n",
			wantDeltas: []string{"x"},
			wantFinish: "length",
		},
		{
			name:       "finish_reason without DONE",
			body:       "data: " + deltaChunk("a") + "\n\ndata: " + finishChunk("stop") + "\n\n",
			wantDeltas: []string{"a"},
			wantFinish: "stop",
		},
		{
			name:       "usage without DONE after finish",
			body:       strings.Join(dataEvents(deltaChunk("a"), finishChunk("stop"), usageChunk), ""),
			wantDeltas: []string{"a"},
			wantFinish: "stop",
			wantUsage:  &Usage{PromptTokens: 3, CompletionTokens: 2, TotalTokens: 5},
		},
		{
			name:       "content and finish in one chunk",
			body:       strings.Join(dataEvents(`{"choices":[{"index":0,"delta":{"content":"all"},"finish_reason":"stop"}]}`, "[DONE]"), ""),
			wantDeltas: []string{"all"},
			wantFinish: "stop",
		},
		{
			name:       "content parts array",
			body:       strings.Join(dataEvents(`{"choices":[{"index":0,"delta":{"content":[{"type":"text","text":"pa"},{"type":"text","text":"rt"}]}}]}`, finishChunk("stop"), "[DONE]"), ""),
			wantDeltas: []string{"part"},
			wantFinish: "stop",
		},
		{
			name:       "second choice ignored",
			body:       strings.Join(dataEvents(`{"choices":[{"index":1,"delta":{"content":"other"}},{"index":0,"delta":{"content":"main"}}]}`, finishChunk("stop"), "[DONE]"), ""),
			wantDeltas: []string{"main"},
			wantFinish: "stop",
		},
		{
			name:       "finish_reason of first choice preferred",
			body:       strings.Join(dataEvents(`{"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"},{"index":1,"delta":{},"finish_reason":"length"}]}`, "[DONE]"), ""),
			wantDeltas: []string{"a"},
			wantFinish: "stop",
		},
		{
			name:       "DONE ends the stream before later data",
			body:       strings.Join(dataEvents(deltaChunk("a"), "[DONE]", "not json"), ""),
			wantDeltas: []string{"a"},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				startSSE(w)
				writeSSE(w, tt.body)
			})
			client := newTestClient(t, fastOptions())
			onDelta, deltas := collectDeltas()

			result, err := client.StreamChat(context.Background(), upstream.provider(), testRequest(), onDelta)
			if err != nil {
				t.Fatalf("StreamChat() error = %v", err)
			}

			if got := deltas(); !reflect.DeepEqual(got, tt.wantDeltas) {
				t.Errorf("deltas = %q, want %q", got, tt.wantDeltas)
			}
			if want := strings.Join(tt.wantDeltas, ""); result.Text != want {
				t.Errorf("Text = %q, want %q", result.Text, want)
			}
			if result.FinishReason != tt.wantFinish {
				t.Errorf("FinishReason = %q, want %q", result.FinishReason, tt.wantFinish)
			}
			if !reflect.DeepEqual(result.Usage, tt.wantUsage) {
				t.Errorf("Usage = %+v, want %+v", result.Usage, tt.wantUsage)
			}
		})
	}
}

func TestStreamChatCutStream(t *testing.T) {
	tests := []struct {
		name         string
		handler      http.HandlerFunc
		wantStreamed bool
	}{
		{
			name: "clean end before delta",
			handler: func(w http.ResponseWriter, r *http.Request) {
				startSSE(w)
				writeSSE(w, dataEvents(roleChunk)...)
			},
			wantStreamed: false,
		},
		{
			name: "clean end after delta",
			handler: func(w http.ResponseWriter, r *http.Request) {
				startSSE(w)
				writeSSE(w, dataEvents(roleChunk, deltaChunk("partial"))...)
			},
			wantStreamed: true,
		},
		{
			name: "empty body",
			handler: func(w http.ResponseWriter, r *http.Request) {
				startSSE(w)
			},
			wantStreamed: false,
		},
		{
			name: "connection aborted before delta",
			handler: func(w http.ResponseWriter, r *http.Request) {
				startSSE(w)
				writeSSE(w, dataEvents(roleChunk)...)
				panic(http.ErrAbortHandler)
			},
			wantStreamed: false,
		},
		{
			name: "connection aborted after delta",
			handler: func(w http.ResponseWriter, r *http.Request) {
				startSSE(w)
				writeSSE(w, dataEvents(deltaChunk("partial"))...)
				panic(http.ErrAbortHandler)
			},
			wantStreamed: true,
		},
		{
			name: "connection aborted inside an event",
			handler: func(w http.ResponseWriter, r *http.Request) {
				startSSE(w)
				writeSSE(w, "data: "+deltaChunk("partial")+"\n\ndata: {\"choi")
				panic(http.ErrAbortHandler)
			},
			wantStreamed: true,
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			upstream := newTestUpstream(t, tt.handler)
			client := newTestClient(t, fastOptions())
			onDelta, _ := collectDeltas()

			result, err := client.StreamChat(context.Background(), upstream.provider(), testRequest(), onDelta)

			if result != nil {
				t.Errorf("result = %+v, want nil", result)
			}
			upstreamErr := asUpstreamError(t, err)
			if upstreamErr.Kind != ErrorStreamCut {
				t.Errorf("Kind = %s, want %s (error: %v)", upstreamErr.Kind, ErrorStreamCut, err)
			}
			if upstreamErr.Streamed != tt.wantStreamed {
				t.Errorf("Streamed = %v, want %v", upstreamErr.Streamed, tt.wantStreamed)
			}
		})
	}
}

func TestStreamChatMalformedChunk(t *testing.T) {
	tests := []struct {
		name         string
		events       []string
		wantStreamed bool
	}{
		{name: "before delta", events: dataEvents("{not json"), wantStreamed: false},
		{name: "after delta", events: dataEvents(deltaChunk("a"), "{not json"), wantStreamed: true},
		{name: "content of wrong type", events: dataEvents(`{"choices":[{"index":0,"delta":{"content":42}}]}`), wantStreamed: false},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				startSSE(w)
				writeSSE(w, tt.events...)
				writeSSE(w, dataEvents(finishChunk("stop"), "[DONE]")...)
			})
			client := newTestClient(t, fastOptions())
			onDelta, _ := collectDeltas()

			_, err := client.StreamChat(context.Background(), upstream.provider(), testRequest(), onDelta)

			upstreamErr := asUpstreamError(t, err)
			if upstreamErr.Kind != ErrorMalformed {
				t.Errorf("Kind = %s, want %s (error: %v)", upstreamErr.Kind, ErrorMalformed, err)
			}
			if upstreamErr.Streamed != tt.wantStreamed {
				t.Errorf("Streamed = %v, want %v", upstreamErr.Streamed, tt.wantStreamed)
			}
			if len(upstreamErr.Body) == 0 {
				t.Error("Body is empty, want the offending chunk")
			}
		})
	}
}

func TestStreamChatErrorChunk(t *testing.T) {
	upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		startSSE(w)
		writeSSE(w, dataEvents(deltaChunk("a"), `{"error":{"message":"model overloaded","type":"server_error"}}`)...)
	})
	client := newTestClient(t, fastOptions())
	onDelta, _ := collectDeltas()

	_, err := client.StreamChat(context.Background(), upstream.provider(), testRequest(), onDelta)

	upstreamErr := asUpstreamError(t, err)
	if upstreamErr.Kind != ErrorServer {
		t.Errorf("Kind = %s, want %s", upstreamErr.Kind, ErrorServer)
	}
	if upstreamErr.Message != "model overloaded" {
		t.Errorf("Message = %q, want %q", upstreamErr.Message, "model overloaded")
	}
	if !upstreamErr.Streamed {
		t.Error("Streamed = false, want true")
	}
}

func TestStatusErrors(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		body        string
		wantKind    ErrorKind
		wantMessage string
	}{
		{
			name:        "429 rate limited",
			status:      http.StatusTooManyRequests,
			body:        `{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`,
			wantKind:    ErrorRateLimited,
			wantMessage: "Rate limit reached",
		},
		{
			name:        "500 server error",
			status:      http.StatusInternalServerError,
			body:        `{"error":{"message":"The server had an error"}}`,
			wantKind:    ErrorServer,
			wantMessage: "The server had an error",
		},
		{
			name:        "503 without JSON",
			status:      http.StatusServiceUnavailable,
			body:        "<html>upstream down</html>",
			wantKind:    ErrorServer,
			wantMessage: "Service Unavailable",
		},
		{
			name:        "401 auth",
			status:      http.StatusUnauthorized,
			body:        `{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}`,
			wantKind:    ErrorAuth,
			wantMessage: "Incorrect API key provided",
		},
		{
			name:        "403 auth",
			status:      http.StatusForbidden,
			body:        `{"error":"forbidden region"}`,
			wantKind:    ErrorAuth,
			wantMessage: "forbidden region",
		},
		{
			name:        "400 bad request",
			status:      http.StatusBadRequest,
			body:        `{"error":{"message":"Invalid value for 'temperature'","param":"temperature"}}`,
			wantKind:    ErrorBadRequest,
			wantMessage: "Invalid value for 'temperature'",
		},
		{
			name:        "404 with top-level message",
			status:      http.StatusNotFound,
			body:        `{"object":"error","message":"The model does not exist"}`,
			wantKind:    ErrorBadRequest,
			wantMessage: "The model does not exist",
		},
		{
			name:        "redirect",
			status:      http.StatusMovedPermanently,
			body:        "",
			wantKind:    ErrorBadRequest,
			wantMessage: `unexpected redirect to "/elsewhere"; check the provider's base_url`,
		},
	}

	calls := map[string]func(*Client, Provider) (*ChatResult, error){
		"StreamChat": func(c *Client, p Provider) (*ChatResult, error) {
			onDelta, _ := collectDeltas()
			return c.StreamChat(context.Background(), p, testRequest(), onDelta)
		},
		"Chat": func(c *Client, p Provider) (*ChatResult, error) {
			return c.Chat(context.Background(), p, testRequest())
		},
	}

	for _, tt := range tests {
		for callName, call := range calls {
			t.Run(tt.name+"/"+callName, func(t *testing.T) {
				upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "application/json")
					w.Header().Set("Location", "/elsewhere")
					w.WriteHeader(tt.status)
					io.WriteString(w, tt.body)
				})
				client := newTestClient(t, fastOptions())

				_, err := call(client, upstream.provider())

				upstreamErr := asUpstreamError(t, err)
				if upstreamErr.Kind != tt.wantKind {
					t.Errorf("Kind = %s, want %s", upstreamErr.Kind, tt.wantKind)
				}
				if upstreamErr.StatusCode != tt.status {
					t.Errorf("StatusCode = %d, want %d", upstreamErr.StatusCode, tt.status)
				}
				if upstreamErr.Message != tt.wantMessage {
					t.Errorf("Message = %q, want %q", upstreamErr.Message, tt.wantMessage)
				}
				if string(upstreamErr.Body) != tt.body {
					t.Errorf("Body = %q, want %q", upstreamErr.Body, tt.body)
				}
			})
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		value string
		want  time.Duration
	}{
		{name: "empty", value: "", want: 0},
		{name: "seconds", value: "7", want: 7 * time.Second},
		{name: "seconds with spaces", value: " 2 ", want: 2 * time.Second},
		{name: "zero", value: "0", want: 0},
		{name: "negative", value: "-3", want: 0},
		{name: "fraction", value: "1.5", want: 0},
		{name: "http date", value: "Sat, 01 Mar 2025 12:00:30 GMT", want: 30 * time.Second},
		{name: "past http date", value: "Sat, 01 Mar 2025 11:59:00 GMT", want: 0},
		{name: "garbage", value: "soon", want: 0},
		{name: "huge", value: "99999999999999999", want: time.Duration(math.MaxInt64/int64(time.Second)) * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseRetryAfter(tt.value, now); got != tt.want {
				t.Errorf("parseRetryAfter(%q) = %s, want %s", tt.value, got, tt.want)
			}
		})
	}
}

func TestStatusErrorRetryAfter(t *testing.T) {
	tests := []struct {
		name   string
		header string
		want   time.Duration
	}{
		{name: "header present", header: "3", want: 3 * time.Second},
		{name: "header absent", header: "", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.header != "" {
					w.Header().Set("Retry-After", tt.header)
				}
				w.WriteHeader(http.StatusTooManyRequests)
				io.WriteString(w, `{"error":{"message":"slow down"}}`)
			})
			client := newTestClient(t, fastOptions())
			onDelta, _ := collectDeltas()

			_, err := client.StreamChat(context.Background(), upstream.provider(), testRequest(), onDelta)

			upstreamErr := asUpstreamError(t, err)
			if upstreamErr.Kind != ErrorRateLimited {
				t.Errorf("Kind = %s, want %s", upstreamErr.Kind, ErrorRateLimited)
			}
			if upstreamErr.RetryAfter != tt.want {
				t.Errorf("RetryAfter = %s, want %s", upstreamErr.RetryAfter, tt.want)
			}
		})
	}
}

func TestErrorBodyCapped(t *testing.T) {
	body := `{"error":{"message":"` + strings.Repeat("x", 100) + `"}}`
	upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, body)
	})
	opts := fastOptions()
	opts.MaxErrorBody = 16
	client := newTestClient(t, opts)

	_, err := client.Chat(context.Background(), upstream.provider(), testRequest())

	upstreamErr := asUpstreamError(t, err)
	if string(upstreamErr.Body) != body[:16] {
		t.Errorf("Body = %q, want the first 16 bytes %q", upstreamErr.Body, body[:16])
	}
	if upstreamErr.Kind != ErrorServer {
		t.Errorf("Kind = %s, want %s", upstreamErr.Kind, ErrorServer)
	}
}

func TestErrorRedactsAPIKey(t *testing.T) {
	upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"error":{"message":"Incorrect API key provided: %s"}}`, testAPIKey)
	})
	client := newTestClient(t, fastOptions())

	_, err := client.Chat(context.Background(), upstream.provider(), testRequest())

	upstreamErr := asUpstreamError(t, err)
	if strings.Contains(err.Error(), testAPIKey) {
		t.Errorf("error message contains the API key: %v", err)
	}
	if strings.Contains(string(upstreamErr.Body), testAPIKey) {
		t.Errorf("Body contains the API key: %s", upstreamErr.Body)
	}
	if !strings.Contains(upstreamErr.Message, redactedKey) {
		t.Errorf("Message = %q, want the key replaced by %s", upstreamErr.Message, redactedKey)
	}
}

func TestConnectionRefused(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	address := listener.Addr().String()
	listener.Close()
	client := newTestClient(t, fastOptions())
	provider := Provider{ID: "down", BaseURL: "http://" + address + "/v1", APIKey: testAPIKey}

	_, err = client.Chat(context.Background(), provider, testRequest())

	upstreamErr := asUpstreamError(t, err)
	if upstreamErr.Kind != ErrorConnect {
		t.Errorf("Kind = %s, want %s (error: %v)", upstreamErr.Kind, ErrorConnect, err)
	}
	if upstreamErr.StatusCode != 0 {
		t.Errorf("StatusCode = %d, want 0", upstreamErr.StatusCode)
	}
	if !upstreamErr.Retryable() {
		t.Error("Retryable() = false, want true")
	}
}

func TestServerClosesBeforeResponse(t *testing.T) {
	upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		panic(http.ErrAbortHandler)
	})
	client := newTestClient(t, fastOptions())

	_, err := client.Chat(context.Background(), upstream.provider(), testRequest())

	upstreamErr := asUpstreamError(t, err)
	if upstreamErr.Kind != ErrorConnect {
		t.Errorf("Kind = %s, want %s (error: %v)", upstreamErr.Kind, ErrorConnect, err)
	}
}

func TestTimeouts(t *testing.T) {
	tests := []struct {
		name         string
		opts         ClientOptions
		handler      http.HandlerFunc
		call         string
		wantMessage  string
		wantStreamed bool
	}{
		{
			name: "first byte before headers",
			opts: ClientOptions{FirstByteTimeout: 150 * time.Millisecond, IdleTimeout: 5 * time.Second},
			handler: func(w http.ResponseWriter, r *http.Request) {
				waitForDisconnect(r)
			},
			call:        "StreamChat",
			wantMessage: "response headers",
		},
		{
			name: "first byte before headers non-streaming",
			opts: ClientOptions{FirstByteTimeout: 150 * time.Millisecond, IdleTimeout: 5 * time.Second},
			handler: func(w http.ResponseWriter, r *http.Request) {
				waitForDisconnect(r)
			},
			call:        "Chat",
			wantMessage: "response headers",
		},
		{
			name: "first event after headers with only comments",
			opts: ClientOptions{FirstByteTimeout: 200 * time.Millisecond, IdleTimeout: 5 * time.Second},
			handler: func(w http.ResponseWriter, r *http.Request) {
				startSSE(w)
				ticker := time.NewTicker(20 * time.Millisecond)
				defer ticker.Stop()
				for {
					select {
					case <-r.Context().Done():
						return
					case <-ticker.C:
						writeSSE(w, ": keep-alive\n\n")
					}
				}
			},
			call:        "StreamChat",
			wantMessage: "first stream event",
		},
		{
			name: "idle mid-stream",
			opts: ClientOptions{FirstByteTimeout: 5 * time.Second, IdleTimeout: 150 * time.Millisecond},
			handler: func(w http.ResponseWriter, r *http.Request) {
				startSSE(w)
				writeSSE(w, dataEvents(deltaChunk("a"))...)
				waitForDisconnect(r)
			},
			call:         "StreamChat",
			wantMessage:  "next stream event",
			wantStreamed: true,
		},
		{
			name: "idle in non-streaming body",
			opts: ClientOptions{FirstByteTimeout: 5 * time.Second, IdleTimeout: 150 * time.Millisecond},
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				writeSSE(w, `{"choices":[`)
				waitForDisconnect(r)
			},
			call:        "Chat",
			wantMessage: "response body",
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			upstream := newTestUpstream(t, tt.handler)
			client := newTestClient(t, tt.opts)
			onDelta, _ := collectDeltas()

			start := time.Now()
			var err error
			if tt.call == "Chat" {
				_, err = client.Chat(context.Background(), upstream.provider(), testRequest())
			} else {
				_, err = client.StreamChat(context.Background(), upstream.provider(), testRequest(), onDelta)
			}
			elapsed := time.Since(start)

			upstreamErr := asUpstreamError(t, err)
			if upstreamErr.Kind != ErrorTimeout {
				t.Errorf("Kind = %s, want %s (error: %v)", upstreamErr.Kind, ErrorTimeout, err)
			}
			if !strings.Contains(upstreamErr.Message, tt.wantMessage) {
				t.Errorf("Message = %q, want it to mention %q", upstreamErr.Message, tt.wantMessage)
			}
			if upstreamErr.Streamed != tt.wantStreamed {
				t.Errorf("Streamed = %v, want %v", upstreamErr.Streamed, tt.wantStreamed)
			}
			if elapsed > 2*time.Second {
				t.Errorf("call took %s, want the timeout to fire well before 2s", elapsed)
			}
		})
	}
}

func TestProviderTimeoutSeconds(t *testing.T) {
	t.Parallel()
	upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		startSSE(w)
		ticker := time.NewTicker(50 * time.Millisecond)
		defer ticker.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-ticker.C:
				writeSSE(w, dataEvents(deltaChunk("."))...)
			}
		}
	})
	provider := upstream.provider()
	provider.TimeoutSeconds = 1
	client := newTestClient(t, fastOptions())
	onDelta, deltas := collectDeltas()

	start := time.Now()
	_, err := client.StreamChat(context.Background(), provider, testRequest(), onDelta)
	elapsed := time.Since(start)

	upstreamErr := asUpstreamError(t, err)
	if upstreamErr.Kind != ErrorTimeout {
		t.Errorf("Kind = %s, want %s (error: %v)", upstreamErr.Kind, ErrorTimeout, err)
	}
	if !strings.Contains(upstreamErr.Message, "timeout_seconds") {
		t.Errorf("Message = %q, want it to name timeout_seconds", upstreamErr.Message)
	}
	if !upstreamErr.Streamed {
		t.Error("Streamed = false, want true")
	}
	if len(deltas()) == 0 {
		t.Error("no deltas delivered before the timeout")
	}
	if elapsed < 900*time.Millisecond || elapsed > 2500*time.Millisecond {
		t.Errorf("call took %s, want about 1s", elapsed)
	}
}

func TestContextCancel(t *testing.T) {
	tests := []struct {
		name string
		// streamFirst makes the upstream send one delta before it stalls.
		streamFirst bool
		call        string
	}{
		{name: "before headers", call: "StreamChat"},
		{name: "mid-stream", streamFirst: true, call: "StreamChat"},
		{name: "before headers non-streaming", call: "Chat"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			requestArrived := make(chan struct{})
			serverSawCancel := make(chan struct{})
			upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.streamFirst {
					startSSE(w)
					writeSSE(w, dataEvents(deltaChunk("a"))...)
				}
				close(requestArrived)
				select {
				case <-r.Context().Done():
					close(serverSawCancel)
				case <-time.After(5 * time.Second):
				}
			})
			client := newTestClient(t, ClientOptions{FirstByteTimeout: 30 * time.Second, IdleTimeout: 30 * time.Second})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()

			go func() {
				<-requestArrived
				time.Sleep(50 * time.Millisecond)
				cancel()
			}()

			start := time.Now()
			var err error
			if tt.call == "Chat" {
				_, err = client.Chat(ctx, upstream.provider(), testRequest())
			} else {
				onDelta, _ := collectDeltas()
				_, err = client.StreamChat(ctx, upstream.provider(), testRequest(), onDelta)
			}
			elapsed := time.Since(start)

			if !errors.Is(err, context.Canceled) {
				t.Errorf("error = %v, want context.Canceled", err)
			}
			var upstreamErr *UpstreamError
			if errors.As(err, &upstreamErr) {
				t.Errorf("error is an *UpstreamError (%v), want a plain context error", err)
			}
			if elapsed > time.Second {
				t.Errorf("call returned after %s, want under 1s", elapsed)
			}
			select {
			case <-serverSawCancel:
			case <-time.After(time.Second):
				t.Error("upstream request context was not canceled within 1s")
			}
		})
	}
}

func TestOnDeltaErrorAborts(t *testing.T) {
	serverSawCancel := make(chan struct{})
	upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		startSSE(w)
		writeSSE(w, dataEvents(deltaChunk("a"), deltaChunk("b"))...)
		select {
		case <-r.Context().Done():
			close(serverSawCancel)
		case <-time.After(5 * time.Second):
		}
	})
	client := newTestClient(t, fastOptions())
	clientGone := errors.New("client went away")
	var calls atomic.Int32

	_, err := client.StreamChat(context.Background(), upstream.provider(), testRequest(), func(string) error {
		calls.Add(1)
		return clientGone
	})

	if !errors.Is(err, clientGone) {
		t.Errorf("error = %v, want the onDelta error", err)
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("onDelta called %d times, want 1", got)
	}
	select {
	case <-serverSawCancel:
	case <-time.After(time.Second):
		t.Error("upstream request was not aborted within 1s")
	}
}

func TestExtraFieldsForwarded(t *testing.T) {
	upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Header.Get("Accept"), "event-stream") {
			startSSE(w)
			writeSSE(w, dataEvents(finishChunk("stop"), "[DONE]")...)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`)
	})
	client := newTestClient(t, fastOptions())
	request := testRequest()
	request.Extra = map[string]json.RawMessage{
		"temperature":    json.RawMessage(`0.5`),
		"tools":          json.RawMessage(`[{"type":"function","function":{"name":"f"}}]`),
		"model":          json.RawMessage(`"evil-model"`),
		"messages":       json.RawMessage(`[]`),
		"stream":         json.RawMessage(`false`),
		"stream_options": json.RawMessage(`{"include_usage":false,"include_obfuscation":false}`),
	}

	t.Run("StreamChat", func(t *testing.T) {
		onDelta, _ := collectDeltas()
		if _, err := client.StreamChat(context.Background(), upstream.provider(), request, onDelta); err != nil {
			t.Fatalf("StreamChat() error = %v", err)
		}

		body := upstream.lastRequest(t).Body
		want := map[string]string{
			"temperature":    `0.5`,
			"tools":          `[{"type":"function","function":{"name":"f"}}]`,
			"model":          `"upstream-model"`,
			"messages":       `[{"role":"user","content":"Hi"}]`,
			"stream":         `true`,
			"stream_options": `{"include_obfuscation":false,"include_usage":true}`,
		}
		for field, value := range want {
			if got := string(body[field]); got != value {
				t.Errorf("body %s = %s, want %s", field, got, value)
			}
		}
	})

	t.Run("Chat", func(t *testing.T) {
		if _, err := client.Chat(context.Background(), upstream.provider(), request); err != nil {
			t.Fatalf("Chat() error = %v", err)
		}

		body := upstream.lastRequest(t).Body
		if got := string(body["model"]); got != `"upstream-model"` {
			t.Errorf("body model = %s, want \"upstream-model\"", got)
		}
		if got := string(body["stream"]); got != "false" {
			t.Errorf("body stream = %s, want false", got)
		}
		if got := string(body["temperature"]); got != "0.5" {
			t.Errorf("body temperature = %s, want 0.5", got)
		}
		if _, ok := body["stream_options"]; ok {
			t.Errorf("body stream_options = %s, want it absent without streaming", body["stream_options"])
		}
	})

	if got := string(request.Extra["model"]); got != `"evil-model"` {
		t.Errorf("caller's Extra was modified: model = %s", got)
	}
}

func TestChatNonStreaming(t *testing.T) {
	upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6}}`)
	})
	client := newTestClient(t, fastOptions())

	result, err := client.Chat(context.Background(), upstream.provider(), testRequest())
	if err != nil {
		t.Fatalf("Chat() error = %v", err)
	}

	if result.Text != "Hello there" {
		t.Errorf("Text = %q, want %q", result.Text, "Hello there")
	}
	if result.FinishReason != "stop" {
		t.Errorf("FinishReason = %q, want stop", result.FinishReason)
	}
	if want := (&Usage{PromptTokens: 4, CompletionTokens: 2, TotalTokens: 6}); !reflect.DeepEqual(result.Usage, want) {
		t.Errorf("Usage = %+v, want %+v", result.Usage, want)
	}

	request := upstream.lastRequest(t)
	if request.Path != "/v1/chat/completions" {
		t.Errorf("path = %s, want /v1/chat/completions", request.Path)
	}
	if got := request.Header.Get("Authorization"); got != "Bearer "+testAPIKey {
		t.Errorf("Authorization = %q, want the bearer key", got)
	}
}

func TestChatInvalidResponses(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		wantKind ErrorKind
	}{
		{name: "invalid JSON", body: `{"choices":`, wantKind: ErrorMalformed},
		{name: "no choices", body: `{"choices":[]}`, wantKind: ErrorMalformed},
		{name: "error object with status 200", body: `{"error":{"message":"overloaded"}}`, wantKind: ErrorServer},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, tt.body)
			})
			client := newTestClient(t, fastOptions())

			_, err := client.Chat(context.Background(), upstream.provider(), testRequest())

			upstreamErr := asUpstreamError(t, err)
			if upstreamErr.Kind != tt.wantKind {
				t.Errorf("Kind = %s, want %s (error: %v)", upstreamErr.Kind, tt.wantKind, err)
			}
			if string(upstreamErr.Body) != tt.body {
				t.Errorf("Body = %q, want %q", upstreamErr.Body, tt.body)
			}
		})
	}
}

func TestStreamChatJSONResponse(t *testing.T) {
	upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		io.WriteString(w, `{"choices":[{"index":0,"message":{"content":"whole answer"},"finish_reason":"stop"}]}`)
	})
	client := newTestClient(t, fastOptions())
	onDelta, deltas := collectDeltas()

	result, err := client.StreamChat(context.Background(), upstream.provider(), testRequest(), onDelta)
	if err != nil {
		t.Fatalf("StreamChat() error = %v", err)
	}

	if got, want := deltas(), []string{"whole answer"}; !reflect.DeepEqual(got, want) {
		t.Errorf("deltas = %q, want %q", got, want)
	}
	if result.FinishReason != "stop" {
		t.Errorf("FinishReason = %q, want stop", result.FinishReason)
	}
}

func TestBaseURLJoin(t *testing.T) {
	tests := []struct {
		name      string
		suffix    string
		wantPath  string
		wantQuery string
	}{
		{name: "plain", suffix: "/v1", wantPath: "/v1/chat/completions"},
		{name: "trailing slash", suffix: "/v1/", wantPath: "/v1/chat/completions"},
		{name: "double trailing slash", suffix: "/v1//", wantPath: "/v1/chat/completions"},
		{name: "no path", suffix: "", wantPath: "/chat/completions"},
		{name: "query kept", suffix: "/openai/v1?api-version=2024-10-21", wantPath: "/openai/v1/chat/completions", wantQuery: "api-version=2024-10-21"},
	}

	upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"choices":[{"index":0,"message":{"content":"ok"},"finish_reason":"stop"}]}`)
	})
	client := newTestClient(t, fastOptions())

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			provider := upstream.provider()
			provider.BaseURL = upstream.server.URL + tt.suffix

			if _, err := client.Chat(context.Background(), provider, testRequest()); err != nil {
				t.Fatalf("Chat() error = %v", err)
			}

			request := upstream.lastRequest(t)
			if request.Path != tt.wantPath {
				t.Errorf("path = %s, want %s", request.Path, tt.wantPath)
			}
			if request.Query != tt.wantQuery {
				t.Errorf("query = %q, want %q", request.Query, tt.wantQuery)
			}
		})
	}
}

func TestInvalidBaseURL(t *testing.T) {
	client := newTestClient(t, fastOptions())
	provider := Provider{ID: "bad", BaseURL: "file:///etc/passwd", APIKey: testAPIKey}

	_, err := client.Chat(context.Background(), provider, testRequest())

	if err == nil {
		t.Fatal("Chat() error = nil, want an invalid base_url error")
	}
	if !strings.Contains(err.Error(), "base_url") {
		t.Errorf("error = %v, want it to name base_url", err)
	}
}

func TestRequestHeaders(t *testing.T) {
	upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"choices":[{"index":0,"message":{"content":"ok"},"finish_reason":"stop"}]}`)
	})
	client := newTestClient(t, fastOptions())

	t.Run("no key sends no Authorization", func(t *testing.T) {
		provider := upstream.provider()
		provider.APIKey = ""
		if _, err := client.Chat(context.Background(), provider, testRequest()); err != nil {
			t.Fatalf("Chat() error = %v", err)
		}

		if got := upstream.lastRequest(t).Header.Values("Authorization"); len(got) != 0 {
			t.Errorf("Authorization = %q, want none", got)
		}
	})

	t.Run("provider header replaces Authorization", func(t *testing.T) {
		provider := upstream.provider()
		provider.Headers = map[string]string{"Authorization": "Token custom", "api-key": "azure"}
		if _, err := client.Chat(context.Background(), provider, testRequest()); err != nil {
			t.Fatalf("Chat() error = %v", err)
		}

		header := upstream.lastRequest(t).Header
		if got := header.Get("Authorization"); got != "Token custom" {
			t.Errorf("Authorization = %q, want the provider header", got)
		}
		if got := header.Get("Api-Key"); got != "azure" {
			t.Errorf("api-key = %q, want azure", got)
		}
	})
}

// After [DONE] the client reads the end of the body, so that the next call
// reuses the HTTP/1.1 connection.
func TestStreamChatReusesConnection(t *testing.T) {
	var newConnections atomic.Int32
	server := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		startSSE(w)
		writeSSE(w, dataEvents(deltaChunk("a"), finishChunk("stop"), "[DONE]")...)
	}))
	server.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			newConnections.Add(1)
		}
	}
	server.Start()
	t.Cleanup(server.Close)
	client := newTestClient(t, fastOptions())
	provider := Provider{ID: "test", BaseURL: server.URL + "/v1"}

	for i := range 3 {
		onDelta, _ := collectDeltas()
		if _, err := client.StreamChat(context.Background(), provider, testRequest(), onDelta); err != nil {
			t.Fatalf("call %d: StreamChat() error = %v", i, err)
		}
	}

	if got := newConnections.Load(); got != 1 {
		t.Errorf("server accepted %d connections for 3 sequential calls, want 1", got)
	}
}

func TestNewClientDefaults(t *testing.T) {
	client := NewClient(ClientOptions{})

	want := ClientOptions{
		ConnectTimeout:   DefaultConnectTimeout,
		FirstByteTimeout: DefaultFirstByteTimeout,
		IdleTimeout:      DefaultIdleTimeout,
		MaxErrorBody:     DefaultMaxErrorBody,

		ImageFirstByteTimeout: DefaultImageFirstByteTimeout,
		ImageMaxResponseBytes: DefaultImageMaxResponseBytes,
		ImageDownloadMaxBytes: DefaultImageDownloadMaxBytes,
		ImageDownloadTimeout:  DefaultImageDownloadTimeout,
	}
	if client.opts != want {
		t.Errorf("options = %+v, want %+v", client.opts, want)
	}
	if client.transport.MaxIdleConnsPerHost < 200 {
		t.Errorf("MaxIdleConnsPerHost = %d, want at least 200", client.transport.MaxIdleConnsPerHost)
	}
	if client.transport.MaxConnsPerHost != 0 {
		t.Errorf("MaxConnsPerHost = %d, want 0 (unlimited)", client.transport.MaxConnsPerHost)
	}
}

func TestTransportFailureKinds(t *testing.T) {
	tests := []struct {
		name        string
		err         error
		wantKind    ErrorKind
		wantMessage string
	}{
		{
			name:        "DNS lookup",
			err:         &url.Error{Op: "Post", URL: "http://upstream.invalid/v1", Err: &net.DNSError{Err: "no such host", Name: "upstream.invalid", IsNotFound: true}},
			wantKind:    ErrorConnect,
			wantMessage: "DNS lookup failed",
		},
		{
			name:        "dial timeout",
			err:         &url.Error{Op: "Post", URL: "http://10.0.0.1/v1", Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}},
			wantKind:    ErrorTimeout,
			wantMessage: "connect timed out",
		},
		{
			name:        "connection refused",
			err:         &url.Error{Op: "Post", URL: "http://127.0.0.1:1/v1", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}},
			wantKind:    ErrorConnect,
			wantMessage: "connection refused",
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := &call{client: NewClient(ClientOptions{}), ctx: context.Background(), reqCtx: context.Background()}

			upstreamErr := asUpstreamError(t, cl.transportFailure(tt.err))

			if upstreamErr.Kind != tt.wantKind {
				t.Errorf("Kind = %s, want %s", upstreamErr.Kind, tt.wantKind)
			}
			if !strings.Contains(upstreamErr.Message, tt.wantMessage) {
				t.Errorf("Message = %q, want it to contain %q", upstreamErr.Message, tt.wantMessage)
			}
		})
	}
}
