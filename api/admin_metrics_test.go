package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aihigress/aihigress/api"
	"github.com/aihigress/aihigress/internal/apikeys"
	"github.com/aihigress/aihigress/internal/auth"
	"github.com/aihigress/aihigress/internal/metrics"
	"github.com/aihigress/aihigress/internal/mockupstream"
	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/router"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/internal/tokens"
	"github.com/aihigress/aihigress/models"
)

const metricsTestToken = "metrics-test-token"

// metricsEnv is an API server with a metrics recorder on a real database,
// in front of mock upstreams: provider "good" succeeds, "broken" fails with
// 500 and "limited" with 429.
type metricsEnv struct {
	t          *testing.T
	url        string
	store      *store.Store
	recorder   *metrics.Recorder
	adminToken string
	userToken  string
	apiKey     string
}

func newMetricsEnv(t *testing.T) *metricsEnv {
	t.Helper()
	ctx := context.Background()
	st := testenv.Store(t)
	rdb, prefix := testenv.RedisClient(t)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))

	catalog := providers.NewCatalog()
	chat := []providers.Capability{providers.CapabilityChat}
	candidate := func(provider, model string, priority int) providers.Candidate {
		return providers.Candidate{ProviderID: provider, Model: model, Priority: priority, Weight: 1}
	}
	modelsOf := map[string][]providers.LogicalModel{
		"good":    {{Name: "mock-gpt", Capabilities: chat, Candidates: []providers.Candidate{candidate("good", "mock-gpt", 0)}}},
		"broken":  nil,
		"limited": {{Name: "limited", Capabilities: chat, Candidates: []providers.Candidate{candidate("limited", "fault-429", 0)}}},
		"idle": {{Name: "failover", Capabilities: chat, Candidates: []providers.Candidate{
			candidate("broken", "fault-500", 2), candidate("good", "mock-gpt", 1)}}},
	}
	for _, id := range []string{"good", "broken", "limited", "idle"} {
		mock, err := mockupstream.Start("", mockupstream.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = mock.Close() })
		if err := catalog.AddProvider(providers.Provider{ID: id, Name: id, Kind: "openai", BaseURL: mock.URL() + "/v1"}, modelsOf[id]...); err != nil {
			t.Fatal(err)
		}
	}

	recorder := metrics.New(metrics.Options{DB: st.DB})
	rt := router.New(catalog, rdb, prefix, router.Options{Logger: logger, OnCooldown: recorder.RecordCooldown})
	keys, err := apikeys.NewService(st, gatewayMasterKey, apikeys.Options{Redis: rdb, RedisPrefix: prefix, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	issuer := auth.NewIssuer(testJWTSecret, time.Hour, time.Hour, time.Now)
	sessions := tokens.New(rdb, tokens.Options{Prefix: prefix})
	upstream := providers.NewClient(providers.ClientOptions{})
	t.Cleanup(upstream.CloseIdleConnections)

	server := &api.Server{
		Store:          st,
		Issuer:         issuer,
		Tokens:         sessions,
		Catalog:        catalog,
		APIKeys:        keys,
		Router:         rt,
		Upstream:       upstream,
		Limits:         api.Limits{MaxBodyBytes: 1 << 20, MaxContentChars: 32000, UpstreamMaxAttempts: 4},
		Logger:         logger,
		Metrics:        api.NewMetricsOn(recorder.Registry()),
		MetricsToken:   metricsTestToken,
		Recorder:       recorder,
		ProviderHealth: metrics.HealthThresholds{MinRequests: 10},
	}
	srv := httptest.NewServer(server.Handler())
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})

	env := &metricsEnv{t: t, url: srv.URL, store: st, recorder: recorder}
	var adminID string
	env.adminToken, adminID = env.session(issuer, sessions, "root", true)
	env.userToken, _ = env.session(issuer, sessions, "plain", false)
	env.apiKey, _, err = keys.Create(ctx, adminID, apikeys.NewKey{Name: "metrics test"})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// session creates a user and returns an access token of a recorded session
