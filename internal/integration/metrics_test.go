package integration

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/apikeys"
)

const workerMetricsToken = "worker-metrics-test-token"

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := listener.Addr().String()
	_ = listener.Close()
	return addr
}

// getWithToken sends GET url with the bearer token (none when empty) and
// returns the status and body.
func getWithToken(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// startWorker runs the app's workers as `aihigress worker` does, with the
// worker's HTTP server on addr, and waits until its /healthz returns 200.
// The workers stop at the returned function or at the test's cleanup.
func startWorker(t *testing.T, s *stack, addr string) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.app.RunWorker(ctx, s.cfg.Worker.TaskQueues) }()
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunWorker: %v", err)
		}
	})
	t.Cleanup(stop)

	waitFor(t, 30*time.Second, "the worker's /healthz to answer 200", func() bool {
		status, _ := getWithToken(t, "http://"+addr+"/healthz", "")
		return status == http.StatusOK
	})
	return stop
}

// TestWorkerMetrics runs the worker as `aihigress worker` does, with its
// metrics server, and checks that its /metrics shows the runs' upstream
// calls, finished runs, event lag and the Temporal SDK's own metrics.
func TestWorkerMetrics(t *testing.T) {
	addr := freeAddr(t)
	s := newStack(t, stackOptions{noWorker: true, env: map[string]string{
		"WORKER_METRICS_ADDR": addr,
		"METRICS_TOKEN":       workerMetricsToken,
	}})
	stopWorker := startWorker(t, s, addr)
	base := "http://" + addr

	// A streamed chat run, a run whose first candidate returns 429 and an
	// image run whose first candidate returns 500.
	alice := s.newUser()
	stream := alice.postStreaming("/v1/conversations/"+alice.conversation("mock-gpt")+"/messages", map[string]any{"content": "Hello", "streaming": true})
	stream.readUntil(t, "done")
	stream.close()
	var turn turnResponse
	alice.mustDo("POST", "/v1/conversations/"+alice.conversation("failover-429")+"/messages", map[string]any{"content": "Hello"}, 200, &turn)
	if turn.Run.Status != "succeeded" {
		t.Fatalf("failover-429 run status = %s, want succeeded", turn.Run.Status)
	}
	key := s.newAPIKey(alice, apikeys.NewKey{})
	key.mustDo("POST", "/v1/images/generations", map[string]any{"model": "image-failover", "prompt": "a red fox"}, 200, nil)

	tokens := []struct {
		name       string
		token      string
		wantStatus int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"wrong token", "wrong", http.StatusUnauthorized},
		{"metrics token", workerMetricsToken, http.StatusOK},
	}
	for _, tt := range tokens {
		t.Run(tt.name, func(t *testing.T) {
			if status, body := getWithToken(t, base+"/metrics", tt.token); status != tt.wantStatus {
				t.Errorf("GET /metrics: status %d, want %d: %.300s", status, tt.wantStatus, body)
			}
		})
	}

	want := []string{
		`aihigress_upstream_request_duration_seconds_count{model="mock-gpt",provider="mock",source="worker",status="ok"} 1`,
		`aihigress_upstream_time_to_first_token_seconds_count{model="mock-gpt",provider="mock",source="worker"} 1`,
		`aihigress_upstream_tokens_total{direction="out",model="mock-gpt",provider="mock",source="worker"}`,
		`aihigress_upstream_request_duration_seconds_count{model="failover-429",provider="mock",source="worker",status="rate_limited"} 1`,
		`aihigress_failovers_total{from_provider="mock",source="worker",to_provider="mock"} 1`,
		`aihigress_cooldowns_total{provider="mock",reason="rate_limited"} 1`,
		`aihigress_upstream_request_duration_seconds_count{model="image-failover",provider="mock-images",source="worker",status="upstream_error"} 1`,
		`aihigress_upstream_request_duration_seconds_count{model="image-failover",provider="mock-images",source="worker",status="ok"} 1`,
		`aihigress_failovers_total{from_provider="mock-images",source="worker",to_provider="mock-images"} 1`,
		`aihigress_runs_finished_total{kind="chat",status="succeeded"} 2`,
		`aihigress_runs_finished_total{kind="image",status="succeeded"} 1`,
		`aihigress_run_duration_seconds_count{kind="chat",status="succeeded"} 2`,
		`aihigress_event_publish_lag_seconds_count{stage="publish"}`,
		// The API of this test runs in the worker's process, so its SSE
		// deliveries land in the same registry.
		`aihigress_event_publish_lag_seconds_count{stage="deliver"}`,
		// The Temporal SDK's metrics, reported through tally every second.
		`temporal_request_total{`,
		`temporal_workflow_completed_total{`,
		`temporal_activity_execution_latency_seconds_count{activity_type="StreamChat"`,
		`temporal_workflow_task_execution_latency_seconds_count{`,
	}
	var text string
	waitFor(t, 15*time.Second, "the worker's /metrics to show every expected series", func() bool {
		_, text = getWithToken(t, base+"/metrics", workerMetricsToken)
		for _, line := range want {
			if !strings.Contains(text, line) {
				return false
			}
		}
		return true
	})

	// The minute buckets reach the database at the flush, and the admin
	// report counts the attempts of both runs on provider mock.
	if err := s.app.Recorder.Aggregator().Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	admin := s.newSuperuser()
	var report struct {
		Providers []struct {
			ProviderID string           `json:"provider_id"`
			Requests   int64            `json:"requests"`
			Errors     int64            `json:"errors"`
			Statuses   map[string]int64 `json:"statuses"`
		} `json:"providers"`
	}
	admin.mustDo("GET", "/admin/metrics/providers?window=5m", nil, 200, &report)
	found := map[string]bool{}
	for _, p := range report.Providers {
		found[p.ProviderID] = true
		switch p.ProviderID {
		case "mock":
			if p.Requests != 3 || p.Errors != 1 || p.Statuses["rate_limited"] != 1 {
				t.Errorf("provider mock: %d requests, %d errors, statuses %v; want 3, 1, one rate_limited", p.Requests, p.Errors, p.Statuses)
			}
		case "mock-images":
			if p.Requests != 2 || p.Errors != 1 {
				t.Errorf("provider mock-images: %d requests, %d errors; want 2, 1", p.Requests, p.Errors)
			}
		}
	}
	if !found["mock"] || !found["mock-images"] {
		t.Errorf("report lacks provider mock or mock-images: %+v", report.Providers)
	}

	stopWorker()
	if status, _ := getWithToken(t, base+"/healthz", ""); status == http.StatusOK {
		t.Error("/healthz still answers 200 after the worker stopped")
	}
}

