package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/aihigress/aihigress/internal/metrics"
	"github.com/aihigress/aihigress/internal/providers"
)

func TestRecorderExportsAttempts(t *testing.T) {
	r := metrics.New(metrics.Options{})
	r.RecordAttempt(metrics.Attempt{Source: metrics.SourceGateway, ProviderID: "p1", LogicalModel: "m", Status: metrics.StatusOK,
		Latency: 300 * time.Millisecond, TimeToFirstToken: 80 * time.Millisecond, TokensIn: 11, TokensOut: 7})
	r.RecordAttempt(metrics.Attempt{Source: metrics.SourceWorker, ProviderID: "p1", LogicalModel: "m", Status: "rate_limited", Latency: 20 * time.Millisecond})
	r.RecordAttempt(metrics.Attempt{Source: metrics.SourceWorker, LogicalModel: "m", Status: metrics.StatusOK}) // no provider: ignored
	r.RecordFailover(metrics.SourceGateway, "p1", "p2")
	r.RecordCooldown("p1", "rate_limited")
	r.RecordRunFinished("chat", "succeeded", 2*time.Second)
	r.ObservePublishLag(time.Now().Add(-30 * time.Millisecond))
	r.ObserveDeliverLag(time.Now().Add(time.Hour)) // clock skew: recorded as 0

	text := scrape(t, r.Handler(""), "")
	want := []string{
		`aihigress_upstream_request_duration_seconds_count{model="m",provider="p1",source="gateway",status="ok"} 1`,
		`aihigress_upstream_request_duration_seconds_count{model="m",provider="p1",source="worker",status="rate_limited"} 1`,
		`aihigress_upstream_time_to_first_token_seconds_bucket{model="m",provider="p1",source="gateway",le="0.1"} 1`,
		`aihigress_upstream_tokens_total{direction="in",model="m",provider="p1",source="gateway"} 11`,
		`aihigress_upstream_tokens_total{direction="out",model="m",provider="p1",source="gateway"} 7`,
		`aihigress_failovers_total{from_provider="p1",source="gateway",to_provider="p2"} 1`,
		`aihigress_cooldowns_total{provider="p1",reason="rate_limited"} 1`,
		`aihigress_runs_finished_total{kind="chat",status="succeeded"} 1`,
		`aihigress_run_duration_seconds_sum{kind="chat",status="succeeded"} 2`,
		`aihigress_event_publish_lag_seconds_count{stage="publish"} 1`,
		`aihigress_event_publish_lag_seconds_bucket{stage="deliver",le="0.001"} 1`,
		`go_goroutines `,
	}
	for _, line := range want {
		if !strings.Contains(text, line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	if strings.Contains(text, `provider=""`) {
		t.Error("an attempt without a provider was exported")
	}
	// Without a database the aggregator and its series are absent.
	if r.Aggregator() != nil || strings.Contains(text, "aihigress_provider_metrics_pending_buckets") {
		t.Error("a recorder without a database has an aggregator")
	}
	if problems, err := testutil.GatherAndLint(r.Registry()); err != nil || len(problems) > 0 {
		t.Errorf("metric lint: %v %v", problems, err)
	}
}

func TestNilRecorderIsANoOp(t *testing.T) {
	var r *metrics.Recorder
	calls := map[string]func(){
		"RecordAttempt":     func() { r.RecordAttempt(metrics.Attempt{ProviderID: "p"}) },
		"RecordFailover":    func() { r.RecordFailover("gateway", "a", "b") },
		"RecordCooldown":    func() { r.RecordCooldown("p", "failures") },
		"RecordRunFinished": func() { r.RecordRunFinished("chat", "failed", time.Second) },
		"ObservePublishLag": func() { r.ObservePublishLag(time.Now()) },
		"ObserveDeliverLag": func() { r.ObserveDeliverLag(time.Now()) },
		"Start":             r.Start,
		"Close":             func() { _ = r.Close(context.Background()) },
		"TemporalHandler": func() {
			if r.TemporalHandler() != nil {
				t.Error("nil recorder returned a Temporal handler")
			}
		},
		"Registry": func() {
			if r.Registry() != nil || r.Aggregator() != nil {
				t.Error("nil recorder returned a registry or aggregator")
			}
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) { call() })
	}
}

func TestStatusOf(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	upstream := &providers.UpstreamError{Kind: providers.ErrorServer, StatusCode: 502}
	tests := []struct {
		name      string
		ctx       context.Context
		err       error
		want      string
		wantError bool
	}{
		{"success", context.Background(), nil, metrics.StatusOK, false},
		{"success after the caller left", canceled, nil, metrics.StatusOK, false},
		{"upstream 5xx", context.Background(), upstream, "upstream_error", true},
		{"wrapped upstream error", context.Background(), fmt.Errorf("attempt: %w", upstream), "upstream_error", true},
		{"forward error", context.Background(), &providers.ForwardError{UpstreamError: &providers.UpstreamError{Kind: providers.ErrorRateLimited}}, "rate_limited", true},
		{"bad request", context.Background(), &providers.UpstreamError{Kind: providers.ErrorBadRequest}, "upstream_bad_request", false},
		{"rejected credential", context.Background(), &providers.UpstreamError{Kind: providers.ErrorAuth}, "upstream_auth", true},
		{"caller left", canceled, upstream, metrics.StatusCanceled, false},
		{"context canceled error", context.Background(), context.Canceled, metrics.StatusCanceled, false},
		{"local error", context.Background(), errors.New("unsupported provider kind"), metrics.StatusError, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := metrics.StatusOf(tt.ctx, tt.err)
			if got != tt.want {
				t.Errorf("StatusOf = %q, want %q", got, tt.want)
			}
			if metrics.CountsAsError(got) != tt.wantError {
				t.Errorf("CountsAsError(%q) = %v, want %v", got, !tt.wantError, tt.wantError)
			}
		})
	}
}