// and the user's ID.
func (e *metricsEnv) session(issuer *auth.Issuer, sessions *tokens.Store, name string, superuser bool) (string, string) {
	e.t.Helper()
	user := &models.User{Username: name, Email: name + "@example.com", PasswordHash: "x", IsSuperuser: superuser, IsActive: true}
	if err := e.store.CreateUser(context.Background(), user); err != nil {
		e.t.Fatal(err)
	}
	pair, err := issuer.IssuePair(user.ID, auth.NewSessionID())
	if err != nil {
		e.t.Fatal(err)
	}
	if err := sessions.Create(context.Background(), user.ID, pair.SessionID, pair.RefreshID, pair.RefreshExpiresAt); err != nil {
		e.t.Fatal(err)
	}
	return pair.AccessToken, user.ID
}

// call sends a request with credential as bearer token (none when empty)
// and returns the status and the whole body.
func (e *metricsEnv) call(method, path, credential, body string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if credential != "" {
		req.Header.Set("Authorization", "Bearer "+credential)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, string(raw)
}

func (e *metricsEnv) scrape() string {
	e.t.Helper()
	status, body := e.call("GET", "/metrics", metricsTestToken, "")
	if status != http.StatusOK {
		e.t.Fatalf("GET /metrics: status %d: %s", status, body)
	}
	return body
}

func TestGatewayProviderMetrics(t *testing.T) {
	e := newMetricsEnv(t)
	steps := []struct {
		name       string
		body       string
		wantStatus int
		// wantLines must appear on /metrics after the request.
		wantLines []string
	}{
		{
			name:       "stream",
			body:       `{"model":"mock-gpt","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello there"}]}`,
			wantStatus: http.StatusOK,
			wantLines: []string{
				`aihigress_upstream_request_duration_seconds_count{model="mock-gpt",provider="good",source="gateway",status="ok"} 1`,
				`aihigress_upstream_time_to_first_token_seconds_count{model="mock-gpt",provider="good",source="gateway"} 1`,
				`aihigress_upstream_tokens_total{direction="in",model="mock-gpt",provider="good",source="gateway"}`,
				`aihigress_upstream_tokens_total{direction="out",model="mock-gpt",provider="good",source="gateway"}`,
			},
		},
		{
			name:       "no stream",
			body:       `{"model":"mock-gpt","messages":[{"role":"user","content":"hello"}]}`,
			wantStatus: http.StatusOK,
			wantLines: []string{
				`aihigress_upstream_request_duration_seconds_count{model="mock-gpt",provider="good",source="gateway",status="ok"} 2`,
				// Only the streamed request has a time to first token.
				`aihigress_upstream_time_to_first_token_seconds_count{model="mock-gpt",provider="good",source="gateway"} 1`,
			},
		},
		{
			name:       "failover",
			body:       `{"model":"failover","messages":[{"role":"user","content":"hello"}]}`,
			wantStatus: http.StatusOK,
			wantLines: []string{
				`aihigress_upstream_request_duration_seconds_count{model="failover",provider="broken",source="gateway",status="upstream_error"} 1`,
				`aihigress_upstream_request_duration_seconds_count{model="failover",provider="good",source="gateway",status="ok"} 1`,
				`aihigress_failovers_total{from_provider="broken",source="gateway",to_provider="good"} 1`,
			},
		},
		{
			name:       "rate limited",
			body:       `{"model":"limited","messages":[{"role":"user","content":"hello"}]}`,
			wantStatus: http.StatusTooManyRequests,
			wantLines: []string{
				`aihigress_upstream_request_duration_seconds_count{model="limited",provider="limited",source="gateway",status="rate_limited"} 1`,
				`aihigress_cooldowns_total{provider="limited",reason="rate_limited"} 1`,
			},
		},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			status, body := e.call("POST", "/v1/chat/completions", e.apiKey, step.body)
			if status != step.wantStatus {
				t.Fatalf("status = %d, want %d: %s", status, step.wantStatus, body)
			}
			text := e.scrape()
			for _, line := range step.wantLines {
				if !strings.Contains(text, line) {
					t.Errorf("/metrics lacks %q", line)
				}
			}
		})
	}

	// The gateway's HTTP metrics share the registry.
	if text := e.scrape(); !strings.Contains(text, `aihigress_http_requests_total{method="POST",route="/v1/chat/completions",status="200"} 3`) {
		t.Error("/metrics lacks the HTTP request count of the gateway route")
	}

	// The flushed buckets show the same attempts per provider.
	if err := e.recorder.Aggregator().Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	report := e.providerReport("1h")
	want := map[string]struct{ requests, errors int64 }{
		"good": {3, 0}, "broken": {1, 1}, "limited": {1, 1}, "idle": {0, 0},
	}
	for _, p := range report.Providers {
		w, ok := want[p.ProviderID]
		if !ok {
			t.Errorf("unexpected provider %s in the report", p.ProviderID)
			continue
		}
		if p.Requests != w.requests || p.Errors != w.errors {
			t.Errorf("%s requests, errors = %d, %d, want %d, %d", p.ProviderID, p.Requests, p.Errors, w.requests, w.errors)
		}
		delete(want, p.ProviderID)
	}
	for id := range want {
		t.Errorf("provider %s is missing from the report", id)
	}
}

