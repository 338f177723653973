package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aihigress/aihigress/internal/ratelimit"
	"github.com/aihigress/aihigress/internal/testenv"
)

// clock is a settable time source shared by the test and the limiter.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// windowStart returns the start of a fixed window of length window that
// begins after the current time, so that tests know where the edges are.
func windowStart(window time.Duration) time.Time {
	ms := window.Milliseconds()
	return time.UnixMilli((time.Now().UnixMilli()/ms + 1) * ms)
}

func newLimiter(t testing.TB) (*ratelimit.Limiter, *clock, *redis.Client) {
	t.Helper()
	rdb, prefix := testenv.RedisClient(t)
	clk := &clock{now: time.Now()}
	return ratelimit.New(rdb, ratelimit.Options{Prefix: prefix, Now: clk.Now, Timeout: 2 * time.Second}), clk, rdb
}

func mustRule(t testing.TB, l *ratelimit.Limiter, name string, limit int, window time.Duration) *ratelimit.Rule {
	t.Helper()
	rule, err := l.NewRule(name, limit, window)
	if err != nil {
		t.Fatal(err)
	}
	return rule
}

func allow(t *testing.T, rule *ratelimit.Rule, id string) ratelimit.Result {
	t.Helper()
	res, err := rule.Allow(context.Background(), id)
	if err != nil {
		t.Fatalf("Allow(%q): %v", id, err)
	}
	return res
}

func TestRuleAllowsLimitThenRejects(t *testing.T) {
	tests := []struct {
		name    string
		limit   int
		window  time.Duration
		elapsed time.Duration // time into the fixed window when the burst arrives
	}{
		{"one per second at window start", 1, time.Second, 0},
		{"ten per minute at window start", 10, time.Minute, 0},
		{"ten per minute mid window", 10, time.Minute, 25 * time.Second},
		{"seven per 10s near window end", 7, 10 * time.Second, 9999 * time.Millisecond},
		{"hundred per hour", 100, time.Hour, 17 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			limiter, clk, _ := newLimiter(t)
			rule := mustRule(t, limiter, "test", tt.limit, tt.window)
			start := windowStart(tt.window).Add(tt.elapsed)
			clk.Set(start)

			for i := range tt.limit {
				res := allow(t, rule, "client")
				if !res.Allowed {
					t.Fatalf("request %d of %d rejected", i+1, tt.limit)
				}
				if want := tt.limit - i - 1; res.Remaining != want {
					t.Errorf("request %d: Remaining = %d, want %d", i+1, res.Remaining, want)
				}
				if res.Limit != tt.limit {
					t.Errorf("request %d: Limit = %d, want %d", i+1, res.Limit, tt.limit)
				}
			}

			res := allow(t, rule, "client")
			if res.Allowed {
				t.Fatalf("request %d allowed, want rejected", tt.limit+1)
			}
			if res.Remaining != 0 {
				t.Errorf("rejected Remaining = %d, want 0", res.Remaining)
			}

			// All requests sit in one fixed window, so the next one fits when
			// that window's weight, as the previous window, drops to limit-1:
			// the rest of this window plus window/limit, rounded up to 1ms.
			windowMs := tt.window.Milliseconds()
			rest := windowMs - tt.elapsed.Milliseconds()
			slide := windowMs - (int64(tt.limit-1)*windowMs)/int64(tt.limit)
			want := time.Duration(rest+slide) * time.Millisecond
			if res.RetryAfter() != want {
				t.Errorf("RetryAfter = %s, want %s", res.RetryAfter(), want)
			}

			// The promise of RetryAfter holds to the millisecond.
			clk.Set(start.Add(res.RetryAfter() - time.Millisecond))
			if allow(t, rule, "client").Allowed {
				t.Errorf("request allowed 1ms before RetryAfter")
			}
			clk.Set(start.Add(res.RetryAfter()))
			if !allow(t, rule, "client").Allowed {
				t.Errorf("request rejected at RetryAfter")
			}
		})
	}
}