func TestHealthStatus(t *testing.T) {
	custom := metrics.HealthThresholds{DegradedErrorRate: 0.1, UnhealthyErrorRate: 0.5, MinRequests: 4}
	tests := []struct {
		name             string
		thresholds       metrics.HealthThresholds
		requests, errors int64
		want             string
	}{
		{"no traffic", metrics.HealthThresholds{}, 0, 0, metrics.HealthUnknown},
		{"below the default minimum", metrics.HealthThresholds{}, 9, 9, metrics.HealthUnknown},
		{"at the default minimum, no errors", metrics.HealthThresholds{}, 10, 0, metrics.HealthHealthy},
		{"just below 5%", metrics.HealthThresholds{}, 1000, 49, metrics.HealthHealthy},
		{"at 5%", metrics.HealthThresholds{}, 100, 5, metrics.HealthDegraded},
		{"just below 25%", metrics.HealthThresholds{}, 100, 24, metrics.HealthDegraded},
		{"at 25%", metrics.HealthThresholds{}, 100, 25, metrics.HealthUnhealthy},
		{"all failed", metrics.HealthThresholds{}, 50, 50, metrics.HealthUnhealthy},
		{"custom minimum", custom, 3, 3, metrics.HealthUnknown},
		{"custom degraded", custom, 10, 1, metrics.HealthDegraded},
		{"custom still degraded", custom, 10, 4, metrics.HealthDegraded},
		{"custom unhealthy", custom, 10, 5, metrics.HealthUnhealthy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.thresholds.Status(tt.requests, tt.errors); got != tt.want {
				t.Errorf("Status(%d, %d) = %s, want %s", tt.requests, tt.errors, got, tt.want)
			}
		})
	}
}

// scrape fetches /metrics from handler with token as bearer token (none
// when empty) and returns the body; it fails unless the status is 200.
func scrape(t *testing.T, handler http.Handler, token string) string {
	t.Helper()
	status, body := get(t, handler, "/metrics", token)
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: status %d: %s", status, body)
	}
	return body
}

func get(t *testing.T, handler http.Handler, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://metrics.invalid"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}