func TestMetricsEndpointToken(t *testing.T) {
	e := newMetricsEnv(t)
	tests := []struct {
		name       string
		credential string
		wantStatus int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"wrong token", "nope", http.StatusUnauthorized},
		{"user access token", e.adminToken, http.StatusUnauthorized},
		{"metrics token", metricsTestToken, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.call("GET", "/metrics", tt.credential, "")
			if status != tt.wantStatus {
				t.Errorf("status = %d, want %d: %.200s", status, tt.wantStatus, body)
			}
		})
	}
}

// providerReport is the decoded body of GET /admin/metrics/providers.
type providerReport struct {
	Window     string `json:"window"`
	From       time.Time
	To         time.Time
	Thresholds struct {
		DegradedErrorRate  float64 `json:"degraded_error_rate"`
		UnhealthyErrorRate float64 `json:"unhealthy_error_rate"`
		MinRequests        int     `json:"min_requests"`
	} `json:"thresholds"`
	Providers []providerSummary `json:"providers"`
}

type providerSummary struct {
	ProviderID   string         `json:"provider_id"`
	LogicalModel string         `json:"logical_model"`
	Status       string         `json:"status"`
	Requests     int64          `json:"requests"`
	Errors       int64          `json:"errors"`
	SuccessRate  *float64       `json:"success_rate"`
	ErrorRate    *float64       `json:"error_rate"`
	LatencyMS    latencySummary `json:"latency_ms"`
	TTFTMS       latencySummary `json:"ttft_ms"`
	Tokens       struct{ In, Out int64 }
	Statuses     map[string]int64 `json:"statuses"`
	Models       []providerSummary
}

type latencySummary struct {
	Count int64    `json:"count"`
	P50   *float64 `json:"p50"`
	P95   *float64 `json:"p95"`
	Mean  *float64 `json:"mean"`
}

func (e *metricsEnv) providerReport(window string) providerReport {
	e.t.Helper()
	status, body := e.call("GET", "/admin/metrics/providers?window="+window, e.adminToken, "")
	if status != http.StatusOK {
		e.t.Fatalf("GET /admin/metrics/providers?window=%s: status %d: %s", window, status, body)
	}
	var report providerReport
	if err := json.Unmarshal([]byte(body), &report); err != nil {
		e.t.Fatalf("decode %s: %v", body, err)
	}
	return report
}

