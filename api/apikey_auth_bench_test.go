package api

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/aihigress/aihigress/internal/apikeys"
)

// The API key benchmarks serve a trivial gin handler with and without
// requireAPIKey in front of it, on one engine, so that the difference is
// the cost of authentication alone. docs/benchmarks.md records the figures
// and the command.

// discardWriter is a ResponseWriter that keeps only the status, so that the
// benchmarks do not measure httptest.ResponseRecorder.
type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }

// authBench is an engine with GET /plain (no authentication) and GET /authed
// (requireAPIKey), and a request for each that carries a valid key.
type authBench struct {
	engine *gin.Engine
	plain  *http.Request
	authed *http.Request
	writer *discardWriter
}

// lookupPath selects which cache a warm request finds the key in.
type lookupPath int

const (
	localHit lookupPath = iota
	redisHit
	databaseHit
)

func newAuthBench(b *testing.B, path lookupPath) *authBench {
	b.Helper()
	k := newKeyTestServer(b, apikeys.Options{})
	secret := k.createKey(k.user(), map[string]any{"name": "bench", "allowed_ips": []string{"192.0.2.0/24"}}).Key

	opts := apikeys.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	switch path {
	case localHit:
		opts.Redis, opts.RedisPrefix = k.rdb, k.redisPrefix
	case redisHit:
		opts.Redis, opts.RedisPrefix, opts.LocalCacheSize = k.rdb, k.redisPrefix, -1
	case databaseHit:
		opts.LocalCacheSize = -1
	}
	keys, err := apikeys.NewService(k.server.Store, testMasterKey, opts)
	if err != nil {
		b.Fatal(err)
	}
	// The test server with this key service. Server is not copied as a
	// whole, because it contains its shutdown state.
	base := k.server
	s := &Server{Store: base.Store, Issuer: base.Issuer, Catalog: base.Catalog, APIKeys: keys, Tokens: base.Tokens,
		Limits: base.Limits, Logger: base.Logger}

	gin.SetMode(gin.ReleaseMode)
	engine := gin.New()
	ok := func(c *gin.Context) { c.String(http.StatusOK, "ok") }
	engine.GET("/plain", ok)
	engine.GET("/authed", s.requireAPIKey, ok)

	bench := &authBench{
		engine: engine,
		plain:  httptest.NewRequest("GET", "/plain", nil),
		authed: httptest.NewRequest("GET", "/authed", nil),
		writer: &discardWriter{header: http.Header{}},
	}
	bench.authed.Header.Set("Authorization", "Bearer "+secret)
	// Both requests carry the header, so that they differ only in the route.
	bench.plain.Header.Set("Authorization", "Bearer "+secret)

	// Warm the caches that the path uses.
	for range 3 {
		bench.serve(b, bench.authed)
	}
	return bench
}

// serve handles req and returns how long it took.
func (a *authBench) serve(b *testing.B, req *http.Request) time.Duration {
	clear(a.writer.header)
	a.writer.status = 0
	start := time.Now()
	a.engine.ServeHTTP(a.writer, req)
	elapsed := time.Since(start)
	if a.writer.status != http.StatusOK {
		b.Fatalf("GET %s: status %d, want 200", req.URL.Path, a.writer.status)
	}
	return elapsed
}

func median(samples []time.Duration) time.Duration {
	slices.Sort(samples)
	return samples[len(samples)/2]
}

func micros(d time.Duration) float64 {
	return float64(d) / float64(time.Microsecond)
}

// BenchmarkAPIKeyAuth measures one request per path: ns/op is the mean and
// p50-us the median of the per-request times.
func BenchmarkAPIKeyAuth(b *testing.B) {
	cases := []struct {
		name   string
		path   lookupPath
		authed bool
	}{
		{"baseline", localHit, false},
		{"warm_local_cache", localHit, true},
		{"redis_hit", redisHit, true},
		{"database_miss", databaseHit, true},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			bench := newAuthBench(b, tc.path)
			req := bench.plain
			if tc.authed {
				req = bench.authed
			}
			samples := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				samples = append(samples, bench.serve(b, req))
			}
			b.StopTimer()
			b.ReportMetric(micros(median(samples)), "p50-us")
		})
	}
}

// BenchmarkAPIKeyAuthAdded alternates a baseline request and a request
// through requireAPIKey with a warm cache, so both see the same machine
// load. One op is one pair. It reports the median of each, the difference
// of the medians (p50-added-us), the difference of the means
// (mean-added-us) and the ratio of the medians.
func BenchmarkAPIKeyAuthAdded(b *testing.B) {
	bench := newAuthBench(b, localHit)
	plain := make([]time.Duration, 0, b.N)
	authed := make([]time.Duration, 0, b.N)
	var plainSum, authedSum time.Duration
	b.ResetTimer()
	for range b.N {
		p := bench.serve(b, bench.plain)
		a := bench.serve(b, bench.authed)
		plain, authed = append(plain, p), append(authed, a)
		plainSum, authedSum = plainSum+p, authedSum+a
	}
	b.StopTimer()

	plainP50, authedP50 := median(plain), median(authed)
	b.ReportMetric(micros(plainP50), "p50-baseline-us")
	b.ReportMetric(micros(authedP50), "p50-authed-us")
	b.ReportMetric(micros(authedP50-plainP50), "p50-added-us")
	b.ReportMetric(micros((authedSum-plainSum)/time.Duration(b.N)), "mean-added-us")
	b.ReportMetric(float64(authedP50)/float64(plainP50), "p50-ratio")
}
