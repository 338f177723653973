package ratelimit_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aihigress/aihigress/internal/ratelimit"
	"github.com/aihigress/aihigress/internal/testenv"
)

// countingScripter counts the scripts that reach Redis.
type countingScripter struct {
	*redis.Client
	calls atomic.Int64
}

func (c *countingScripter) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	c.calls.Add(1)
	return c.Client.EvalSha(ctx, sha1, keys, args...)
}

func (c *countingScripter) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	c.calls.Add(1)
	return c.Client.Eval(ctx, script, keys, args...)
}

// newLeasingRule returns a rule of limit per minute with leases of at most
// maxBatch slots and 1 s, counted Redis calls and a clock at a window start.
func newLeasingRule(t *testing.T, rdb *redis.Client, prefix string, limit, maxBatch int) (*ratelimit.Rule, *countingScripter, *clock) {
	t.Helper()
	counter := &countingScripter{Client: rdb}
	clk := &clock{now: windowStart(time.Minute)}
	limiter := ratelimit.New(counter, ratelimit.Options{Prefix: prefix, Now: clk.Now, Timeout: 2 * time.Second})
	rule := mustRule(t, limiter, "leased", limit, time.Minute)
	rule.EnableLeases(maxBatch, time.Second)
	return rule, counter, clk
}

func TestLeasesKeepTheLimit(t *testing.T) {
	tests := []struct {
		name      string
		processes int
	}{
		{"one process", 1},
		{"two processes", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rdb, prefix := testenv.RedisClient(t)
			const limit = 100
			var rules []*ratelimit.Rule
			var clocks []*clock
			for range tt.processes {
				rule, _, clk := newLeasingRule(t, rdb, prefix, limit, 16)
				rules = append(rules, rule)
				clocks = append(clocks, clk)
			}

			allowed := 0
			for i := range 3 * limit {
				res := allow(t, rules[i%len(rules)], "busy")
				if res.Allowed {
					allowed++
				}
				// 1 ms between requests keeps every lease live.
				for _, clk := range clocks {
					clk.Set(clk.Now().Add(time.Millisecond))
				}
			}
			if allowed > limit {
				t.Errorf("allowed %d requests in one window, want at most %d", allowed, limit)
			}
			if tt.processes == 1 && allowed != limit {
				t.Errorf("one process allowed %d requests, want exactly %d: a single client's leases waste no slot", allowed, limit)
			}
		})
	}
}

func TestLeasesSaveRoundTrips(t *testing.T) {
	rdb, prefix := testenv.RedisClient(t)
	rule, counter, clk := newLeasingRule(t, rdb, prefix, 1000, 32)

	const requests = 200
	for range requests {
		if res := allow(t, rule, "busy"); !res.Allowed {
			t.Fatalf("request rejected under the limit: %+v", res)
		}
		clk.Set(clk.Now().Add(time.Millisecond))
	}
	// Batches grow 1, 2, 4, ... 32, so 200 requests need about 11 checks.
	if calls := counter.calls.Load(); calls > requests/10 {
		t.Errorf("%d requests made %d Redis calls, want at most %d", requests, calls, requests/10)
	}
}

func TestLeasesSlowClientStaysExact(t *testing.T) {
	rdb, prefix := testenv.RedisClient(t)
	rule, counter, clk := newLeasingRule(t, rdb, prefix, 1000, 32)

	// The first run of the script also loads it, which is a second call.
	allow(t, rule, "warm-up")
	counter.calls.Store(0)

	// Requests 2 s apart outlive every 1 s lease, so each requests one slot
	// from Redis and no slot is reserved in vain.
	const requests = 10
	for range requests {
		allow(t, rule, "slow")
		clk.Set(clk.Now().Add(2 * time.Second))
	}
	if calls := counter.calls.Load(); calls != requests {
		t.Errorf("%d slow requests made %d Redis calls, want one each", requests, calls)
	}
	used, err := rdb.HGet(context.Background(), prefix+"rl:leased:slow", "c").Int()
	if err != nil {
		t.Fatal(err)
	}
	if used != requests {
		t.Errorf("Redis counted %d slots for %d requests, want them equal", used, requests)
	}
}