func TestProviderMetricsWindowValidation(t *testing.T) {
	e := newMetricsEnv(t)
	tests := []struct {
		name       string
		query      string
		token      string
		wantStatus int
		wantCode   string
		wantWindow string
	}{
		{"default", "", e.adminToken, http.StatusOK, "", "1h0m0s"},
		{"one minute", "?window=1m", e.adminToken, http.StatusOK, "", "1m0s"},
		{"seven days", "?window=168h", e.adminToken, http.StatusOK, "", "168h0m0s"},
		{"odd seconds", "?window=90s", e.adminToken, http.StatusOK, "", "1m30s"},
		{"too short", "?window=59s", e.adminToken, http.StatusBadRequest, "invalid_window", ""},
		{"too long", "?window=169h", e.adminToken, http.StatusBadRequest, "invalid_window", ""},
		{"days are no Go unit", "?window=7d", e.adminToken, http.StatusBadRequest, "invalid_window", ""},
		{"negative", "?window=-1h", e.adminToken, http.StatusBadRequest, "invalid_window", ""},
		{"empty", "?window=", e.adminToken, http.StatusBadRequest, "invalid_window", ""},
		{"not a duration", "?window=soon", e.adminToken, http.StatusBadRequest, "invalid_window", ""},
		{"plain user", "?window=1h", e.userToken, http.StatusForbidden, "superuser_required", ""},
		{"no token", "?window=1h", "", http.StatusUnauthorized, "missing_token", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.call("GET", "/admin/metrics/providers"+tt.query, tt.token, "")
			if status != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %s", status, tt.wantStatus, body)
			}
			if tt.wantCode != "" {
				var parsed struct {
					Error struct {
						Code  string  `json:"code"`
						Param *string `json:"param"`
					} `json:"error"`
				}
				if err := json.Unmarshal([]byte(body), &parsed); err != nil || parsed.Error.Code != tt.wantCode {
					t.Errorf("body = %s, want error code %s", body, tt.wantCode)
				}
				if tt.wantCode == "invalid_window" && (parsed.Error.Param == nil || *parsed.Error.Param != "window") {
					t.Errorf("body = %s, want param window", body)
				}
				return
			}
			var report providerReport
			if err := json.Unmarshal([]byte(body), &report); err != nil {
				t.Fatal(err)
			}
			if report.Window != tt.wantWindow {
				t.Errorf("window = %s, want %s", report.Window, tt.wantWindow)
			}
			if report.From.Second() != 0 || report.From.After(report.To) {
				t.Errorf("from %s is not a minute start before to %s", report.From, report.To)
			}
		})
	}
}

