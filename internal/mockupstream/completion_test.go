package mockupstream

import (
	"bytes"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestStreamFormat(t *testing.T) {
	tests := []struct {
		name         string
		includeUsage bool
	}{
		{name: "without usage chunk"},
		{name: "with usage chunk", includeUsage: true},
	}

	srv := startServer(t, Options{})
	client := newClient(t)

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := chatBody("mock-gpt", "count to five", map[string]any{
				"stream":         true,
				"stream_options": map[string]any{"include_usage": tt.includeUsage},
			})
			resp := mustPostChat(t, client, srv, body, map[string]string{"X-Mock-Tokens": "5"})

			if got := resp.Header.Get("Content-Type"); got != "text/event-stream" {
				t.Errorf("Content-Type = %q, want text/event-stream", got)
			}

			summary := readStream(t, resp)

			wantChunks := 1 + 5 + 1 // role, content, finish
			if tt.includeUsage {
				wantChunks++
			}
			if len(summary.chunks) != wantChunks {
				t.Fatalf("got %d chunks, want %d", len(summary.chunks), wantChunks)
			}

			first := summary.chunks[0]
			for i, chunk := range summary.chunks {
				if chunk.ID != first.ID || !strings.HasPrefix(chunk.ID, "chatcmpl-") {
					t.Errorf("chunk %d: id = %q, want %q with prefix chatcmpl-", i, chunk.ID, first.ID)
				}
				if chunk.Object != "chat.completion.chunk" {
					t.Errorf("chunk %d: object = %q, want chat.completion.chunk", i, chunk.Object)
				}
				if chunk.Model != "mock-gpt" {
					t.Errorf("chunk %d: model = %q, want mock-gpt", i, chunk.Model)
				}
				if chunk.Created <= 0 {
					t.Errorf("chunk %d: created = %d, want a positive timestamp", i, chunk.Created)
				}
			}

			role := first.Choices[0].Delta.Role
			if role == nil || *role != "assistant" {
				t.Errorf("first chunk role = %v, want assistant", role)
			}

			for i, chunk := range summary.chunks[1:6] {
				choice := chunk.Choices[0]
				if choice.Delta.Role != nil {
					t.Errorf("content chunk %d has role %q, want none", i, *choice.Delta.Role)
				}
				if choice.FinishReason != nil {
					t.Errorf("content chunk %d has finish_reason %q, want null", i, *choice.FinishReason)
				}
				content := choice.Delta.Content
				if content == nil || len(strings.Fields(*content)) != 1 || !strings.HasSuffix(*content, " ") {
					t.Errorf("content chunk %d content = %v, want one word and a space", i, content)
				}
			}

			finish := summary.chunks[6]
			if len(finish.Choices) != 1 || finish.Choices[0].FinishReason == nil || *finish.Choices[0].FinishReason != "stop" {
				t.Errorf("finish chunk choices = %+v, want one choice with finish_reason stop", finish.Choices)
			}
			if finish.Choices[0].Delta.Content != nil {
				t.Errorf("finish chunk delta content = %q, want none", *finish.Choices[0].Delta.Content)
			}

			if !tt.includeUsage {
				if summary.usage != nil {
					t.Errorf("usage = %+v, want none without include_usage", summary.usage)
				}
				return
			}

			usageChunk := summary.chunks[7]
			if len(usageChunk.Choices) != 0 {
				t.Errorf("usage chunk has %d choices, want 0", len(usageChunk.Choices))
			}
			wantUsage := usage{PromptTokens: 3, CompletionTokens: 5, TotalTokens: 8}
			if usageChunk.Usage == nil || *usageChunk.Usage != wantUsage {
				t.Errorf("usage = %+v, want %+v", usageChunk.Usage, wantUsage)
			}
		})
	}
}

func TestStreamNullUsageWithIncludeUsage(t *testing.T) {
	srv := startServer(t, Options{})
	client := newClient(t)

	for _, includeUsage := range []bool{false, true} {
		body := chatBody("mock-gpt", "hi", map[string]any{
			"stream":         true,
			"stream_options": map[string]any{"include_usage": includeUsage},
		})
		resp := mustPostChat(t, client, srv, body, map[string]string{"X-Mock-Tokens": "2"})

		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("read stream: %v", err)
		}

		hasNullUsage := bytes.Contains(raw, []byte(`"usage":null`))
		if hasNullUsage != includeUsage {
			t.Errorf("include_usage %v: stream contains \"usage\":null = %v, want %v", includeUsage, hasNullUsage, includeUsage)
		}
	}
}