func TestRuleFreesSlotsAsWindowSlides(t *testing.T) {
	limiter, clk, _ := newLimiter(t)
	rule := mustRule(t, limiter, "slide", 10, 10*time.Second)
	start := windowStart(10 * time.Second)
	clk.Set(start.Add(5 * time.Second))
	for range 10 {
		allow(t, rule, "client")
	}

	// In the next window the previous count of 10 weighs 10*(10s-e)/10s, so
	// one more request fits for each second that passes.
	next := start.Add(10 * time.Second)
	for second := range 10 {
		clk.Set(next.Add(time.Duration(second) * time.Second))
		allowed := 0
		for allow(t, rule, "client").Allowed {
			allowed++
			if allowed > 10 {
				t.Fatal("more than the limit allowed at once")
			}
		}
		want := 1
		if second == 0 {
			want = 0
		}
		if allowed != want {
			t.Errorf("%ds into the next window: %d requests allowed, want %d", second, allowed, want)
		}
	}

	// Two windows after the last count, the client has its full quota back.
	clk.Set(start.Add(30 * time.Second))
	for i := range 10 {
		if !allow(t, rule, "client").Allowed {
			t.Fatalf("request %d rejected two windows later", i+1)
		}
	}
}

func TestRuleResetAndRemaining(t *testing.T) {
	limiter, clk, _ := newLimiter(t)
	rule := mustRule(t, limiter, "reset", 4, time.Minute)
	start := windowStart(time.Minute)

	// Two requests 15s into a window, then look 30s into the next window,
	// where the previous count of 2 weighs 2*(60-30)/60 = 1.
	clk.Set(start.Add(15 * time.Second))
	allow(t, rule, "client")
	allow(t, rule, "client")
	clk.Set(start.Add(90 * time.Second))
	res := allow(t, rule, "client")
	if !res.Allowed || res.Remaining != 2 {
		t.Fatalf("got %+v, want allowed with 2 remaining", res)
	}
	// used is 1 + 1 = 2; Remaining grows to 3 when used <= 1, which is when
	// the previous weight reaches 0, at the end of this window: 30s.
	if res.Reset != 30*time.Second {
		t.Errorf("Reset = %s, want 30s", res.Reset)
	}
}

func TestRuleSeparatesClientsAndRules(t *testing.T) {
	limiter, clk, _ := newLimiter(t)
	clk.Set(windowStart(time.Minute))
	login := mustRule(t, limiter, "login", 2, time.Minute)
	register := mustRule(t, limiter, "register", 2, time.Minute)

	tests := []struct {
		name string
		rule *ratelimit.Rule
		id   string
	}{
		{"first client", login, "192.0.2.1"},
		{"second client", login, "192.0.2.2"},
		{"same client other rule", register, "192.0.2.1"},
		{"id that extends another", login, "192.0.2.10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range 2 {
				if !allow(t, tt.rule, tt.id).Allowed {
					t.Fatalf("request %d rejected; another client's count leaked in", i+1)
				}
			}
			if allow(t, tt.rule, tt.id).Allowed {
				t.Fatal("third request allowed")
			}
		})
	}
}

