package mockupstream

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestModelList(t *testing.T) {
	tests := []struct {
		name    string
		models  []string
		wantIDs []string
	}{
		{name: "default models", wantIDs: []string{"mock-gpt", "mock-gpt-mini"}},
		{name: "configured models", models: []string{"gpt-4o", "gpt-4o-mini", "o3"}, wantIDs: []string{"gpt-4o", "gpt-4o-mini", "o3"}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, Options{Models: tt.models})
			client := newClient(t)

			resp, err := client.Get(srv.URL() + modelsPath)
			if err != nil {
				t.Fatalf("GET %s: %v", modelsPath, err)
			}
			defer resp.Body.Close()

			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200", resp.StatusCode)
			}
			if got := resp.Header.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", got)
			}

			var list struct {
				Object string `json:"object"`
				Data   []struct {
					ID      string `json:"id"`
					Object  string `json:"object"`
					Created int64  `json:"created"`
					OwnedBy string `json:"owned_by"`
				} `json:"data"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
				t.Fatalf("decode model list: %v", err)
			}

			if list.Object != "list" {
				t.Errorf("object = %q, want list", list.Object)
			}

			var ids []string
			for _, model := range list.Data {
				ids = append(ids, model.ID)
				if model.Object != "model" {
					t.Errorf("model %q: object = %q, want model", model.ID, model.Object)
				}
				if model.OwnedBy != "mock" {
					t.Errorf("model %q: owned_by = %q, want mock", model.ID, model.OwnedBy)
				}
				if model.Created <= 0 {
					t.Errorf("model %q: created = %d, want a positive timestamp", model.ID, model.Created)
				}
			}
			if !slices.Equal(ids, tt.wantIDs) {
				t.Errorf("model ids = %q, want %q", ids, tt.wantIDs)
			}
		})
	}
}

func TestAPIKeyCheck(t *testing.T) {
	const key = "sk-mock-secret"

	tests := []struct {
		name          string
		authorization string
		path          string
		wantStatus    int
	}{
		{name: "missing header on models", path: modelsPath, wantStatus: http.StatusUnauthorized},
		{name: "wrong key on models", authorization: "Bearer sk-wrong", path: modelsPath, wantStatus: http.StatusUnauthorized},
		{name: "key without Bearer", authorization: key, path: modelsPath, wantStatus: http.StatusUnauthorized},
		{name: "right key on models", authorization: "Bearer " + key, path: modelsPath, wantStatus: http.StatusOK},
		{name: "missing header on chat", path: chatCompletionsPath, wantStatus: http.StatusUnauthorized},
		{name: "wrong key on chat", authorization: "Bearer sk-wrong", path: chatCompletionsPath, wantStatus: http.StatusUnauthorized},
		{name: "right key on chat", authorization: "Bearer " + key, path: chatCompletionsPath, wantStatus: http.StatusOK},
	}

	srv := startServer(t, Options{APIKey: key})
	client := newClient(t)

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method, body := http.MethodGet, io.Reader(nil)
			if tt.path == chatCompletionsPath {
				method, body = http.MethodPost, bytes.NewReader(chatBody("mock-gpt", "hi", nil))
			}

			req, err := http.NewRequestWithContext(t.Context(), method, srv.URL()+tt.path, body)
			if err != nil {
				t.Fatalf("new request: %v", err)
			}
			if tt.authorization != "" {
				req.Header.Set("Authorization", tt.authorization)
			}

			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", method, tt.path, err)
			}
			defer resp.Body.Close()

			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantStatus != http.StatusUnauthorized {
				return
			}

			errorBody := readErrorBody(t, resp)
			if errorBody.Error.Type != "invalid_request_error" {
				t.Errorf("error type = %q, want invalid_request_error", errorBody.Error.Type)
			}
			if strings.Contains(errorBody.Error.Message, key) {
				t.Errorf("error message %q contains the API key", errorBody.Error.Message)
			}
		})
	}
}

func TestKeyPrefixFaults(t *testing.T) {
	tests := []struct {
		name          string
		apiKey        string // Options.APIKey
		authorization string
		path          string
		wantStatus    int
		wantCode      string
	}{
		{name: "bad key on chat", authorization: "Bearer bad-key-1", path: chatCompletionsPath, wantStatus: http.StatusUnauthorized, wantCode: "invalid_api_key"},
		{name: "bad key on models", authorization: "Bearer bad-key-1", path: modelsPath, wantStatus: http.StatusUnauthorized, wantCode: "invalid_api_key"},
		{name: "forbidden key on chat", authorization: "Bearer forbidden-key-1", path: chatCompletionsPath, wantStatus: http.StatusForbidden, wantCode: "permission_denied"},
		{name: "other key accepted without APIKey", authorization: "Bearer good-key-1", path: chatCompletionsPath, wantStatus: http.StatusOK},
		{name: "no key accepted without APIKey", path: chatCompletionsPath, wantStatus: http.StatusOK},
		{name: "prefix wins over matching APIKey", apiKey: "bad-configured", authorization: "Bearer bad-configured", path: chatCompletionsPath, wantStatus: http.StatusUnauthorized, wantCode: "invalid_api_key"},
		{name: "prefix without Bearer is an ordinary key", authorization: "bad-key-1", path: chatCompletionsPath, wantStatus: http.StatusOK},
	}

	client := newClient(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, Options{APIKey: tt.apiKey})
			method, body := http.MethodGet, io.Reader(nil)
			if tt.path == chatCompletionsPath {
				method, body = http.MethodPost, bytes.NewReader(chatBody("mock-gpt", "hi", nil))
			}
			req, err := http.NewRequestWithContext(t.Context(), method, srv.URL()+tt.path, body)
			if err != nil {
				t.Fatalf("new request: %v", err)
			}
			if tt.authorization != "" {
				req.Header.Set("Authorization", tt.authorization)
			}

			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", method, tt.path, err)
			}
			defer resp.Body.Close()

			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantCode == "" {
				return
			}
			errorBody := readErrorBody(t, resp)
			if errorBody.Error.Code == nil || *errorBody.Error.Code != tt.wantCode {
				t.Errorf("error code = %v, want %q", errorBody.Error.Code, tt.wantCode)
			}
		})
	}
}

func TestInvalidRequests(t *testing.T) {
	validBody := chatBody("mock-gpt", "hi", nil)

	tests := []struct {
		name       string
		method     string
		path       string
		body       []byte
		headers    map[string]string
		wantStatus int
		wantParam  string
	}{
		{name: "invalid JSON", body: []byte(`{"model":`), wantStatus: http.StatusBadRequest},
		{name: "trailing garbage", body: append(bytes.Clone(validBody), []byte(" x")...), wantStatus: http.StatusBadRequest},
		{name: "wrong field type", body: []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":"yes"}`), wantStatus: http.StatusBadRequest},
		{name: "missing model", body: []byte(`{"messages":[{"role":"user","content":"hi"}]}`), wantStatus: http.StatusBadRequest, wantParam: "model"},
		{name: "missing messages", body: []byte(`{"model":"mock-gpt"}`), wantStatus: http.StatusBadRequest, wantParam: "messages"},
		{name: "empty messages", body: []byte(`{"model":"mock-gpt","messages":[]}`), wantStatus: http.StatusBadRequest, wantParam: "messages"},
		{name: "missing role", body: []byte(`{"model":"mock-gpt","messages":[{"content":"hi"}]}`), wantStatus: http.StatusBadRequest, wantParam: "messages[0].role"},
		{name: "numeric content", body: []byte(`{"model":"mock-gpt","messages":[{"role":"user","content":7}]}`), wantStatus: http.StatusBadRequest, wantParam: "messages[0].content"},
		{name: "zero max_tokens", body: chatBody("mock-gpt", "hi", map[string]any{"max_tokens": 0}), wantStatus: http.StatusBadRequest, wantParam: "max_tokens"},
		{name: "negative max_completion_tokens", body: chatBody("mock-gpt", "hi", map[string]any{"max_completion_tokens": -2}), wantStatus: http.StatusBadRequest, wantParam: "max_completion_tokens"},
		{name: "negative X-Mock-Tokens", body: validBody, headers: map[string]string{"X-Mock-Tokens": "-1"}, wantStatus: http.StatusBadRequest, wantParam: "X-Mock-Tokens"},
		{name: "non-numeric X-Mock-TPS", body: validBody, headers: map[string]string{"X-Mock-TPS": "fast"}, wantStatus: http.StatusBadRequest, wantParam: "X-Mock-TPS"},
		{name: "non-numeric X-Mock-TTFT-Ms", body: validBody, headers: map[string]string{"X-Mock-TTFT-Ms": "1s"}, wantStatus: http.StatusBadRequest, wantParam: "X-Mock-TTFT-Ms"},
		{name: "unknown X-Mock-Fault", body: validBody, headers: map[string]string{"X-Mock-Fault": "explode"}, wantStatus: http.StatusBadRequest, wantParam: "X-Mock-Fault"},
		{name: "unknown fault model", body: chatBody("fault-explode", "hi", nil), wantStatus: http.StatusBadRequest, wantParam: "model"},
		{name: "unknown fault-once model", body: chatBody("fault-once-explode", "hi", nil), wantStatus: http.StatusBadRequest, wantParam: "model"},
		{name: "body over 16 MiB", body: chatBody("mock-gpt", strings.Repeat("a", maxRequestBodyBytes), nil), wantStatus: http.StatusRequestEntityTooLarge},
		{name: "GET chat completions", method: http.MethodGet, path: chatCompletionsPath, wantStatus: http.StatusMethodNotAllowed},
		{name: "POST models", method: http.MethodPost, path: modelsPath, body: validBody, wantStatus: http.StatusMethodNotAllowed},
		{name: "unknown path", method: http.MethodGet, path: "/v1/embeddings", wantStatus: http.StatusNotFound},
	}

	srv := startServer(t, Options{})
	client := newClient(t)

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method, path := tt.method, tt.path
			if method == "" {
				method = http.MethodPost
			}
			if path == "" {
				path = chatCompletionsPath
			}

			req, err := http.NewRequestWithContext(t.Context(), method, srv.URL()+path, bytes.NewReader(tt.body))
			if err != nil {
				t.Fatalf("new request: %v", err)
			}
			for name, value := range tt.headers {
				req.Header.Set(name, value)
			}

			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			defer resp.Body.Close()

			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}

			errorBody := readErrorBody(t, resp)
			if errorBody.Error.Type != "invalid_request_error" {
				t.Errorf("error type = %q, want invalid_request_error", errorBody.Error.Type)
			}
			if tt.wantParam == "" {
				return
			}
			if errorBody.Error.Param == nil || *errorBody.Error.Param != tt.wantParam {
				t.Errorf("error param = %v, want %q", errorBody.Error.Param, tt.wantParam)
			}
		})
	}
}