func TestNonStreamingCompletion(t *testing.T) {
	srv := startServer(t, Options{})
	client := newClient(t)

	resp := mustPostChat(t, client, srv, chatBody("mock-gpt-mini", "one two three four", nil), map[string]string{"X-Mock-Tokens": "12"})
	if got := resp.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}

	completion := readCompletion(t, resp)

	if completion.Object != "chat.completion" {
		t.Errorf("object = %q, want chat.completion", completion.Object)
	}
	if completion.Model != "mock-gpt-mini" {
		t.Errorf("model = %q, want mock-gpt-mini", completion.Model)
	}
	if !strings.HasPrefix(completion.ID, "chatcmpl-") {
		t.Errorf("id = %q, want prefix chatcmpl-", completion.ID)
	}

	choice := completion.Choices[0]
	if choice.Message.Role != "assistant" {
		t.Errorf("role = %q, want assistant", choice.Message.Role)
	}
	if choice.FinishReason != "stop" {
		t.Errorf("finish_reason = %q, want stop", choice.FinishReason)
	}
	if got := len(strings.Fields(choice.Message.Content)); got != 12 {
		t.Errorf("content has %d words, want 12: %q", got, choice.Message.Content)
	}

	wantUsage := usage{PromptTokens: 4, CompletionTokens: 12, TotalTokens: 16}
	if completion.Usage != wantUsage {
		t.Errorf("usage = %+v, want %+v", completion.Usage, wantUsage)
	}
}

func TestReplyDeterminism(t *testing.T) {
	srv := startServer(t, Options{})
	client := newClient(t)

	streamText := func(userText string) string {
		body := chatBody("mock-gpt", userText, map[string]any{"stream": true})
		return readStream(t, mustPostChat(t, client, srv, body, nil)).text
	}

	first := streamText("tell me about the sea")
	second := streamText("tell me about the sea")
	other := streamText("tell me about the desert")

	if first != second {
		t.Errorf("identical requests got different replies:\n%q\n%q", first, second)
	}
	if first == other {
		t.Errorf("different requests got the same reply %q", first)
	}
	if want := "Mock reply to: tell me about the sea "; !strings.HasPrefix(first, want) {
		t.Errorf("reply %q does not start with %q", first, want)
	}

	completion := readCompletion(t, mustPostChat(t, client, srv, chatBody("mock-gpt", "tell me about the sea", nil), nil))
	if got := completion.Choices[0].Message.Content; got != first {
		t.Errorf("non-streaming reply differs from streaming reply:\n%q\n%q", got, first)
	}
}

func TestReplyQuotesLastUserMessage(t *testing.T) {
	srv := startServer(t, Options{})
	client := newClient(t)

	body, err := json.Marshal(map[string]any{
		"model":  `model "quoted"`,
		"stream": true,
		"messages": []map[string]any{
			{"role": "system", "content": "be brief"},
			{"role": "user", "content": "first question"},
			{"role": "assistant", "content": nil},
			{"role": "user", "content": []map[string]any{
				{"type": "text", "text": "say \"hi\"\\ back\x01 ünï 😀 <b>"},
				{"type": "image_url", "image_url": map[string]any{"url": "http://example.invalid/x.png"}},
			}},
		},
	})
	if err != nil {
		t.Fatalf("encode body: %v", err)
	}

	summary := readStream(t, mustPostChat(t, client, srv, body, map[string]string{"X-Mock-Tokens": "10"}))

	want := "Mock reply to: say \"hi\"\\ back\x01 ünï 😀 <b> "
	if !strings.HasPrefix(summary.text, want) {
		t.Errorf("reply %q does not start with %q", summary.text, want)
	}
	if got := summary.chunks[0].Model; got != `model "quoted"` {
		t.Errorf("model = %q, want %q", got, `model "quoted"`)
	}
}