// TestMetricsOff runs the API and the worker with METRICS_ENABLED off: chat
// runs and gateway requests still work, neither process serves /metrics,
// the worker still serves /healthz, and no provider bucket is written.
func TestMetricsOff(t *testing.T) {
	addr := freeAddr(t)
	s := newStack(t, stackOptions{noWorker: true, env: map[string]string{
		"METRICS_ENABLED":     "off",
		"WORKER_METRICS_ADDR": addr,
	}})
	if s.app.Recorder != nil {
		t.Fatal("the app has a metrics recorder with METRICS_ENABLED off")
	}
	startWorker(t, s, addr)
	base := "http://" + addr

	alice := s.newUser()
	stream := alice.postStreaming("/v1/conversations/"+alice.conversation("mock-gpt")+"/messages", map[string]any{"content": "Hello", "streaming": true})
	stream.readUntil(t, "done")
	stream.close()
	key := s.newAPIKey(alice, apikeys.NewKey{})
	key.mustDo("POST", "/v1/chat/completions", map[string]any{"model": "mock-gpt", "messages": []map[string]string{{"role": "user", "content": "Hello"}}}, 200, nil)

	if status, body := getWithToken(t, base+"/metrics", ""); status != http.StatusNotFound {
		t.Errorf("worker GET /metrics: status %d, want 404: %.300s", status, body)
	}
	if status, body := getWithToken(t, s.baseURL+"/metrics", ""); status != http.StatusNotFound {
		t.Errorf("API GET /metrics: status %d, want 404: %.300s", status, body)
	}
	var rows int64
	if err := s.app.Store.DB.Table("provider_metrics_minute").Count(&rows).Error; err != nil {
		t.Fatal(err)
	}
	if rows != 0 {
		t.Errorf("provider_metrics_minute has %d rows, want 0", rows)
	}
}
