package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/aihigress/aihigress/internal/testenv"
)

// closedAddr returns a loopback address that refuses connections: a port
// that this test listened on and closed.
func closedAddr(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := listener.Addr().String()
	if err := listener.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// readyBody is the body of GET /readyz.
type readyBody struct {
	Status string `json:"status"`
	Checks map[string]struct {
		Status    string   `json:"status"`
		LatencyMS *float64 `json:"latency_ms"`
		Error     string   `json:"error"`
	} `json:"checks"`
	CheckedAt *time.Time `json:"checked_at"`
}

// getReadyz sends GET /readyz to handler and decodes the response.
func getReadyz(t *testing.T, handler http.Handler) (int, readyBody, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	var body readyBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("decode /readyz body %q: %v", rec.Body.String(), err)
	}
	return rec.Code, body, rec.Body.String()
}

func TestReadyz(t *testing.T) {
	st := testenv.Store(t)
	rdb, _ := testenv.RedisClient(t)
	down := closedAddr(t)

	// Without retries, the refused connection fails the check at once
	// instead of at the timeout.
	deadRedis := redis.NewClient(&redis.Options{Addr: down, MaxRetries: -1})
	t.Cleanup(func() { _ = deadRedis.Close() })
	deadTemporal, err := client.NewLazyClient(client.Options{HostPort: down, Logger: tlog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(deadTemporal.Close)

	temporalUp := ReadyCheck{Name: "temporal", Check: func(context.Context) error { return nil }}
	hangs := ReadyCheck{Name: "temporal", Check: func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}}

	tests := []struct {
		name       string
		checks     []ReadyCheck
		timeout    time.Duration
		wantStatus int
		// wantFailed maps each check that must fail to a text its error
		// contains. Every other check must pass.
		wantFailed map[string]string
	}{
		{name: "all reachable", checks: []ReadyCheck{PingDatabase(st), PingRedis(rdb), temporalUp},
			wantStatus: http.StatusOK},
		{name: "redis down", checks: []ReadyCheck{PingDatabase(st), PingRedis(deadRedis), temporalUp},
			wantStatus: http.StatusServiceUnavailable, wantFailed: map[string]string{"redis": "check failed"}},
		{name: "temporal down", checks: []ReadyCheck{PingDatabase(st), PingRedis(rdb), CheckTemporal(deadTemporal)},
			wantStatus: http.StatusServiceUnavailable, wantFailed: map[string]string{"temporal": ""}},
		{name: "redis and temporal down", checks: []ReadyCheck{PingDatabase(st), PingRedis(deadRedis), CheckTemporal(deadTemporal)},
			wantStatus: http.StatusServiceUnavailable, wantFailed: map[string]string{"redis": "", "temporal": ""}},
		{name: "check hangs", checks: []ReadyCheck{PingDatabase(st), hangs}, timeout: 50 * time.Millisecond,
			wantStatus: http.StatusServiceUnavailable, wantFailed: map[string]string{"temporal": "timed out after 50ms"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Server{Logger: slog.New(slog.DiscardHandler), Readiness: Readiness{Checks: tt.checks, Timeout: tt.timeout}}
			started := time.Now()
			status, body, raw := getReadyz(t, s.Handler())
			elapsed := time.Since(started)

			if status != tt.wantStatus {
				t.Errorf("status = %d, want %d; body %s", status, tt.wantStatus, raw)
			}
			wantBodyStatus := "ok"
			if len(tt.wantFailed) > 0 {
				wantBodyStatus = "unavailable"
			}
			if body.Status != wantBodyStatus {
				t.Errorf("body status = %q, want %q", body.Status, wantBodyStatus)
			}
			if len(body.Checks) != len(tt.checks) {
				t.Errorf("body has %d checks, want %d: %s", len(body.Checks), len(tt.checks), raw)
			}
			for _, check := range tt.checks {
				got, ok := body.Checks[check.Name]
				if !ok {
					t.Errorf("check %s is missing from %s", check.Name, raw)
					continue
				}
				if got.LatencyMS == nil || *got.LatencyMS < 0 {
					t.Errorf("check %s latency_ms = %v, want a non-negative number", check.Name, got.LatencyMS)
				}
				wantError, wantFail := tt.wantFailed[check.Name]
				switch {
				case !wantFail && (got.Status != "ok" || got.Error != ""):
					t.Errorf("check %s = %+v, want ok", check.Name, got)
				case wantFail && got.Status != "failed":
					t.Errorf("check %s status = %q, want failed", check.Name, got.Status)
				case wantFail && (got.Error == "" || !strings.Contains(got.Error, wantError)):
					t.Errorf("check %s error = %q, want one containing %q", check.Name, got.Error, wantError)
				}
			}
			if strings.Contains(raw, down) {
				t.Errorf("body %s contains the address %s of a dependency", raw, down)
			}
			if limit := max(tt.timeout, DefaultReadyCheckTimeout) + 500*time.Millisecond; elapsed > limit {
				t.Errorf("GET /readyz took %s, want under %s", elapsed, limit)
			}
		})
	}
}

func TestReadyzCachesReport(t *testing.T) {
	var runs atomic.Int32
	counted := ReadyCheck{Name: "database", Check: func(context.Context) error {
		runs.Add(1)
		return nil
	}}
	s := &Server{Logger: slog.New(slog.DiscardHandler),
		Readiness: Readiness{Checks: []ReadyCheck{counted}, CacheTTL: 200 * time.Millisecond}}
	handler := s.Handler()

	_, first, _ := getReadyz(t, handler)
	_, second, _ := getReadyz(t, handler)
	if got := runs.Load(); got != 1 {
		t.Errorf("two probes within the cache TTL ran the check %d times, want 1", got)
	}
	if first.CheckedAt == nil || second.CheckedAt == nil || !first.CheckedAt.Equal(*second.CheckedAt) {
		t.Errorf("checked_at = %v then %v, want the same time from the cache", first.CheckedAt, second.CheckedAt)
	}

	time.Sleep(250 * time.Millisecond)
	getReadyz(t, handler)
	if got := runs.Load(); got != 2 {
		t.Errorf("a probe after the cache TTL ran the check %d times in all, want 2", got)
	}
}

func TestReadyzWhileDraining(t *testing.T) {
	tests := []struct {
		name  string
		drain func(*Server)
	}{
		{"StartDraining", (*Server).StartDraining},
		{"EndStreams", (*Server).EndStreams},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var runs atomic.Int32
			counted := ReadyCheck{Name: "database", Check: func(context.Context) error {
				runs.Add(1)
				return nil
			}}
			// A nanosecond cache makes every probe that does not get
			// "draining" run the check.
			s := &Server{Logger: slog.New(slog.DiscardHandler), Readiness: Readiness{Checks: []ReadyCheck{counted}, CacheTTL: time.Nanosecond}}
			handler := s.Handler()
			if status, _, raw := getReadyz(t, handler); status != http.StatusOK {
				t.Fatalf("before draining: status %d, want 200; body %s", status, raw)
			}

			tt.drain(s)
			status, body, raw := getReadyz(t, handler)
			if status != http.StatusServiceUnavailable {
				t.Errorf("status = %d, want 503; body %s", status, raw)
			}
			if body.Status != "draining" || len(body.Checks) != 0 {
				t.Errorf("body = %s, want status draining without checks", raw)
			}
			if got := runs.Load(); got != 1 {
				t.Errorf("checks ran %d times, want 1: a draining server runs none", got)
			}

			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
			if rec.Code != http.StatusOK {
				t.Errorf("GET /healthz while draining: status %d, want 200", rec.Code)
			}
		})
	}
}