func TestReplyTruncatesLongMessage(t *testing.T) {
	srv := startServer(t, Options{})
	client := newClient(t)

	userText := "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 " + strings.Repeat("x", 100)
	summary := readStream(t, mustPostChat(t, client, srv, chatBody("mock-gpt", userText, map[string]any{"stream": true}), nil))

	want := "Mock reply to: w1 w2 w3 w4 w5 w6 w7 w8 ... "
	if !strings.HasPrefix(summary.text, want) {
		t.Errorf("reply %q does not start with %q", summary.text, want)
	}
	if strings.Contains(summary.text, "w9") {
		t.Errorf("reply %q quotes more than %d words", summary.text, maxQuotedWords)
	}
}

func TestTokenCount(t *testing.T) {
	tests := []struct {
		name       string
		extra      map[string]any
		headers    map[string]string
		wantTokens int // negative means the default range
		wantFinish string
	}{
		{name: "X-Mock-Tokens 0", headers: map[string]string{"X-Mock-Tokens": "0"}, wantTokens: 0, wantFinish: "stop"},
		{name: "X-Mock-Tokens 1", headers: map[string]string{"X-Mock-Tokens": "1"}, wantTokens: 1, wantFinish: "stop"},
		{name: "X-Mock-Tokens 7", headers: map[string]string{"X-Mock-Tokens": "7"}, wantTokens: 7, wantFinish: "stop"},
		{name: "X-Mock-Tokens 250", headers: map[string]string{"X-Mock-Tokens": "250"}, wantTokens: 250, wantFinish: "stop"},
		{name: "max_tokens caps reply", extra: map[string]any{"max_tokens": 5}, wantTokens: 5, wantFinish: "length"},
		{name: "max_completion_tokens caps reply", extra: map[string]any{"max_completion_tokens": 4}, wantTokens: 4, wantFinish: "length"},
		{name: "max_completion_tokens wins over max_tokens", extra: map[string]any{"max_tokens": 9, "max_completion_tokens": 3}, wantTokens: 3, wantFinish: "length"},
		{name: "large max_tokens keeps default", extra: map[string]any{"max_tokens": 1000}, wantTokens: -1, wantFinish: "stop"},
		{name: "X-Mock-Tokens wins over max_tokens", extra: map[string]any{"max_tokens": 5}, headers: map[string]string{"X-Mock-Tokens": "50"}, wantTokens: 50, wantFinish: "stop"},
		{name: "default length", wantTokens: -1, wantFinish: "stop"},
	}

	srv := startServer(t, Options{})
	client := newClient(t)

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			extra := map[string]any{"stream": true, "stream_options": map[string]any{"include_usage": true}}
			for key, value := range tt.extra {
				extra[key] = value
			}

			summary := readStream(t, mustPostChat(t, client, srv, chatBody("mock-gpt", "hello", extra), tt.headers))

			if tt.wantTokens >= 0 && summary.contentChunks != tt.wantTokens {
				t.Errorf("got %d content chunks, want %d", summary.contentChunks, tt.wantTokens)
			}
			if tt.wantTokens < 0 && (summary.contentChunks < minDefaultTokens || summary.contentChunks > maxDefaultTokens) {
				t.Errorf("got %d content chunks, want %d to %d", summary.contentChunks, minDefaultTokens, maxDefaultTokens)
			}
			if summary.usage == nil || summary.usage.CompletionTokens != summary.contentChunks {
				t.Errorf("usage = %+v, want completion_tokens %d", summary.usage, summary.contentChunks)
			}
			if summary.finishReason != tt.wantFinish {
				t.Errorf("finish_reason = %q, want %q", summary.finishReason, tt.wantFinish)
			}
		})
	}
}

func TestDefaultLengthVariesWithPrompt(t *testing.T) {
	srv := startServer(t, Options{})
	client := newClient(t)

	lengths := make(map[int]bool)
	for i := range 12 {
		body := chatBody("mock-gpt", "prompt number "+strconv.Itoa(i), nil)
		completion := readCompletion(t, mustPostChat(t, client, srv, body, nil))

		n := completion.Usage.CompletionTokens
		if n < minDefaultTokens || n > maxDefaultTokens {
			t.Errorf("prompt %d: completion_tokens = %d, want %d to %d", i, n, minDefaultTokens, maxDefaultTokens)
		}
		lengths[n] = true
	}

	if len(lengths) < 2 {
		t.Errorf("12 prompts all got %v tokens, want the length to depend on the prompt", lengths)
	}
}

