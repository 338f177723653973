package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aihigress/aihigress/bench/internal/benchstack"
)

// benchModel is the logical model that OPENAI_MODELS registers for the
// mock upstream.
const benchModel = "mock-gpt"

// newHTTPClient returns a client whose pool keeps a connection per
// concurrent stream, so that no request waits for a connection or opens
// one mid-measurement.
func newHTTPClient(concurrency int) *http.Client {
	transport := &http.Transport{
		MaxIdleConns:        max(concurrency*2, 512),
		MaxIdleConnsPerHost: max(concurrency*2, 512),
		IdleConnTimeout:     2 * time.Minute,
		DisableCompression:  true,
	}
	return &http.Client{Transport: transport}
}

// apiClient calls the AI Higress API as one user.
type apiClient struct {
	http    *http.Client
	baseURL string
	token   string
}

// apiError is a response with an unexpected status.
type apiError struct {
	method, path string
	status       int
	body         string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s %s: status %d: %s", e.method, e.path, e.status, e.body)
}

func (c *apiClient) newRequest(ctx context.Context, method, path string, body any) (*http.Request, error) {
	var reader io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode %s %s body: %w", method, path, err)
		}
		reader = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+path, reader)
	if err != nil {
		return nil, fmt.Errorf("build %s %s: %w", method, path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// doJSON sends a request, checks the status and decodes the JSON response
// into out unless out is nil.
func (c *apiClient) doJSON(ctx context.Context, method, path string, body any, wantStatus int, out any) error {
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()

	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read response: %w", method, path, err)
	}
	if resp.StatusCode != wantStatus {
		return &apiError{method: method, path: path, status: resp.StatusCode, body: truncate(string(raw), 300)}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: decode response: %w", method, path, err)
		}
	}
	return nil
}

// login registers a new user and stores its access token.
func (c *apiClient) login(ctx context.Context) error {
	name := "bench_" + benchstack.RandomHex(6)
	password := benchstack.RandomHex(12)
	register := map[string]any{"username": name, "email": name + "@example.com", "password": password}
	if err := c.doJSON(ctx, http.MethodPost, "/auth/register", register, http.StatusCreated, nil); err != nil {
		return err
	}

	var tokens struct {
		AccessToken string `json:"access_token"`
	}
	credentials := map[string]any{"username": name, "password": password}
	if err := c.doJSON(ctx, http.MethodPost, "/auth/login", credentials, http.StatusOK, &tokens); err != nil {
		return err
	}
	if tokens.AccessToken == "" {
		return fmt.Errorf("POST /auth/login returned no access_token")
	}
	c.token = tokens.AccessToken
	return nil
}

// createConversations creates one assistant on benchModel and n
// conversations with it.
func (c *apiClient) createConversations(ctx context.Context, n int) ([]string, error) {
	var assistant struct {
		ID string `json:"id"`
	}
	body := map[string]any{"name": "Benchmark", "system_prompt": "Be brief.", "default_logical_model": benchModel}
	if err := c.doJSON(ctx, http.MethodPost, "/v1/assistants", body, http.StatusCreated, &assistant); err != nil {
		return nil, err
	}

	ids := make([]string, 0, n)
	for range n {
		var conv struct {
			ID string `json:"id"`
		}
		if err := c.doJSON(ctx, http.MethodPost, "/v1/conversations", map[string]any{"assistant_id": assistant.ID}, http.StatusCreated, &conv); err != nil {
			return nil, err
		}
		ids = append(ids, conv.ID)
	}
	return ids, nil
}

// runDetail is the part of GET /v1/runs/{id} that the checks read.
type runDetail struct {
	RunID      string     `json:"run_id"`
	Status     string     `json:"status"`
	OutputText *string    `json:"output_text"`
	LastSeq    int64      `json:"last_seq"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
}

func (c *apiClient) run(ctx context.Context, runID string) (runDetail, error) {
	var detail runDetail
	err := c.doJSON(ctx, http.MethodGet, "/v1/runs/"+runID, nil, http.StatusOK, &detail)
	return detail, err
}

// postStreaming posts a user message with "streaming": true and returns the
// open SSE response.
func (c *apiClient) postStreaming(ctx context.Context, conversationID, content string) (*http.Response, error) {
	path := "/v1/conversations/" + conversationID + "/messages"
	req, err := c.newRequest(ctx, http.MethodPost, path, map[string]any{"content": content, "streaming": true})
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		_ = resp.Body.Close()
		return nil, &apiError{method: http.MethodPost, path: path, status: resp.StatusCode, body: truncate(string(raw), 300)}
	}
	return resp, nil
}

// sseFrame is one server-sent event.
type sseFrame struct {
	id    int64
	hasID bool
	event string
	data  []byte
}

// sseReader parses frames from an event stream.
type sseReader struct {
	reader *bufio.Reader
}

func newSSEReader(r io.Reader) *sseReader {
	return &sseReader{reader: bufio.NewReaderSize(r, 16<<10)}
}

// next returns the next frame. It skips comment lines and joins several
// data lines of one frame with newlines, as the HTML standard's rules for
// server-sent events require.
func (r *sseReader) next() (sseFrame, error) {
	var frame sseFrame
	seen, hasData := false, false
	for {
		line, err := r.reader.ReadSlice('\n')
		if err != nil {
			if err == bufio.ErrBufferFull {
				return frame, fmt.Errorf("SSE line longer than %d bytes", r.reader.Size())
			}
			return frame, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			if seen {
				return frame, nil
			}
			continue
		}
		if line[0] == ':' {
			continue
		}
		seen = true

		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "id":
			id, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil {
				return frame, fmt.Errorf("invalid SSE id %q: %w", value, err)
			}
			frame.id, frame.hasID = id, true
		case "event":
			frame.event = string(value)
		case "data":
			if hasData {
				frame.data = append(frame.data, '\n')
			}
			frame.data = append(frame.data, value...)
			hasData = true
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