func TestRuleCountsAtomically(t *testing.T) {
	limiter, clk, _ := newLimiter(t)
	clk.Set(windowStart(time.Minute))
	rule := mustRule(t, limiter, "atomic", 100, time.Minute)

	var allowed atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 32*8)
	for range 32 {
		wg.Go(func() {
			for range 8 {
				res, err := rule.Allow(context.Background(), "shared")
				if err != nil {
					errs <- err
					return
				}
				if res.Allowed {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := allowed.Load(); got != 100 {
		t.Errorf("%d of 256 concurrent requests allowed, want exactly 100", got)
	}
}

func TestRuleClockBehindKeepsCount(t *testing.T) {
	limiter, clk, _ := newLimiter(t)
	rule := mustRule(t, limiter, "skew", 3, time.Second)
	start := windowStart(time.Second)

	// A process whose clock is ahead counts into the next window; one whose
	// clock is 5ms behind must count into the same window.
	clk.Set(start.Add(2 * time.Millisecond))
	allow(t, rule, "client")
	allow(t, rule, "client")
	clk.Set(start.Add(-3 * time.Millisecond))
	if !allow(t, rule, "client").Allowed {
		t.Fatal("third request rejected")
	}
	if allow(t, rule, "client").Allowed {
		t.Error("a clock behind the stored window reset the count")
	}

	// All three requests fell within 5ms, so one window later the first
	// process must still be limited. Had the late process stored its older
	// window, the counts would look two windows old and be dropped.
	clk.Set(start.Add(time.Second + time.Millisecond))
	if allow(t, rule, "client").Allowed {
		t.Error("request allowed one window after a burst; the late clock moved the state back")
	}
}

func TestRuleSecondWindowRemainingAndRetry(t *testing.T) {
	limiter, clk, _ := newLimiter(t)
	rule := mustRule(t, limiter, "second", 7, 10*time.Second)
	start := windowStart(10 * time.Second)
	clk.Set(start.Add(5 * time.Second))
	for range 7 {
		allow(t, rule, "client")
	}

	// 3s into the next window the previous 7 weigh 7*7/10 = 4.9.
	now := start.Add(13 * time.Second)
	clk.Set(now)
	steps := []struct {
		allowed   bool
		remaining int
		reset     time.Duration
	}{
		// used 5.9: one more fits. Remaining grows to 2 when used <= 5,
		// that is when 7*(10s-e)/10s <= 4, at e = 10s - 5714ms.
		{true, 1, 1286 * time.Millisecond},
		// used 6.9: none fits until used <= 6, the same moment.
		{true, 0, 1286 * time.Millisecond},
		{false, 0, 1286 * time.Millisecond},
	}
	for i, want := range steps {
		res := allow(t, rule, "client")
		if res.Allowed != want.allowed || res.Remaining != want.remaining || res.Reset != want.reset {
			t.Errorf("request %d: got %+v, want allowed %v, remaining %d, reset %s", i+1, res, want.allowed, want.remaining, want.reset)
		}
	}

	clk.Set(now.Add(1285 * time.Millisecond))
	if allow(t, rule, "client").Allowed {
		t.Error("request allowed 1ms before RetryAfter")
	}
	clk.Set(now.Add(1286 * time.Millisecond))
	if !allow(t, rule, "client").Allowed {
		t.Error("request rejected at RetryAfter")
	}
}

// TestRuleRandomTraffic drives rules with pseudo-random request times and
// checks the promises that callers rely on. RetryAfter is exact to the
// millisecond at every rejection. No fixed window admits more than the
// limit, and no sliding window admits twice the limit or more.
func TestRuleRandomTraffic(t *testing.T) {
	tests := []struct {
		limit  int
		window time.Duration
		gapMax time.Duration // largest pause between requests
	}{
		{1, time.Second, 400 * time.Millisecond},
		{3, 7 * time.Second, 2 * time.Second},
		{7, 10 * time.Second, time.Second},
		{10, time.Minute, 5 * time.Second},
		{60, time.Minute, 900 * time.Millisecond},
	}
	for seed, tt := range tests {
		t.Run(fmt.Sprintf("%d per %s", tt.limit, tt.window), func(t *testing.T) {
			limiter, clk, _ := newLimiter(t)
			rule := mustRule(t, limiter, "random", tt.limit, tt.window)
			rng := rand.New(rand.NewPCG(uint64(seed), 42))
			now := windowStart(tt.window)
			var admitted []time.Time

			admit := func() bool {
				clk.Set(now)
				res := allow(t, rule, "client")
				if res.Allowed {
					admitted = append(admitted, now)
				}
				return res.Allowed
			}
			for step := 0; step < 300; step++ {
				now = now.Add(time.Duration(rng.Int64N(int64(tt.gapMax))).Truncate(time.Millisecond))
				clk.Set(now)
				res := allow(t, rule, "client")
				if res.Allowed {
					admitted = append(admitted, now)
					continue
				}
				retry := res.RetryAfter()
				if retry <= 0 {
					t.Fatalf("step %d: rejected with RetryAfter %s", step, retry)
				}
				now = now.Add(retry - time.Millisecond)
				if admit() {
					t.Fatalf("step %d: allowed 1ms before RetryAfter %s", step, retry)
				}
				now = now.Add(time.Millisecond)
				if !admit() {
					t.Fatalf("step %d: rejected at RetryAfter %s", step, retry)
				}
			}

			windowMs := tt.window.Milliseconds()
			perWindow := map[int64]int{}
			for i, at := range admitted {
				perWindow[at.UnixMilli()/windowMs]++
				inSliding := 0
				for _, other := range admitted[i:] {
					if other.Sub(at) < tt.window {
						inSliding++
					}
				}
				if inSliding >= 2*tt.limit {
					t.Errorf("%d requests admitted within one window from %s", inSliding, at.Format(time.StampMilli))
				}
			}
			for index, n := range perWindow {
				if n > tt.limit {
					t.Errorf("fixed window %d admitted %d requests, limit %d", index, n, tt.limit)
				}
			}
		})
	}
}

func TestRuleExpiresIdleClients(t *testing.T) {
	rdb, prefix := testenv.RedisClient(t)
	limiter := ratelimit.New(rdb, ratelimit.Options{Prefix: prefix})
	rule := mustRule(t, limiter, "ttl", 5, 10*time.Second)
	allow(t, rule, "client")

	// The counts matter until the end of the next window, so the key must
	// outlive one window and may be dropped after two.
	ttl, err := rdb.PTTL(context.Background(), prefix+"rl:ttl:client").Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 19*time.Second || ttl > 20*time.Second {
		t.Errorf("key TTL = %s, want just under 20s", ttl)
	}
}

func TestRuleSurvivesScriptFlush(t *testing.T) {
	if os.Getenv("TEST_REDIS_URL") != "" {
		t.Skip("SCRIPT FLUSH would remove the scripts of other users of the shared Redis")
	}
	limiter, _, rdb := newLimiter(t)
	rule := mustRule(t, limiter, "flush", 5, time.Minute)
	allow(t, rule, "client")
	if err := rdb.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	res := allow(t, rule, "client")
	if !res.Allowed || res.Remaining != 3 {
		t.Errorf("after SCRIPT FLUSH got %+v, want allowed with 3 remaining", res)
	}
}

func TestRuleReportsRedisDown(t *testing.T) {
	tests := []struct {
		name  string
		start func(t *testing.T) string
	}{
		{"connection refused", func(t *testing.T) string {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			_ = ln.Close()
			return addr
		}},
		{"no reply", func(t *testing.T) string {
			// Accepts connections and never replies, like a hung server.
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = ln.Close() })
			go func() {
				for {
					conn, err := ln.Accept()
					if err != nil {
						return
					}
					t.Cleanup(func() { _ = conn.Close() })
				}
			}()
			return ln.Addr().String()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timeout := 200 * time.Millisecond
			rdb := redis.NewClient(ratelimit.ClientOptions(&redis.Options{Addr: tt.start(t)}, timeout))
			t.Cleanup(func() { _ = rdb.Close() })
			limiter := ratelimit.New(rdb, ratelimit.Options{Prefix: "down:", Timeout: timeout})
			rule := mustRule(t, limiter, "down", 1, time.Minute)

			begin := time.Now()
			_, err := rule.Allow(context.Background(), "client")
			took := time.Since(begin)
			if err == nil {
				t.Fatal("Allow returned no error with Redis down")
			}
			if took > timeout+time.Second {
				t.Errorf("Allow took %s, want about the %s timeout", took, timeout)
			}
			var netErr net.Error
			if !errors.As(err, &netErr) && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error %v wraps neither a network error nor a deadline", err)
			}
		})
	}
}

func TestNewRuleRejectsBadValues(t *testing.T) {
	limiter := ratelimit.New(nil, ratelimit.Options{})
	tests := []struct {
		name   string
		rule   string
		limit  int
		window time.Duration
	}{
		{"empty name", "", 1, time.Second},
		{"zero limit", "r", 0, time.Second},
		{"negative limit", "r", -1, time.Second},
		{"window under 1ms", "r", 1, time.Microsecond},
		{"zero window", "r", 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := limiter.NewRule(tt.rule, tt.limit, tt.window); err == nil {
				t.Errorf("NewRule(%q, %d, %s) returned no error", tt.rule, tt.limit, tt.window)
			}
		})
	}
}

// BenchmarkRuleAllow measures one check, a single EVALSHA round trip, with
// the limit high enough that every request is allowed. It runs against
// embedded Redis, or the server in TEST_REDIS_URL.
func BenchmarkRuleAllow(b *testing.B) {
	limiter, clk, _ := newLimiter(b)
	clk.Set(time.Now())
	rule := mustRule(b, limiter, "bench", 1<<30, time.Minute)
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = "client-" + strconv.Itoa(i)
	}
	ctx := context.Background()

	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := rule.Allow(ctx, ids[i%len(ids)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(1))
			for pb.Next() {
				if _, err := rule.Allow(ctx, ids[i%len(ids)]); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
}
