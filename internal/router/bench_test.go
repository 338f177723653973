package router_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/router"
	"github.com/aihigress/aihigress/internal/testenv"
)

// BenchmarkPlanAcquire measures the routing cost of one gateway request:
// Plan for a model with three candidates on two providers, then Acquire on
// the first candidate, then Report of a success. Redis is embedded, or the
// server at TEST_REDIS_URL. The round-trips/op metric counts Redis round
// trips per request.
//
//	go test -run '^$' -bench PlanAcquire -benchmem ./internal/router/
func BenchmarkPlanAcquire(b *testing.B) {
	tests := []struct {
		name   string
		mirror bool
		maxQPS int
	}{
		{name: "mirror", mirror: true},
		{name: "mirror with MaxQPS", mirror: true, maxQPS: math.MaxInt32},
		{name: "no mirror", mirror: false},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			rdb, prefix := testenv.RedisClient(b)
			counter := &commandCounter{}
			rdb.AddHook(counter)

			keys := func(prefix string) []providers.ProviderKey {
				return []providers.ProviderKey{
					{ID: prefix + "-1", Secret: "s1", Weight: 2, MaxQPS: tt.maxQPS},
					{ID: prefix + "-2", Secret: "s2", Weight: 1, MaxQPS: tt.maxQPS},
				}
			}
			catalog := buildCatalog(b, catalogSpec{
				providers: []providers.Provider{{ID: "p1", Keys: keys("p1")}, {ID: "p2", Keys: keys("p2")}},
				models: []providers.LogicalModel{chatModel("m",
					candidate("p1", "a", 1, 3), candidate("p2", "a", 1, 1), candidate("p2", "b", 0, 1))},
			})
			r := router.New(catalog, rdb, prefix, router.Options{})
			if tt.mirror {
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() {
					defer close(done)
					_ = r.Run(ctx)
				}()
				b.Cleanup(func() {
					cancel()
					<-done
				})
				for !r.MirrorLive() {
					time.Sleep(time.Millisecond)
				}
			}

			ctx := context.Background()
			before := counter.n.Load()
			for b.Loop() {
				plan, err := r.Plan(ctx, "m", providers.CapabilityChat)
				if err != nil {
					b.Fatal(err)
				}
				pick, err := r.Acquire(ctx, plan[0])
				if err != nil {
					b.Fatal(err)
				}
				r.Report(ctx, pick, nil)
			}
			b.ReportMetric(float64(counter.n.Load()-before)/float64(b.N), "round-trips/op")
		})
	}
}
