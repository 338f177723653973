package mockupstream

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"
)

func TestGeminiModelList(t *testing.T) {
	srv := startServer(t, Options{Models: []string{"gemini-a", "gemini-b"}, APIKey: "g-key"})
	client := newClient(t)

	tests := []struct {
		name       string
		method     string
		key        string
		wantStatus int
		wantGoogle string
	}{
		{name: "right key", method: http.MethodGet, key: "g-key", wantStatus: http.StatusOK},
		{name: "missing key", method: http.MethodGet, wantStatus: http.StatusUnauthorized, wantGoogle: "UNAUTHENTICATED"},
		{name: "wrong key", method: http.MethodGet, key: "other", wantStatus: http.StatusUnauthorized, wantGoogle: "UNAUTHENTICATED"},
		{name: "bad- key", method: http.MethodGet, key: "bad-1", wantStatus: http.StatusUnauthorized, wantGoogle: "UNAUTHENTICATED"},
		{name: "forbidden- key", method: http.MethodGet, key: "forbidden-1", wantStatus: http.StatusForbidden, wantGoogle: "PERMISSION_DENIED"},
		{name: "POST", method: http.MethodPost, key: "g-key", wantStatus: http.StatusMethodNotAllowed, wantGoogle: "INVALID_ARGUMENT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tt.method, srv.URL()+geminiModelsPath, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.key != "" {
				req.Header.Set("x-goog-api-key", tt.key)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tt.wantStatus, body)
			}

			if tt.wantGoogle != "" {
				var failure struct {
					Error struct {
						Code   int    `json:"code"`
						Status string `json:"status"`
					} `json:"error"`
				}
				if err := json.Unmarshal(body, &failure); err != nil {
					t.Fatalf("decode error body %s: %v", body, err)
				}
				if failure.Error.Status != tt.wantGoogle || failure.Error.Code != tt.wantStatus {
					t.Errorf("error = %+v, want status %s and code %d", failure.Error, tt.wantGoogle, tt.wantStatus)
				}
				return
			}
			var list struct {
				Models []struct {
					Name                       string   `json:"name"`
					SupportedGenerationMethods []string `json:"supportedGenerationMethods"`
				} `json:"models"`
			}
			if err := json.Unmarshal(body, &list); err != nil {
				t.Fatalf("decode model list %s: %v", body, err)
			}
			if len(list.Models) != 2 || list.Models[0].Name != "models/gemini-a" || list.Models[1].Name != "models/gemini-b" {
				t.Errorf("models = %+v, want models/gemini-a and models/gemini-b", list.Models)
			}
		})
	}
	if got := srv.Handler().Stats().Models; got != int64(len(tests)) {
		t.Errorf("Stats().Models = %d, want %d", got, len(tests))
	}
}

func TestModelListFaults(t *testing.T) {
	srv := startServer(t, Options{})
	client := newClient(t)

	tests := []struct {
		name       string
		path       string
		headers    map[string]string
		wantStatus int
		minWait    time.Duration
	}{
		{name: "500 on OpenAI list", path: modelsPath, headers: map[string]string{"X-Mock-Fault": "500"}, wantStatus: http.StatusInternalServerError},
		{name: "429 on Gemini list", path: geminiModelsPath, headers: map[string]string{"X-Mock-Fault": "429"}, wantStatus: http.StatusTooManyRequests},
		{name: "403 on OpenAI list", path: modelsPath, headers: map[string]string{"X-Mock-Fault": "403"}, wantStatus: http.StatusForbidden},
		{name: "slow-start waits then lists", path: modelsPath,
			headers: map[string]string{"X-Mock-Fault": "slow-start", "X-Mock-Slow-Ms": "150"}, wantStatus: http.StatusOK, minWait: 150 * time.Millisecond},
		{name: "stream fault does not apply", path: modelsPath, headers: map[string]string{"X-Mock-Fault": "cut"}, wantStatus: http.StatusBadRequest},
		{name: "unknown fault", path: geminiModelsPath, headers: map[string]string{"X-Mock-Fault": "boom"}, wantStatus: http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL()+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			for name, value := range tt.headers {
				req.Header.Set(name, value)
			}
			started := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d: %s", resp.StatusCode, tt.wantStatus, body)
			}
			if waited := time.Since(started); waited < tt.minWait {
				t.Errorf("answered after %s, want at least %s", waited, tt.minWait)
			}
		})
	}
}

func TestModelListFaultOnce(t *testing.T) {
	srv := startServer(t, Options{})
	client := newClient(t)
	get := func() int {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL()+modelsPath, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Mock-Fault", "500")
		req.Header.Set("X-Mock-Fault-Once", "probe-1")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if status := get(); status != http.StatusInternalServerError {
		t.Errorf("first request status = %d, want 500", status)
	}
	if status := get(); status != http.StatusOK {
		t.Errorf("second request status = %d, want 200", status)
	}
}
