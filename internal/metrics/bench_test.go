package metrics_test

import (
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/metrics"
	"github.com/aihigress/aihigress/internal/testenv"
)

// BenchmarkRecordAttempt measures what the request path pays per upstream
// attempt: the Prometheus observations and the in-memory bucket update.
func BenchmarkRecordAttempt(b *testing.B) {
	st := testenv.Store(b)
	r := metrics.New(metrics.Options{DB: st.DB})
	attempt := metrics.Attempt{Source: metrics.SourceGateway, ProviderID: "p", LogicalModel: "m", Status: metrics.StatusOK,
		Latency: 420 * time.Millisecond, TimeToFirstToken: 90 * time.Millisecond, TokensIn: 100, TokensOut: 50}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.RecordAttempt(attempt)
		}
	})
}
