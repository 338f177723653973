package metrics_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/metrics"
)

func httpGet(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestWorkerServerToken(t *testing.T) {
	tests := []struct {
		name          string
		token         string
		authorization string
		wantStatus    int
	}{
		{"no token configured", "", "", http.StatusOK},
		{"no token configured, any header", "", "Bearer whatever", http.StatusOK},
		{"missing header", "s3cret", "", http.StatusUnauthorized},
		{"wrong token", "s3cret", "Bearer wrong", http.StatusUnauthorized},
		{"token without Bearer", "s3cret", "s3cret", http.StatusUnauthorized},
		{"right token", "s3cret", "Bearer s3cret", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := metrics.New(metrics.Options{})
			r.RecordCooldown("p", "failures")
			server, err := r.Listen("127.0.0.1:0", tt.token, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = server.Shutdown(context.Background()) })

			status, body := httpGet(t, "http://"+server.Addr()+"/metrics", tt.authorization)
			if status != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %s", status, tt.wantStatus, body)
			}
			if status == http.StatusOK && !strings.Contains(body, `aihigress_cooldowns_total{provider="p",reason="failures"} 1`) {
				t.Errorf("/metrics lacks the recorded cooldown:\n%s", body)
			}
			if status == http.StatusUnauthorized {
				var parsed struct {
					Error struct {
						Code string `json:"code"`
					} `json:"error"`
				}
				if err := json.Unmarshal([]byte(body), &parsed); err != nil || parsed.Error.Code != "invalid_token" {
					t.Errorf("401 body = %s, want error code invalid_token", body)
				}
				if strings.Contains(body, "aihigress_") {
					t.Error("a 401 leaked metrics")
				}
			}
		})
	}
}

func TestWorkerServerHealthz(t *testing.T) {
	r := metrics.New(metrics.Options{})
	server, err := r.Listen("127.0.0.1:0", "s3cret", nil)
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + server.Addr() + "/healthz"
	steps := []struct {
		name       string
		ready      bool
		wantStatus int
		wantBody   string
	}{
		{"before the workers start", false, http.StatusServiceUnavailable, `{"status":"unavailable"}`},
		{"workers running", true, http.StatusOK, `{"status":"ok"}`},
		{"workers stopping", false, http.StatusServiceUnavailable, `{"status":"unavailable"}`},
	}
	for i, step := range steps {
		if i > 0 {
			server.SetReady(step.ready)
		}
		// /healthz needs no token, so that container health checks can
		// call it.
		status, body := httpGet(t, url, "")
		if status != step.wantStatus || strings.TrimSpace(body) != step.wantBody {
			t.Errorf("%s: GET /healthz = %d %s, want %d %s", step.name, status, body, step.wantStatus, step.wantBody)
		}
	}

	if err := server.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	client := http.Client{Timeout: 2 * time.Second}
	if resp, err := client.Get(url); err == nil {
		resp.Body.Close()
		t.Error("the server still answers after Shutdown")
	}
}

func TestWorkerServerAddressTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	r := metrics.New(metrics.Options{})
	if server, err := r.Listen(taken.Addr().String(), "", nil); err == nil {
		_ = server.Shutdown(context.Background())
		t.Fatal("Listen on a taken port succeeded")
	} else if !strings.Contains(err.Error(), taken.Addr().String()) {
		t.Errorf("error %q does not name the address", err)
	}
}

func TestNilWorkerServerSetReady(t *testing.T) {
	var server *metrics.Server
	server.SetReady(true)
}

func TestWorkerServerMetricsOff(t *testing.T) {
	var r *metrics.Recorder
	server, err := r.Listen("127.0.0.1:0", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Shutdown(context.Background()) })
	server.SetReady(true)

	if status, body := httpGet(t, "http://"+server.Addr()+"/metrics", ""); status != http.StatusNotFound {
		t.Errorf("GET /metrics with metrics off = %d %s, want 404", status, body)
	}
	if status, body := httpGet(t, "http://"+server.Addr()+"/healthz", ""); status != http.StatusOK {
		t.Errorf("GET /healthz with metrics off = %d %s, want 200", status, body)
	}
}