func TestStatsCountsPerPath(t *testing.T) {
	first := startServer(t, Options{})
	second := startServer(t, Options{})
	client := newClient(t)

	for range 2 {
		resp, err := client.Get(first.URL() + modelsPath)
		if err != nil {
			t.Fatalf("GET %s: %v", modelsPath, err)
		}
		resp.Body.Close()
	}
	for range 3 {
		resp := mustPostChat(t, client, first, chatBody("mock-gpt", "hi", nil), nil)
		io.Copy(io.Discard, resp.Body)
	}
	resp, err := client.Get(first.URL() + "/health")
	if err != nil {
		t.Fatalf("GET /health: %v", err)
	}
	resp.Body.Close()

	resp = mustPostChat(t, client, second, chatBody("mock-gpt", "hi", nil), nil)
	io.Copy(io.Discard, resp.Body)

	want := Stats{Models: 2, ChatCompletions: 3, Other: 1}
	if got := first.Stats(); got != want {
		t.Errorf("first server stats = %+v, want %+v", got, want)
	}
	if got := first.Stats().Total(); got != 6 {
		t.Errorf("first server total = %d, want 6", got)
	}

	wantSecond := Stats{ChatCompletions: 1}
	if got := second.Stats(); got != wantSecond {
		t.Errorf("second server stats = %+v, want %+v", got, wantSecond)
	}
}

