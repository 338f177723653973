package providers

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/mockupstream"
)

func TestProbeModels(t *testing.T) {
	srv := startMock(t, mockupstream.Options{APIKey: testAPIKey})
	client := NewClient(fastOptions())

	// A port that accepted connections a moment ago and now refuses them.
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + listener.Addr().String() + "/v1"
	_ = listener.Close()

	notJSON := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html>a login page</html>"))
	}))
	t.Cleanup(notJSON.Close)

	withKey := func(p Provider, key string) Provider {
		p.APIKey = key
		return p
	}
	tests := []struct {
		name       string
		provider   Provider
		timeout    time.Duration
		wantStatus int
		wantKind   ErrorKind // "" for success
	}{
		{name: "OpenAI list", provider: mockProvider(srv, "openai", nil), wantStatus: 200},
		{name: "Gemini list", provider: mockProvider(srv, "gemini", nil), wantStatus: 200},
		{name: "Gemini base URL with version", provider: Provider{ID: "g", Kind: "gemini", BaseURL: srv.URL() + "/v1beta", APIKey: testAPIKey}, wantStatus: 200},
		{name: "OpenAI wrong key", provider: withKey(mockProvider(srv, "openai", nil), "sk-wrong"), wantStatus: 401, wantKind: ErrorAuth},
		{name: "Gemini wrong key", provider: withKey(mockProvider(srv, "gemini", nil), "wrong"), wantStatus: 401, wantKind: ErrorAuth},
		{name: "server error", provider: mockProvider(srv, "openai", map[string]string{"X-Mock-Fault": "500"}), wantStatus: 500, wantKind: ErrorServer},
		{name: "rate limited", provider: mockProvider(srv, "gemini", map[string]string{"X-Mock-Fault": "429"}), wantStatus: 429, wantKind: ErrorRateLimited},
		{name: "slow upstream", provider: mockProvider(srv, "openai", map[string]string{"X-Mock-Fault": "slow-start", "X-Mock-Slow-Ms": "2000"}),
			timeout: 200 * time.Millisecond, wantKind: ErrorTimeout},
		{name: "connection refused", provider: Provider{ID: "closed", Kind: "openai", BaseURL: closedURL}, wantKind: ErrorConnect},
		{name: "body is not JSON", provider: Provider{ID: "html", Kind: "openai", BaseURL: notJSON.URL}, wantStatus: 200, wantKind: ErrorMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 3 * time.Second
			}
			started := time.Now()
			status, err := client.ProbeModels(t.Context(), tt.provider, timeout)
			if status != tt.wantStatus {
				t.Errorf("status = %d, want %d", status, tt.wantStatus)
			}
			if tt.wantKind == "" {
				if err != nil {
					t.Fatalf("ProbeModels: %v", err)
				}
				return
			}
			var upstream *UpstreamError
			if !errors.As(err, &upstream) {
				t.Fatalf("error = %v, want an *UpstreamError", err)
			}
			if upstream.Kind != tt.wantKind {
				t.Errorf("kind = %s, want %s (%v)", upstream.Kind, tt.wantKind, err)
			}
			if took := time.Since(started); took > timeout+time.Second {
				t.Errorf("probe took %s, want about the timeout %s at most", took, timeout)
			}
		})
	}
}