func TestPacing(t *testing.T) {
	tests := []struct {
		name          string
		opts          Options
		headers       map[string]string
		stream        bool
		minFirstToken time.Duration
		minTotal      time.Duration
		maxTotal      time.Duration
	}{
		{
			name:          "TTFT option",
			opts:          Options{TimeToFirstToken: 150 * time.Millisecond},
			headers:       map[string]string{"X-Mock-Tokens": "3"},
			stream:        true,
			minFirstToken: 150 * time.Millisecond,
			minTotal:      150 * time.Millisecond,
			maxTotal:      2 * time.Second,
		},
		{
			name:          "TTFT header overrides option",
			opts:          Options{TimeToFirstToken: 10 * time.Second},
			headers:       map[string]string{"X-Mock-Tokens": "3", "X-Mock-TTFT-Ms": "120"},
			stream:        true,
			minFirstToken: 120 * time.Millisecond,
			minTotal:      120 * time.Millisecond,
			maxTotal:      2 * time.Second,
		},
		{
			name:     "TPS option",
			opts:     Options{TokensPerSecond: 50},
			headers:  map[string]string{"X-Mock-Tokens": "11"},
			stream:   true,
			minTotal: 200 * time.Millisecond, // 10 intervals of 20ms
			maxTotal: 2 * time.Second,
		},
		{
			name:     "TPS header overrides option",
			opts:     Options{TokensPerSecond: 1},
			headers:  map[string]string{"X-Mock-Tokens": "11", "X-Mock-TPS": "0"},
			stream:   true,
			maxTotal: 2 * time.Second,
		},
		{
			name:     "non-streaming waits for TTFT and tokens",
			opts:     Options{TimeToFirstToken: 100 * time.Millisecond, TokensPerSecond: 100},
			headers:  map[string]string{"X-Mock-Tokens": "11"},
			minTotal: 200 * time.Millisecond, // 100ms TTFT and 10 intervals of 10ms
			maxTotal: 2 * time.Second,
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, tt.opts)
			client := newClient(t)

			start := time.Now()
			resp := mustPostChat(t, client, srv, chatBody("mock-gpt", "hi", map[string]any{"stream": tt.stream}), tt.headers)

			if tt.stream {
				payloads, err := readEventsUntilContent(resp.Body)
				if err != nil {
					t.Fatalf("read first content chunk: %v (events %q)", err, payloads)
				}
				if firstToken := time.Since(start); firstToken < tt.minFirstToken {
					t.Errorf("first content chunk after %v, want at least %v", firstToken, tt.minFirstToken)
				}
			}

			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				t.Fatalf("read rest of response: %v", err)
			}
			total := time.Since(start)
			if total < tt.minTotal {
				t.Errorf("response took %v, want at least %v", total, tt.minTotal)
			}
			if total > tt.maxTotal {
				t.Errorf("response took %v, want at most %v", total, tt.maxTotal)
			}
		})
	}
}

// readEventsUntilContent reads events up to and including the first chunk
// with non-empty content.
func readEventsUntilContent(body io.Reader) ([]string, error) {
	var payloads []string
	buf := make([]byte, 1)
	var line []byte

	for {
		if _, err := body.Read(buf); err != nil {
			return payloads, err
		}
		if buf[0] != '\n' {
			line = append(line, buf[0])
			continue
		}
		if len(line) == 0 {
			continue
		}

		payload := strings.TrimPrefix(string(line), "data: ")
		payloads = append(payloads, payload)
		line = line[:0]

		var chunk testChunk
		if json.Unmarshal([]byte(payload), &chunk) == nil && len(chunk.Choices) > 0 &&
			chunk.Choices[0].Delta.Content != nil && *chunk.Choices[0].Delta.Content != "" {
			return payloads, nil
		}
	}
}

func TestNoPacingResponseIsFast(t *testing.T) {
	srv := startServer(t, Options{})
	client := newClient(t)

	start := time.Now()
	summary := readStream(t, mustPostChat(t, client, srv, chatBody("mock-gpt", "hi", map[string]any{"stream": true}),
		map[string]string{"X-Mock-Tokens": "2000"}))

	if summary.contentChunks != 2000 {
		t.Errorf("got %d content chunks, want 2000", summary.contentChunks)
	}
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("2000 unpaced tokens took %v, want under 3s", elapsed)
	}

}