func TestServeShutsDownOnCancel(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	url := "http://" + listener.Addr().String()

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	serveErr := make(chan error, 1)
	go func() {
		serveErr <- serve(ctx, listener, NewHandler(Options{}), nil)
	}()

	client := newClient(t)
	resp, err := client.Get(url + modelsPath)
	if err != nil {
		t.Fatalf("GET %s before cancel: %v", modelsPath, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status before cancel = %d, want 200", resp.StatusCode)
	}

	cancel()
	select {
	case err := <-serveErr:
		if err != nil {
			t.Fatalf("serve returned %v, want nil", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("serve did not return within 3s of cancel")
	}

	client.CloseIdleConnections()
	if _, err := client.Get(url + modelsPath); err == nil {
		t.Error("GET after shutdown succeeded, want a connection error")
	}
}

func TestRunListenError(t *testing.T) {
	err := Run(t.Context(), "127.0.0.1:-1", Options{})
	if err == nil {
		t.Fatal("Run on an invalid address returned nil, want an error")
	}
	if !strings.Contains(err.Error(), "127.0.0.1:-1") {
		t.Errorf("error %q does not name the address", err)
	}
}

func TestRunReturnsAfterCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	done := make(chan error, 1)
	go func() { done <- Run(ctx, "127.0.0.1:0", Options{}) }()

	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v, want nil", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Run did not return within 3s of cancel")
	}
}