func TestProviderMetricsSummary(t *testing.T) {
	e := newMetricsEnv(t)
	now := time.Now()
	aggregator := e.recorder.Aggregator()
	record := func(at time.Time, provider, model, status string, n int, latency, ttft time.Duration) {
		v := metrics.BucketValues{}
		for range n {
			v.Requests++
			if metrics.CountsAsError(status) {
				v.Errors++
			}
			v.Latency.Observe(latency)
			if ttft > 0 {
				v.TTFT.Observe(ttft)
			}
			if status == metrics.StatusOK {
				v.TokensIn += 10
				v.TokensOut += 20
			}
		}
		aggregator.Record(metrics.BucketKey{Start: at, ProviderID: provider, LogicalModel: model, Status: status}, v)
	}
	recent := now.Add(-30 * time.Minute)
	record(recent, "good", "mock-gpt", metrics.StatusOK, 30, 200*time.Millisecond, 50*time.Millisecond)
	record(now, "flaky", "a", metrics.StatusOK, 8, time.Second, 0)
	record(now, "flaky", "a", "upstream_error", 2, 3*time.Second, 0)
	record(now, "flaky", "b", "upstream_bad_request", 1, 100*time.Millisecond, 0)
	record(recent, "broken", "failover", "rate_limited", 10, 10*time.Millisecond, 0)
	record(recent, "quiet", "q", metrics.StatusOK, 3, time.Second, 0)
	// Three hours back, outside a one-hour window: 1000 failures of good.
	record(now.Add(-3*time.Hour), "good", "mock-gpt", "upstream_timeout", 1000, 60*time.Second, 0)
	if err := aggregator.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	type want struct {
		status             string
		requests, errors   int64
		successRate        *float64
		p50, p95, ttftP50  *float64
		tokensIn, tokenOut int64
		models             []string
	}
	f := func(v float64) *float64 { return &v }
	tests := []struct {
		window string
		want   map[string]want
	}{
		{"1h", map[string]want{
			// 30 requests at 200 ms sit in (100, 250]: p50 halfway in.
			"good":    {metrics.HealthHealthy, 30, 0, f(1), f(175), f(242.5), f(25), 300, 600, []string{"mock-gpt"}},
			"flaky":   {metrics.HealthDegraded, 11, 2, f(8.0 / 11), nil, nil, nil, 80, 160, []string{"a", "b"}},
			"broken":  {metrics.HealthUnhealthy, 10, 10, f(0), nil, nil, nil, 0, 0, []string{"failover"}},
			"quiet":   {metrics.HealthUnknown, 3, 0, f(1), nil, nil, nil, 30, 60, []string{"q"}},
			"idle":    {metrics.HealthUnknown, 0, 0, nil, nil, nil, nil, 0, 0, nil},
			"limited": {metrics.HealthUnknown, 0, 0, nil, nil, nil, nil, 0, 0, nil},
		}},
		{"4h", map[string]want{
			// The rank 978.5 lies in (20000, 60000], whose 1000 requests
			// start at rank 30: 20000 + 40000 * 948.5 / 1000.
			"good": {metrics.HealthUnhealthy, 1030, 1000, f(30.0 / 1030), nil, f(57940), f(25), 300, 600, []string{"mock-gpt"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.window, func(t *testing.T) {
			report := e.providerReport(tt.window)
			got := map[string]providerSummary{}
			for _, p := range report.Providers {
				got[p.ProviderID] = p
			}
			for id, w := range tt.want {
				p, ok := got[id]
				if !ok {
					t.Errorf("provider %s is missing", id)
					continue
				}
				if p.Status != w.status || p.Requests != w.requests || p.Errors != w.errors {
					t.Errorf("%s status, requests, errors = %s, %d, %d; want %s, %d, %d", id, p.Status, p.Requests, p.Errors, w.status, w.requests, w.errors)
				}
				checkRate(t, id+" success_rate", p.SuccessRate, w.successRate)
				if w.p50 != nil {
					checkRate(t, id+" latency p50", p.LatencyMS.P50, w.p50)
				}
				if w.p95 != nil {
					checkRate(t, id+" latency p95", p.LatencyMS.P95, w.p95)
				}
				if w.ttftP50 != nil {
					checkRate(t, id+" ttft p50", p.TTFTMS.P50, w.ttftP50)
				}
				if p.Tokens.In != w.tokensIn || p.Tokens.Out != w.tokenOut {
					t.Errorf("%s tokens = %d in, %d out; want %d, %d", id, p.Tokens.In, p.Tokens.Out, w.tokensIn, w.tokenOut)
				}
				var models []string
				for _, m := range p.Models {
					models = append(models, m.LogicalModel)
				}
				if fmt.Sprint(models) != fmt.Sprint(w.models) {
					t.Errorf("%s models = %v, want %v", id, models, w.models)
				}
			}
		})
	}

	// The per-model view of flaky splits its statuses.
	report := e.providerReport("1h")
	for _, p := range report.Providers {
		if p.ProviderID != "flaky" {
			continue
		}
		if p.Statuses["ok"] != 8 || p.Statuses["upstream_error"] != 2 || p.Statuses["upstream_bad_request"] != 1 {
			t.Errorf("flaky statuses = %v", p.Statuses)
		}
		if len(p.Models) != 2 || p.Models[1].Requests != 1 || p.Models[1].Errors != 0 || p.Models[1].Status != metrics.HealthUnknown {
			t.Errorf("flaky model b = %+v, want 1 request, no error, unknown", p.Models)
		}
		if p.ErrorRate == nil || math.Abs(*p.ErrorRate-2.0/11) > 1e-9 {
			t.Errorf("flaky error_rate = %v, want 2/11", p.ErrorRate)
		}
	}
	if report.Thresholds.DegradedErrorRate != 0.05 || report.Thresholds.UnhealthyErrorRate != 0.25 || report.Thresholds.MinRequests != 10 {
		t.Errorf("thresholds = %+v, want the defaults", report.Thresholds)
	}
}

func checkRate(t *testing.T, name string, got, want *float64) {
	t.Helper()
	switch {
	case want == nil && got != nil:
		t.Errorf("%s = %v, want null", name, *got)
	case want != nil && got == nil:
		t.Errorf("%s = null, want %v", name, *want)
	case want != nil && math.Abs(*got-*want) > 1e-6:
		t.Errorf("%s = %v, want %v", name, *got, *want)
	}
}
