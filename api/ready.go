package api

import (
	"context"
	"errors"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"
	"go.temporal.io/sdk/client"

	"github.com/aihigress/aihigress/internal/store"
)

// Defaults of Readiness. Kubernetes gives a probe 1 s by default
// (timeoutSeconds), and the checks run in parallel, so a check that takes
// the whole DefaultReadyCheckTimeout still leaves time for the response.
const (
	DefaultReadyCheckTimeout = 800 * time.Millisecond
	DefaultReadyCacheTTL     = time.Second
)

// ReadyCheck is one dependency that GET /readyz checks. Check returns nil
// when the dependency responded before ctx ended.
type ReadyCheck struct {
	Name  string
	Check func(ctx context.Context) error
}

// Readiness configures GET /readyz.
type Readiness struct {
	Checks []ReadyCheck
	// Timeout bounds each check. Zero means DefaultReadyCheckTimeout.
	Timeout time.Duration
	// CacheTTL is how long a report is reused, so that frequent probes
	// from several load balancers cost one round of checks. Zero means
	// DefaultReadyCacheTTL.
	CacheTTL time.Duration
}

// PingDatabase returns the check that the database responds to a ping.
func PingDatabase(st *store.Store) ReadyCheck {
	return ReadyCheck{Name: "database", Check: st.Ping}
}

// PingRedis returns the check that Redis responds to PING.
func PingRedis(rdb *redis.Client) ReadyCheck {
	return ReadyCheck{Name: "redis", Check: func(ctx context.Context) error { return rdb.Ping(ctx).Err() }}
}

// CheckTemporal returns the check that the Temporal frontend responds to
// its gRPC health check.
func CheckTemporal(c client.Client) ReadyCheck {
	return ReadyCheck{Name: "temporal", Check: func(ctx context.Context) error {
		_, err := c.CheckHealth(ctx, &client.CheckHealthRequest{})
		return err
	}}
}

// readyReport is the body of GET /readyz.
type readyReport struct {
	// Status is "ok", "unavailable" when a check failed, or "draining"
	// when the server is shutting down.
	Status string `json:"status"`
	// Checks is absent while draining, because no check runs then.
	Checks map[string]checkResult `json:"checks,omitempty"`
	// CheckedAt is when the checks ran, which a cached report keeps.
	CheckedAt *time.Time `json:"checked_at,omitempty"`
}

// checkResult is the outcome of one check. Error is a fixed text, because
// the endpoint is public and the underlying error can contain addresses.
type checkResult struct {
	Status    string  `json:"status"`
	LatencyMS float64 `json:"latency_ms"`
	Error     string  `json:"error,omitempty"`
}

// readyCache keeps the last report of GET /readyz and the last outcome of
// each check, which decides when a change is logged.
type readyCache struct {
	mu     sync.Mutex
	report readyReport
	ok     bool
	// failing holds the names of the checks whose last run failed.
	failing map[string]bool
}

// readyz returns 200 when every dependency of Readiness responded within its
// timeout, and 503 otherwise or while the server is draining.
func (s *Server) readyz(c *gin.Context) {
	if s.drain.draining.Load() {
		c.JSON(http.StatusServiceUnavailable, readyReport{Status: "draining"})
		return
	}
	report, ok := s.readyReport(c.Request.Context())
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	c.JSON(status, report)
}

// readyReport returns the cached report while it is fresh and runs the
// checks otherwise. The lock makes concurrent probes share one run.
func (s *Server) readyReport(ctx context.Context) (readyReport, bool) {
	ttl := s.Readiness.CacheTTL
	if ttl <= 0 {
		ttl = DefaultReadyCacheTTL
	}
	cache := &s.ready
	cache.mu.Lock()
	defer cache.mu.Unlock()
	if at := cache.report.CheckedAt; at != nil && time.Since(*at) < ttl {
		return cache.report, cache.ok
	}

	// The checks outlive a probe that gave up, so the next probe finds a
	// complete report.
	results := s.runReadyChecks(context.WithoutCancel(ctx))
	now := time.Now()
	report := readyReport{Status: "ok", Checks: results, CheckedAt: &now}
	for _, r := range results {
		if r.Status != "ok" {
			report.Status = "unavailable"
		}
	}
	cache.report, cache.ok = report, report.Status == "ok"
	return report, cache.ok
}

// runReadyChecks runs every check in parallel, each with the timeout, and
// logs each check whose outcome changed.
func (s *Server) runReadyChecks(ctx context.Context) map[string]checkResult {
	timeout := s.Readiness.Timeout
	if timeout <= 0 {
		timeout = DefaultReadyCheckTimeout
	}
	checks := s.Readiness.Checks
	results := make([]checkResult, len(checks))
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, check := range checks {
		wg.Go(func() {
			checkCtx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			started := time.Now()
			err := check.Check(checkCtx)
			latency := time.Since(started)
			results[i] = checkResult{Status: "ok", LatencyMS: math.Round(float64(latency.Microseconds())/10) / 100}
			if err != nil {
				results[i].Status = "failed"
				results[i].Error = "check failed; the server log has the cause"
				if errors.Is(err, context.DeadlineExceeded) || checkCtx.Err() != nil {
					results[i].Error = "timed out after " + timeout.String()
				}
				errs[i] = err
			}
		})
	}
	wg.Wait()

	byName := make(map[string]checkResult, len(checks))
	for i, check := range checks {
		byName[check.Name] = results[i]
		s.logReadyChange(check.Name, results[i], errs[i])
	}
	return byName
}

// logReadyChange logs a check that started to fail, with the error, and one
// that recovered. Repeated outcomes are not logged, so a probe every second
// does not flood the log. The caller holds s.ready.mu.
func (s *Server) logReadyChange(name string, result checkResult, err error) {
	cache := &s.ready
	if cache.failing == nil {
		cache.failing = make(map[string]bool)
	}
	failed := err != nil
	if failed == cache.failing[name] {
		return
	}
	cache.failing[name] = failed
	if failed {
		s.Logger.Warn("readiness check failed; GET /readyz returns 503", "check", name, "latency_ms", result.LatencyMS, "error", err)
		return
	}
	s.Logger.Info("readiness check passes again", "check", name, "latency_ms", result.LatencyMS)
}
