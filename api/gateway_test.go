package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/aihigress/aihigress/api"
	"github.com/aihigress/aihigress/internal/auth"
)

func TestGatewayModelsList(t *testing.T) {
	env := newGatewayEnv(t)
	all := []string{"all-429", "all-500", "all-cut", "bad-request", "cooldown", "cut-after-first", "failover", "fixed-16", "image-only", "keyed", "mock-gpt", "mock-gpt-mini", "paced", "unavailable"}

	tests := []struct {
		name          string
		allowedModels []string
		want          []string
	}{
		{"key for every model", nil, all},
		{"key for two models", []string{"mock-gpt", "paced"}, []string{"mock-gpt", "paced"}},
		{"key for no model", []string{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := env.client(env.newKey(tt.allowedModels))
			var resp *http.Response
			page, err := client.Models.List(context.Background(), option.WithResponseInto(&resp))
			if err != nil {
				t.Fatal(err)
			}

			var ids []string
			for _, m := range page.Data {
				ids = append(ids, m.ID)
				if m.Object != "model" || m.OwnedBy != "aihigress" {
					t.Errorf("model %s: object %q, owned_by %q; want model, aihigress", m.ID, m.Object, m.OwnedBy)
				}
			}
			if !slices.Equal(ids, tt.want) {
				t.Errorf("model ids = %v, want %v", ids, tt.want)
			}
			if page.Object != "list" {
				t.Errorf("object = %q, want list", page.Object)
			}
		})
	}

	t.Run("access token lists every model with capabilities", func(t *testing.T) {
		tokens, err := env.issuer.IssuePair(env.userID, auth.NewSessionID())
		if err != nil {
			t.Fatal(err)
		}
		if err := env.sessions.Create(context.Background(), env.userID, tokens.SessionID, tokens.RefreshID, tokens.RefreshExpiresAt); err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodGet, env.baseURL+"/v1/models", nil)
		req.Header.Set("Authorization", "Bearer "+tokens.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()

		var list struct {
			Object string `json:"object"`
			Data   []struct {
				ID           string   `json:"id"`
				Object       string   `json:"object"`
				Created      *int64   `json:"created"`
				OwnedBy      string   `json:"owned_by"`
				Capabilities []string `json:"capabilities"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range list.Data {
			ids = append(ids, m.ID)
			if m.Created == nil {
				t.Errorf("model %s has no created field", m.ID)
			}
		}
		if !slices.Equal(ids, all) {
			t.Errorf("model ids = %v, want %v", ids, all)
		}
		image := list.Data[slices.Index(ids, "image-only")]
		if !slices.Equal(image.Capabilities, []string{"image_generation"}) {
			t.Errorf("image-only capabilities = %v, want [image_generation]", image.Capabilities)
		}
	})
}

func TestGatewayChatNonStreaming(t *testing.T) {
	env := newGatewayEnv(t)
	client := env.client(env.newKey(nil))
	ctx := context.Background()

	direct := env.directClient("main")
	want, err := direct.Chat.Completions.New(ctx, chatParams("mock-gpt", "hello gateway"))
	if err != nil {
		t.Fatal(err)
	}

	var resp *http.Response
	params := chatParams("mock-gpt", "hello gateway")
	params.Temperature = openai.Float(0.5)
	got, err := client.Chat.Completions.New(ctx, params, option.WithResponseInto(&resp), option.WithHeader("X-Request-Id", "req-nonstream-1"))
	if err != nil {
		t.Fatal(err)
	}

	if got.Choices[0].Message.Content != want.Choices[0].Message.Content {
		t.Errorf("content = %q, want the mock's %q", got.Choices[0].Message.Content, want.Choices[0].Message.Content)
	}
	if got.Model != "mock-gpt" {
		t.Errorf("model = %q, want the upstream model mock-gpt", got.Model)
	}
	if got.Usage.PromptTokens != 2 || got.Usage.CompletionTokens != want.Usage.CompletionTokens {
		t.Errorf("usage = %d/%d, want 2/%d", got.Usage.PromptTokens, got.Usage.CompletionTokens, want.Usage.CompletionTokens)
	}
	if id := resp.Header.Get("X-Request-Id"); id != "req-nonstream-1" {
		t.Errorf("X-Request-Id = %q, want req-nonstream-1", id)
	}
	checkOverheadHeader(t, resp)

	row := env.requestLogRow("req-nonstream-1")
	if row.StatusCode != 200 || row.LogicalModel != "mock-gpt" || row.ProviderID != "main" || row.UpstreamModel != "mock-gpt" {
		t.Errorf("log row status/model/provider/upstream = %d/%s/%s/%s, want 200/mock-gpt/main/mock-gpt",
			row.StatusCode, row.LogicalModel, row.ProviderID, row.UpstreamModel)
	}
	if row.PromptTokens != 2 || int64(row.CompletionTokens) != want.Usage.CompletionTokens {
		t.Errorf("log row tokens = %d/%d, want 2/%d", row.PromptTokens, row.CompletionTokens, want.Usage.CompletionTokens)
	}
	if row.Stream || row.ErrorCode != "" || row.Method != "POST" || row.Path != "/v1/chat/completions" {
		t.Errorf("log row stream/error/method/path = %v/%q/%s/%s", row.Stream, row.ErrorCode, row.Method, row.Path)
	}
	if row.APIKeyID == nil || row.UserID == nil || *row.UserID != env.userID {
		t.Errorf("log row key/user = %v/%v, want both set, user %s", row.APIKeyID, row.UserID, env.userID)
	}
	if row.LatencyMS <= 0 || row.UpstreamMS <= 0 || row.UpstreamMS > row.LatencyMS {
		t.Errorf("log row latency %.3f ms, upstream %.3f ms; want 0 < upstream <= latency", row.LatencyMS, row.UpstreamMS)
	}
}

func TestGatewayForwardsKeyAndHeaders(t *testing.T) {
	env := newGatewayEnv(t)
	client := env.client(env.newKey(nil))

	// The "keyed" mock rejects requests without its key, and the "paced"
	// provider's extra header X-Mock-Tokens fixes the reply length.
	keyed, err := client.Chat.Completions.New(context.Background(), chatParams("keyed", "hi"))
	if err != nil {
		t.Fatalf("keyed upstream: %v", err)
	}
	if keyed.Model != "keyed-model" {
		t.Errorf("keyed model = %q, want keyed-model", keyed.Model)
	}

	paced, err := client.Chat.Completions.New(context.Background(), chatParams("paced", "hi"))
	if err != nil {
		t.Fatal(err)
	}
	if paced.Usage.CompletionTokens != 8 {
		t.Errorf("paced completion tokens = %d, want 8 from the provider header X-Mock-Tokens", paced.Usage.CompletionTokens)
	}
}

func TestGatewayChatStreaming(t *testing.T) {
	env := newGatewayEnv(t)
	client := env.client(env.newKey(nil))
	ctx := context.Background()

	direct := env.directClient("main")
	want, err := direct.Chat.Completions.New(ctx, chatParams("mock-gpt", "stream to me please"))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name         string
		includeUsage bool
	}{
		{"with usage", true},
		{"without usage", false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			params := chatParams("mock-gpt", "stream to me please")
			if tt.includeUsage {
				params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
			}
			requestID := "req-stream-" + strconv.Itoa(i)
			var resp *http.Response
			stream := client.Chat.Completions.NewStreaming(ctx, params, option.WithResponseInto(&resp), option.WithHeader("X-Request-Id", requestID))
			acc := openai.ChatCompletionAccumulator{}
			chunks, usageChunks := 0, 0
			for stream.Next() {
				chunk := stream.Current()
				acc.AddChunk(chunk)
				chunks++
				if len(chunk.Choices) == 0 && chunk.Usage.TotalTokens > 0 {
					usageChunks++
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}

			if got := acc.Choices[0].Message.Content; got != want.Choices[0].Message.Content {
				t.Errorf("content = %q, want the mock's %q", got, want.Choices[0].Message.Content)
			}
			if chunks < int(want.Usage.CompletionTokens) {
				t.Errorf("got %d chunks, want at least one per token (%d)", chunks, want.Usage.CompletionTokens)
			}
			wantUsageChunks := 0
			if tt.includeUsage {
				wantUsageChunks = 1
				if acc.Usage.CompletionTokens != want.Usage.CompletionTokens || acc.Usage.PromptTokens != 4 {
					t.Errorf("usage = %d/%d, want 4/%d", acc.Usage.PromptTokens, acc.Usage.CompletionTokens, want.Usage.CompletionTokens)
				}
			}
			if usageChunks != wantUsageChunks {
				t.Errorf("usage chunks = %d, want %d", usageChunks, wantUsageChunks)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
				t.Errorf("Content-Type = %q, want text/event-stream", ct)
			}
			checkOverheadHeader(t, resp)

			row := env.requestLogRow(requestID)
			if !row.Stream || row.StatusCode != 200 || row.ErrorCode != "" {
				t.Errorf("log row stream/status/error = %v/%d/%q, want true/200/\"\"", row.Stream, row.StatusCode, row.ErrorCode)
			}
			if row.PromptTokens != 4 || int64(row.CompletionTokens) != want.Usage.CompletionTokens {
				t.Errorf("log row tokens = %d/%d, want 4/%d", row.PromptTokens, row.CompletionTokens, want.Usage.CompletionTokens)
			}
		})
	}
}

// TestGatewayStreamRaw reads the SSE bytes: the stream ends with [DONE], and
// chunks arrive as the upstream paces them instead of all at the end.
func TestGatewayStreamRaw(t *testing.T) {
	env := newGatewayEnv(t)
	key := env.newKey(nil)

	body := `{"model":"paced","stream":true,"messages":[{"role":"user","content":"pace"}]}`
	req, _ := http.NewRequest(http.MethodPost, env.baseURL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status = %d", resp.StatusCode)
	}

	var arrivals []time.Time
	var last string
	scanner := bufio.NewScanner(resp.Body)
	for scanner.Scan() {
		line := scanner.Text()
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			arrivals = append(arrivals, time.Now())
			last = data
			if strings.Contains(data, `"usage":{`) {
				t.Errorf("usage chunk relayed to a client that did not ask for it: %s", data)
			}
		}
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}

	if last != "[DONE]" {
		t.Errorf("last event = %q, want [DONE]", last)
	}
	// Eight tokens at 40 per second take 175 ms from the first content
	// chunk to the last one.
	if len(arrivals) < 10 {
		t.Fatalf("got %d events, want at least 10", len(arrivals))
	}
	if spread := arrivals[len(arrivals)-2].Sub(arrivals[1]); spread < 100*time.Millisecond {
		t.Errorf("content chunks arrived within %s, want them spread over about 175 ms as the upstream paced them", spread)
	}
}

func TestGatewayStreamClientDisconnect(t *testing.T) {
	env := newGatewayEnv(t)
	key := env.newKey(nil)

	// The paced upstream takes about 200 ms for its 8 tokens, so the client
	// leaves in the middle of the stream.
	body := `{"model":"paced","stream":true,"messages":[{"role":"user","content":"leave early"}]}`
	req, _ := http.NewRequest(http.MethodPost, env.baseURL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("X-Request-Id", "req-client-gone")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "data: ") {
		t.Fatalf("first line = %q, %v; want a data line", line, err)
	}
	resp.Body.Close()

	row := env.requestLogRow("req-client-gone")
	if !row.Stream || row.ErrorCode != "client_closed_request" {
		t.Errorf("log row stream/error = %v/%q, want true/client_closed_request", row.Stream, row.ErrorCode)
	}
}

func TestGatewayErrors(t *testing.T) {
	env := newGatewayEnv(t)
	key := env.newKey([]string{"mock-gpt", "bad-request", "image-only", "all-429", "all-500", "unavailable", "nonexistent"})

	tests := []struct {
		name       string
		credential string
		model      string
		wantStatus int
		wantCode   string
		wantType   string
		wantParam  string
		wantInMsg  string
	}{
		{"invalid key", "ahk-not-a-real-key", "mock-gpt", 401, "invalid_api_key", "authentication_error", "", "invalid"},
		{"model not allowed", key, "mock-gpt-mini", 403, "model_not_allowed", "permission_error", "model", "may not use"},
		{"unknown model", key, "nonexistent", 404, "model_not_found", "not_found_error", "model", "does not exist"},
		{"model without chat", key, "image-only", 400, "model_does_not_support_chat", "invalid_request_error", "model", "chat"},
		{"upstream 400 as it came", key, "bad-request", 400, "", "invalid_request_error", "", "injected by the mock upstream"},
		{"every upstream rate limited", key, "all-429", 429, "upstream_rate_limited", "rate_limit_error", "", "rate limited"},
		{"every upstream failed", key, "all-500", 502, "upstream_error", "server_error", "", "upstream_error (HTTP 500)"},
		{"every provider disabled", key, "unavailable", 503, "model_unavailable", "server_error", "model", "no enabled provider"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requestID := "req-error-" + strings.ReplaceAll(tt.name, " ", "-")
			client := env.client(tt.credential)
			_, err := client.Chat.Completions.New(context.Background(), chatParams(tt.model, "hi"),
				option.WithHeader("X-Request-Id", requestID))

			var apiErr *openai.Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("error = %v, want an *openai.Error", err)
			}
			if apiErr.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", apiErr.StatusCode, tt.wantStatus)
			}
			if apiErr.Code != tt.wantCode {
				t.Errorf("code = %q, want %q", apiErr.Code, tt.wantCode)
			}
			if apiErr.Type != tt.wantType {
				t.Errorf("type = %q, want %q", apiErr.Type, tt.wantType)
			}
			if apiErr.Param != tt.wantParam {
				t.Errorf("param = %q, want %q", apiErr.Param, tt.wantParam)
			}
			if !strings.Contains(apiErr.Message, tt.wantInMsg) {
				t.Errorf("message = %q, want it to contain %q", apiErr.Message, tt.wantInMsg)
			}
			if apiErr.Response.Header.Get("X-Request-Id") != requestID {
				t.Errorf("X-Request-Id = %q, want %q", apiErr.Response.Header.Get("X-Request-Id"), requestID)
			}
			checkOverheadHeader(t, apiErr.Response)
			if tt.wantStatus == 429 && apiErr.Response.Header.Get("Retry-After") != "1" {
				t.Errorf("Retry-After = %q, want 1 as the mock upstream sent", apiErr.Response.Header.Get("Retry-After"))
			}

			row := env.requestLogRow(requestID)
			if row.StatusCode != tt.wantStatus {
				t.Errorf("log row status = %d, want %d", row.StatusCode, tt.wantStatus)
			}
			wantLogCode := tt.wantCode
			if tt.name == "upstream 400 as it came" {
				wantLogCode = "upstream_bad_request"
			}
			if row.ErrorCode != wantLogCode {
				t.Errorf("log row error code = %q, want %q", row.ErrorCode, wantLogCode)
			}
			if (row.APIKeyID == nil) != (tt.credential != key) {
				t.Errorf("log row api_key_id = %v, want it set only for a valid key", row.APIKeyID)
			}
		})
	}
}

func TestGatewayFailover(t *testing.T) {
	failing := []string{"rate-limited", "broken", "wrong-key", "cut", "slow"}

	for _, stream := range []bool{false, true} {
		t.Run("stream="+strconv.FormatBool(stream), func(t *testing.T) {
			env := newGatewayEnv(t)
			client := env.client(env.newKey(nil))
			ctx := context.Background()
			requestID := "req-failover-" + strconv.FormatBool(stream)

			var model string
			if stream {
				s := client.Chat.Completions.NewStreaming(ctx, chatParams("failover", "who answers"), option.WithHeader("X-Request-Id", requestID))
				acc := openai.ChatCompletionAccumulator{}
				for s.Next() {
					acc.AddChunk(s.Current())
				}
				if err := s.Err(); err != nil {
					t.Fatal(err)
				}
				model = acc.Model
			} else {
				got, err := client.Chat.Completions.New(ctx, chatParams("failover", "who answers"), option.WithHeader("X-Request-Id", requestID))
				if err != nil {
					t.Fatal(err)
				}
				model = got.Model
			}

			if model != "good-model" {
				t.Errorf("answering upstream model = %q, want good-model", model)
			}
			for _, provider := range append(failing, "good") {
				if n := env.chatCount(provider); n != 1 {
					t.Errorf("provider %s got %d requests, want 1", provider, n)
				}
			}

			row := env.requestLogRow(requestID)
			if row.ProviderID != "good" || row.UpstreamModel != "good-model" || row.StatusCode != 200 {
				t.Errorf("log row provider/upstream/status = %s/%s/%d, want good/good-model/200", row.ProviderID, row.UpstreamModel, row.StatusCode)
			}
			// The slow candidate alone holds the request for its 1 s
			// timeout, which is upstream time.
			if row.UpstreamMS < 1000 || row.LatencyMS < row.UpstreamMS {
				t.Errorf("log row upstream %.1f ms, latency %.1f ms; want upstream >= 1000 and <= latency", row.UpstreamMS, row.LatencyMS)
			}
		})
	}
}

func TestGatewayStreamCutAfterFirstChunk(t *testing.T) {
	env := newGatewayEnv(t)
	client := env.client(env.newKey(nil))

	s := client.Chat.Completions.NewStreaming(context.Background(), chatParams("cut-after-first", "cut me"), option.WithHeader("X-Request-Id", "req-cut"))
	var content strings.Builder
	for s.Next() {
		if chunk := s.Current(); len(chunk.Choices) > 0 {
			content.WriteString(chunk.Choices[0].Delta.Content)
		}
	}
	err := s.Err()
	if err == nil {
		t.Fatal("stream ended without an error, want the relayed error event")
	}
	if !strings.Contains(err.Error(), "stream_cut") {
		t.Errorf("stream error = %v, want it to name stream_cut", err)
	}
	// The mock sends three tokens before it cuts the connection.
	if got := strings.Fields(content.String()); len(got) != 3 {
		t.Errorf("content before the cut = %q, want 3 tokens", content.String())
	}
	if n := env.chatCount("main"); n != 1 {
		t.Errorf("upstream got %d requests, want 1: no failover after the first chunk", n)
	}

	row := env.requestLogRow("req-cut")
	if row.StatusCode != 200 || row.ErrorCode != "stream_cut" || !row.Stream {
		t.Errorf("log row status/error/stream = %d/%q/%v, want 200/stream_cut/true", row.StatusCode, row.ErrorCode, row.Stream)
	}
}

func TestGatewayStreamAllCandidatesCut(t *testing.T) {
	env := newGatewayEnv(t)
	client := env.client(env.newKey(nil))

	// The stream's headers leave before the first event, so a stream that
	// every candidate cuts before its first event ends with an error event.
	s := client.Chat.Completions.NewStreaming(context.Background(), chatParams("all-cut", "nothing comes"), option.WithHeader("X-Request-Id", "req-all-cut"))
	chunks := 0
	for s.Next() {
		chunks++
	}
	err := s.Err()
	if err == nil {
		t.Fatal("stream ended without an error, want the error event")
	}
	if !strings.Contains(err.Error(), "upstream_error") {
		t.Errorf("stream error = %v, want it to name upstream_error", err)
	}
	if chunks != 0 {
		t.Errorf("got %d chunks, want none", chunks)
	}

	row := env.requestLogRow("req-all-cut")
	if row.StatusCode != 200 || row.ErrorCode != "upstream_error" {
		t.Errorf("log row status/error = %d/%q, want 200/upstream_error", row.StatusCode, row.ErrorCode)
	}

	// Without a stream the same failure is a 502.
	_, err = client.Chat.Completions.New(context.Background(), chatParams("all-cut", "nothing comes"))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadGateway {
		t.Errorf("non-streaming error = %v, want HTTP 502", err)
	}
}

func TestGatewayRejectsBadBodies(t *testing.T) {
	env := newGatewayEnv(t)
	key := env.newKey(nil)

	tests := []struct {
		name       string
		body       string
		background string
		wantCode   string
	}{
		{"not JSON", `{"model":`, "", "invalid_json"},
		{"no messages", `{"model":"mock-gpt"}`, "", "invalid_field"},
		{"empty messages", `{"model":"mock-gpt","messages":[ ]}`, "", "invalid_field"},
		{"messages not an array", `{"model":"mock-gpt","messages":{"role":"user"}}`, "", "invalid_field"},
		{"messages null", `{"model":"mock-gpt","messages":null}`, "", "invalid_field"},
		{"no model", `{"messages":[{"role":"user","content":"hi"}]}`, "", "missing_field"},
		{"stream of wrong type", `{"model":"mock-gpt","stream":"yes","messages":[{"role":"user","content":"hi"}]}`, "", "invalid_field"},
		{"background header maybe", `{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}]}`, "maybe", "invalid_header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, env.baseURL+"/v1/chat/completions", strings.NewReader(tt.body))
			req.Header.Set("Authorization", "Bearer "+key)
			if tt.background != "" {
				req.Header.Set("X-Aihigress-Background", tt.background)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			data, _ := io.ReadAll(resp.Body)

			if resp.StatusCode != 400 {
				t.Errorf("status = %d, want 400; body %s", resp.StatusCode, data)
			}
			var body struct {
				Error struct {
					Code string `json:"code"`
				} `json:"error"`
			}
			if err := json.Unmarshal(data, &body); err != nil || body.Error.Code != tt.wantCode {
				t.Errorf("body = %s, want error code %s", data, tt.wantCode)
			}
			checkOverheadHeader(t, resp)
			if n := env.chatCount("main"); n != 0 {
				t.Errorf("upstream got %d requests, want 0", n)
			}
		})
	}
}

// checkOverheadHeader checks that resp carries a non-negative overhead in
// milliseconds.
func checkOverheadHeader(t *testing.T, resp *http.Response) {
	t.Helper()
	value := resp.Header.Get(api.OverheadHeader)
	overhead, err := strconv.ParseFloat(value, 64)
	if err != nil || overhead < 0 {
		t.Errorf("%s = %q, want a non-negative number of milliseconds", api.OverheadHeader, value)
	}
}

func TestGatewaySkipsCooledCandidates(t *testing.T) {
	env := newGatewayEnv(t)
	client := env.client(env.newKey(nil))
	for i := range 2 {
		got, err := client.Chat.Completions.New(context.Background(), chatParams("cooldown", "again"))
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		if got.Model != "good-model" {
			t.Errorf("request %d answered by %q, want good-model", i+1, got.Model)
		}
	}

	// A 429 cools its candidate down for the Retry-After of 1 s, and a 401
	// takes the provider key out of use, so the second request skips both.
	for _, provider := range []string{"rate-limited", "wrong-key"} {
		if n := env.chatCount(provider); n != 1 {
			t.Errorf("provider %s got %d requests, want 1: the second request should skip it", provider, n)
		}
	}
	if n := env.chatCount("good"); n != 2 {
		t.Errorf("provider good got %d requests, want 2", n)
	}
}
