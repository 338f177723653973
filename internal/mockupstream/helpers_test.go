package mockupstream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func startServer(t *testing.T, opts Options) *Server {
	t.Helper()

	srv, err := Start("", opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return srv
}

// newClient returns a client with its own transport, so closing its idle
// connections does not depend on other tests.
func newClient(t *testing.T) *http.Client {
	t.Helper()

	transport := &http.Transport{DisableCompression: true}
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport}
}

func chatBody(model, userText string, extra map[string]any) []byte {
	body := map[string]any{
		"model":    model,
		"messages": []map[string]any{{"role": "user", "content": userText}},
	}
	for key, value := range extra {
		body[key] = value
	}

	encoded, err := json.Marshal(body)
	if err != nil {
		panic(fmt.Sprintf("encode chat body: %v", err))
	}
	return encoded
}

func postChat(ctx context.Context, client *http.Client, srv *Server, body []byte, headers map[string]string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL()+chatCompletionsPath, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("new request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	for name, value := range headers {
		req.Header.Set(name, value)
	}
	return client.Do(req)
}

func mustPostChat(t *testing.T, client *http.Client, srv *Server, body []byte, headers map[string]string) *http.Response {
	t.Helper()

	resp, err := postChat(t.Context(), client, srv, body, headers)
	if err != nil {
		t.Fatalf("POST %s: %v", chatCompletionsPath, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// readEvents reads SSE events of the form "data: PAYLOAD\n\n" and returns
// the payloads. It returns an error for any other line and for a stream that
// ends inside an event or with a read error.
func readEvents(r io.Reader) ([]string, error) {
	reader := bufio.NewReader(r)
	var payloads []string

	for {
		line, err := reader.ReadString('\n')
		if errors.Is(err, io.EOF) && line == "" {
			return payloads, nil
		}
		if err != nil {
			return payloads, fmt.Errorf("read event line: %w", err)
		}

		payload, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			return payloads, fmt.Errorf("event line %q does not start with \"data: \"", line)
		}

		blank, err := reader.ReadString('\n')
		if err != nil {
			return payloads, fmt.Errorf("read blank line after event: %w", err)
		}
		if blank != "\n" {
			return payloads, fmt.Errorf("event %q is followed by %q instead of a blank line", payload, blank)
		}

		payloads = append(payloads, strings.TrimSuffix(payload, "\n"))
	}
}

type testChunk struct {
	ID                string `json:"id"`
	Object            string `json:"object"`
	Created           int64  `json:"created"`
	Model             string `json:"model"`
	SystemFingerprint string `json:"system_fingerprint"`
	Choices           []struct {
		Index int `json:"index"`
		Delta struct {
			Role    *string `json:"role"`
			Content *string `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *usage `json:"usage"`
}

type testCompletion struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Index   int `json:"index"`
		Message struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage usage `json:"usage"`
}

type testErrorBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

// streamSummary is a parsed stream that ended with [DONE].
type streamSummary struct {
	chunks        []testChunk
	text          string
	contentChunks int
	finishReason  string
	usage         *usage
}

// readStream parses a complete stream and fails the test unless it is well
// formed and ends with [DONE].
func readStream(t *testing.T, resp *http.Response) streamSummary {
	t.Helper()

	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("status = %d, want 200, body %s", resp.StatusCode, body)
	}

	payloads, err := readEvents(resp.Body)
	if err != nil {
		t.Fatalf("read stream: %v", err)
	}
	if len(payloads) == 0 || payloads[len(payloads)-1] != "[DONE]" {
		t.Fatalf("stream does not end with [DONE]: %q", payloads)
	}

	var summary streamSummary
	var text strings.Builder
	for _, payload := range payloads[:len(payloads)-1] {
		var chunk testChunk
		if err := json.Unmarshal([]byte(payload), &chunk); err != nil {
			t.Fatalf("decode chunk %q: %v", payload, err)
		}
		summary.chunks = append(summary.chunks, chunk)

		if chunk.Usage != nil {
			summary.usage = chunk.Usage
		}
		for _, choice := range chunk.Choices {
			if choice.Delta.Content != nil && *choice.Delta.Content != "" {
				text.WriteString(*choice.Delta.Content)
				summary.contentChunks++
			}
			if choice.FinishReason != nil {
				summary.finishReason = *choice.FinishReason
			}
		}
	}
	summary.text = text.String()

	return summary
}

func readCompletion(t *testing.T, resp *http.Response) testCompletion {
	t.Helper()

	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200, body %s", resp.StatusCode, body)
	}

	var completion testCompletion
	if err := json.Unmarshal(body, &completion); err != nil {
		t.Fatalf("decode completion %s: %v", body, err)
	}
	if len(completion.Choices) != 1 {
		t.Fatalf("completion has %d choices, want 1", len(completion.Choices))
	}
	return completion
}

func readErrorBody(t *testing.T, resp *http.Response) testErrorBody {
	t.Helper()

	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}

	var errorBody testErrorBody
	if err := json.Unmarshal(body, &errorBody); err != nil {
		t.Fatalf("decode error body %s: %v", body, err)
	}
	if errorBody.Error.Message == "" {
		t.Errorf("error message is empty in %s", body)
	}
	return errorBody
}

// waitForIdle fails the test unless every handler of srv returns within
// timeout.
func waitForIdle(t *testing.T, srv *Server, timeout time.Duration) {
	t.Helper()

	deadline := time.Now().Add(timeout)
	for srv.Stats().Active != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d handlers still running %v after the client left", srv.Stats().Active, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
