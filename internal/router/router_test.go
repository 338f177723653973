package router_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/router"
)

func TestPlanOrdersTiers(t *testing.T) {
	catalog := buildCatalog(t, catalogSpec{
		providers: []providers.Provider{{ID: "p"}},
		models: []providers.LogicalModel{chatModel("m",
			candidate("p", "low", 0, 5),
			candidate("p", "top-a", 2, 1),
			candidate("p", "mid-a", 1, 1),
			candidate("p", "top-b", 2, 4),
			candidate("p", "mid-b", 1, 9),
		)},
	})
	r, _ := newRedisEnv(t).router(catalog, newFakeClock(), router.Options{})

	tierOf := map[string]int{"p/top-a": 2, "p/top-b": 2, "p/mid-a": 1, "p/mid-b": 1, "p/low": 0}
	firstSeen := map[string]int{}
	for i := range 500 {
		plan, err := r.Plan(context.Background(), "m", providers.CapabilityChat)
		if err != nil {
			t.Fatal(err)
		}
		if len(plan) != 5 {
			t.Fatalf("plan %d = %s, want 5 candidates", i, names(plan))
		}
		for j := 1; j < len(plan); j++ {
			if plan[j-1].Priority < plan[j].Priority {
				t.Fatalf("plan %d = %s: priority %d before %d", i, names(plan), plan[j-1].Priority, plan[j].Priority)
			}
		}
		for _, c := range plan {
			if tierOf[c.ProviderID+"/"+c.Model] != c.Priority {
				t.Fatalf("plan %d = %s: candidate %s has priority %d", i, names(plan), c.Model, c.Priority)
			}
		}
		firstSeen[plan[0].Model]++
	}
	// Both candidates of the top tier must lead some plans, or the order
	// inside the tier is not random.
	if firstSeen["top-a"] == 0 || firstSeen["top-b"] == 0 {
		t.Errorf("first candidates = %v, want both top-a and top-b", firstSeen)
	}
}

func TestPlanWeights(t *testing.T) {
	const draws = 10000
	tests := []struct {
		name    string
		weights []int
		// wantFirst is the expected share of plans that each candidate leads.
		wantFirst []float64
	}{
		{name: "3 to 1", weights: []int{3, 1}, wantFirst: []float64{0.75, 0.25}},
		{name: "1 to 1 to 2", weights: []int{1, 1, 2}, wantFirst: []float64{0.25, 0.25, 0.5}},
		{name: "1 to 9", weights: []int{1, 9}, wantFirst: []float64{0.1, 0.9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var candidates []providers.Candidate
			for i, w := range tt.weights {
				candidates = append(candidates, candidate("p", fmt.Sprintf("c%d", i), 0, w))
			}
			catalog := buildCatalog(t, catalogSpec{
				providers: []providers.Provider{{ID: "p"}},
				models:    []providers.LogicalModel{chatModel("m", candidates...)},
			})
			r, _ := newRedisEnv(t).router(catalog, newFakeClock(), router.Options{})
			runMirror(t, r)

			first := make([]int, len(tt.weights))
			for range draws {
				plan, err := r.Plan(context.Background(), "m", providers.CapabilityChat)
				if err != nil {
					t.Fatal(err)
				}
				var index int
				if _, err := fmt.Sscanf(plan[0].Model, "c%d", &index); err != nil {
					t.Fatal(err)
				}
				first[index]++
			}
			for i, want := range tt.wantFirst {
				got := float64(first[i]) / draws
				// Five standard deviations of a binomial share.
				tolerance := 5 * math.Sqrt(want*(1-want)/draws)
				if math.Abs(got-want) > tolerance {
					t.Errorf("candidate c%d (weight %d) led %.3f of plans, want %.3f ± %.3f", i, tt.weights[i], got, want, tolerance)
				}
			}
		})
	}
}

func TestPlanSkipsCoolingCandidates(t *testing.T) {
	catalog := buildCatalog(t, catalogSpec{
		providers: []providers.Provider{
			{ID: "keyed", Keys: []providers.ProviderKey{{ID: "k1", Secret: "s1", Weight: 1}, {ID: "k2", Secret: "s2", Weight: 1}}},
			{ID: "open"},
		},
		models: []providers.LogicalModel{chatModel("m",
			candidate("open", "a", 2, 1),
			candidate("open", "b", 1, 1),
			candidate("keyed", "c", 0, 1),
		)},
	})
	clock := newFakeClock()
	env := newRedisEnv(t)

	for _, mode := range []string{"redis", "mirror"} {
		t.Run(mode, func(t *testing.T) {
			r, _ := env.router(catalog, clock, router.Options{RateLimitCooldown: 10 * time.Second, AuthCooldown: time.Minute})
			if mode == "mirror" {
				runMirror(t, r)
			}
			ctx := context.Background()
			plan := func() string {
				t.Helper()
				got, err := r.Plan(ctx, "m", providers.CapabilityChat)
				if err != nil {
					t.Fatal(err)
				}
				return names(got)
			}

			if got := plan(); got != "open/a,open/b,keyed/c" {
				t.Fatalf("plan = %s, want every candidate", got)
			}

			r.Report(ctx, router.Pick{Candidate: candidate("open", "a", 2, 1)}, upstreamErr(providers.ErrorRateLimited, 429))
			if got := plan(); got != "open/b,keyed/c" {
				t.Errorf("plan after a 429 on open/a = %s, want open/b,keyed/c", got)
			}

			// One rejected key leaves the provider usable; two do not.
			keyed := candidate("keyed", "c", 0, 1)
			r.Report(ctx, router.Pick{Candidate: keyed, KeyID: "k1"}, upstreamErr(providers.ErrorAuth, 401))
			if got := plan(); got != "open/b,keyed/c" {
				t.Errorf("plan with one of two keys rejected = %s, want open/b,keyed/c", got)
			}
			r.Report(ctx, router.Pick{Candidate: keyed, KeyID: "k2"}, upstreamErr(providers.ErrorAuth, 403))
			if got := plan(); got != "open/b" {
				t.Errorf("plan with every key rejected = %s, want open/b", got)
			}

			clock.Advance(11 * time.Second)
			if got := plan(); got != "open/a,open/b" {
				t.Errorf("plan after the 429 cooldown = %s, want open/a,open/b", got)
			}
			clock.Advance(time.Minute)
			if got := plan(); got != "open/a,open/b,keyed/c" {
				t.Errorf("plan after the key cooldown = %s, want every candidate", got)
			}
		})
	}
}

func TestPlanAllCoolingDown(t *testing.T) {
	catalog := buildCatalog(t, catalogSpec{
		providers: []providers.Provider{{ID: "p"}},
		models:    []providers.LogicalModel{chatModel("m", candidate("p", "a", 1, 1), candidate("p", "b", 0, 1))},
	})
	clock := newFakeClock()
	r, _ := newRedisEnv(t).router(catalog, clock, router.Options{})
	ctx := context.Background()

	rateLimited := func(wait time.Duration) error {
		err := upstreamErr(providers.ErrorRateLimited, 429)
		err.RetryAfter = wait
		return err
	}
	r.Report(ctx, router.Pick{Candidate: candidate("p", "a", 1, 1)}, rateLimited(30*time.Second))
	r.Report(ctx, router.Pick{Candidate: candidate("p", "b", 0, 1)}, rateLimited(12*time.Second))

	plan, err := r.Plan(ctx, "m", providers.CapabilityChat)
	if !errors.Is(err, router.ErrAllCoolingDown) {
		t.Fatalf("Plan = %s, %v; want ErrAllCoolingDown", names(plan), err)
	}
	var cooldown *router.CooldownError
	if !errors.As(err, &cooldown) {
		t.Fatalf("Plan error %T is not a *CooldownError", err)
	}
	if want := clock.Now().Add(12 * time.Second); !cooldown.RetryAt.Equal(want) {
		t.Errorf("RetryAt = %s, want the earliest end %s", cooldown.RetryAt, want)
	}
	if got := cooldown.RetryAfter(clock.Now()); got != 12*time.Second {
		t.Errorf("RetryAfter = %s, want 12s", got)
	}
	if !strings.Contains(err.Error(), `logical model "m"`) {
		t.Errorf("error %q does not name the model", err)
	}

	clock.Advance(12 * time.Second)
	plan, err = r.Plan(ctx, "m", providers.CapabilityChat)
	if err != nil || names(plan) != "p/b" {
		t.Errorf("Plan after 12s = %s, %v; want p/b", names(plan), err)
	}
}

func TestPlanRun(t *testing.T) {
	catalog := buildCatalog(t, catalogSpec{
		providers: []providers.Provider{{ID: "p"}},
		models:    []providers.LogicalModel{chatModel("m", candidate("p", "a", 1, 1), candidate("p", "b", 0, 1))},
	})
	clock := newFakeClock()
	r, _ := newRedisEnv(t).router(catalog, clock, router.Options{})
	ctx := context.Background()

	plan, err := r.PlanRun(ctx, "m", providers.CapabilityChat)
	if err != nil || names(plan) != "p/a,p/b" {
		t.Errorf("PlanRun without cooldowns = %s, %v; want p/a,p/b", names(plan), err)
	}

	rateLimited := upstreamErr(providers.ErrorRateLimited, 429)
	rateLimited.RetryAfter = 30 * time.Second
	r.Report(ctx, router.Pick{Candidate: candidate("p", "a", 1, 1)}, rateLimited)
	plan, err = r.PlanRun(ctx, "m", providers.CapabilityChat)
	if err != nil || names(plan) != "p/b" {
		t.Errorf("PlanRun with p/a cooling down = %s, %v; want p/b", names(plan), err)
	}

	// With every candidate cooling down, the run still gets all of them.
	r.Report(ctx, router.Pick{Candidate: candidate("p", "b", 0, 1)}, rateLimited)
	plan, err = r.PlanRun(ctx, "m", providers.CapabilityChat)
	if err != nil || names(plan) != "p/a,p/b" {
		t.Errorf("PlanRun with all cooling down = %s, %v; want p/a,p/b", names(plan), err)
	}

	if _, err := r.PlanRun(ctx, "nope", providers.CapabilityChat); !errors.Is(err, providers.ErrUnknownModel) {
		t.Errorf("PlanRun of an unknown model: error %v, want %v", err, providers.ErrUnknownModel)
	}
}

func TestPlanCatalogErrors(t *testing.T) {
	catalog := buildCatalog(t, catalogSpec{
		providers: []providers.Provider{{ID: "p"}},
		models:    []providers.LogicalModel{chatModel("m", candidate("p", "a", 0, 1))},
	})
	r, _ := newRedisEnv(t).router(catalog, newFakeClock(), router.Options{})
	tests := []struct {
		name       string
		model      string
		capability providers.Capability
		want       error
	}{
		{name: "unknown model", model: "nope", capability: providers.CapabilityChat, want: providers.ErrUnknownModel},
		{name: "missing capability", model: "m", capability: providers.CapabilityImageGeneration, want: providers.ErrCapability},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Plan(context.Background(), tt.model, tt.capability)
			if !errors.Is(err, tt.want) {
				t.Errorf("Plan error = %v, want %v", err, tt.want)
			}
		})
	}
}

func keyedCatalog(t testing.TB, keys ...providers.ProviderKey) *providers.Catalog {
	t.Helper()
	return buildCatalog(t, catalogSpec{
		providers: []providers.Provider{{ID: "p", APIKey: "provider-secret", Keys: keys}},
		models:    []providers.LogicalModel{chatModel("m", candidate("p", "a", 0, 1))},
	})
}

func TestAcquireKeyWeights(t *testing.T) {
	const draws = 10000
	catalog := keyedCatalog(t,
		providers.ProviderKey{ID: "heavy", Secret: "secret-heavy", Weight: 3},
		providers.ProviderKey{ID: "light", Secret: "secret-light", Weight: 1},
	)
	r, _ := newRedisEnv(t).router(catalog, newFakeClock(), router.Options{})
	runMirror(t, r)

	counts := map[string]int{}
	for range draws {
		pick, err := r.Acquire(context.Background(), candidate("p", "a", 0, 1))
		if err != nil {
			t.Fatal(err)
		}
		if want := "secret-" + pick.KeyID; pick.Provider.APIKey != want {
			t.Fatalf("key %s came with secret %q, want %q", pick.KeyID, pick.Provider.APIKey, want)
		}
		if pick.Provider.Keys != nil {
			t.Fatal("Pick.Provider.Keys is not nil")
		}
		counts[pick.KeyID]++
	}
	got := float64(counts["heavy"]) / draws
	tolerance := 5 * math.Sqrt(0.75*0.25/draws)
	if math.Abs(got-0.75) > tolerance {
		t.Errorf("key with weight 3 of 3:1 chosen %.3f of the time, want 0.750 ± %.3f (counts %v)", got, tolerance, counts)
	}
}

func TestAcquireSkipsCoolingKeys(t *testing.T) {
	catalog := keyedCatalog(t,
		providers.ProviderKey{ID: "k1", Secret: "s1", Weight: 1},
		providers.ProviderKey{ID: "k2", Secret: "s2", Weight: 1},
	)
	clock := newFakeClock()
	r, _ := newRedisEnv(t).router(catalog, clock, router.Options{AuthCooldown: time.Minute})
	ctx := context.Background()
	c := candidate("p", "a", 0, 1)

	r.Report(ctx, router.Pick{Candidate: c, KeyID: "k1"}, upstreamErr(providers.ErrorAuth, 401))
	for range 50 {
		pick, err := r.Acquire(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if pick.KeyID != "k2" {
			t.Fatalf("Acquire chose %s, which is cooling down", pick.KeyID)
		}
	}

	r.Report(ctx, router.Pick{Candidate: c, KeyID: "k2"}, upstreamErr(providers.ErrorAuth, 401))
	_, err := r.Acquire(ctx, c)
	var cooldown *router.CooldownError
	if !errors.Is(err, router.ErrCoolingDown) || !errors.As(err, &cooldown) {
		t.Fatalf("Acquire with every key cooling = %v, want a CooldownError wrapping ErrCoolingDown", err)
	}
	if want := clock.Now().Add(time.Minute); !cooldown.RetryAt.Equal(want) {
		t.Errorf("RetryAt = %s, want %s", cooldown.RetryAt, want)
	}
}

func TestAcquireCoolingCandidate(t *testing.T) {
	catalog := keyedCatalog(t)
	clock := newFakeClock()
	r, _ := newRedisEnv(t).router(catalog, clock, router.Options{RateLimitCooldown: 3 * time.Second})
	ctx := context.Background()
	c := candidate("p", "a", 0, 1)

	r.Report(ctx, router.Pick{Candidate: c}, upstreamErr(providers.ErrorRateLimited, 429))
	if _, err := r.Acquire(ctx, c); !errors.Is(err, router.ErrCoolingDown) {
		t.Errorf("Acquire on a cooling candidate = %v, want ErrCoolingDown", err)
	}
	clock.Advance(3 * time.Second)
	if _, err := r.Acquire(ctx, c); err != nil {
		t.Errorf("Acquire after the cooldown = %v, want success", err)
	}
}

func TestAcquireMaxQPS(t *testing.T) {
	env := newRedisEnv(t)
	catalog := keyedCatalog(t,
		providers.ProviderKey{ID: "capped-2", Secret: "s1", Weight: 1, MaxQPS: 2},
		providers.ProviderKey{ID: "capped-1", Secret: "s2", Weight: 1, MaxQPS: 1},
	)
	clock := newFakeClock()
	// Two routers share the per-second budget, as two processes do.
	first, _ := env.router(catalog, clock, router.Options{})
	second, _ := env.router(catalog, clock, router.Options{})
	ctx := context.Background()
	c := candidate("p", "a", 0, 1)

	counts := map[string]int{}
	routers := []*router.Router{first, second, first}
	for i, r := range routers {
		pick, err := r.Acquire(ctx, c)
		if err != nil {
			t.Fatalf("acquisition %d: %v", i+1, err)
		}
		counts[pick.KeyID]++
	}
	if counts["capped-2"] != 2 || counts["capped-1"] != 1 {
		t.Errorf("keys chosen = %v, want capped-2 twice and capped-1 once", counts)
	}

	_, err := second.Acquire(ctx, c)
	var cooldown *router.CooldownError
	if !errors.Is(err, router.ErrKeysAtLimit) || !errors.As(err, &cooldown) {
		t.Fatalf("fourth acquisition in one second = %v, want ErrKeysAtLimit", err)
	}
	if want := clock.Now().Truncate(time.Second).Add(time.Second); !cooldown.RetryAt.Equal(want) {
		t.Errorf("RetryAt = %s, want the next second %s", cooldown.RetryAt, want)
	}

	clock.Advance(time.Second)
	if _, err := first.Acquire(ctx, c); err != nil {
		t.Errorf("acquisition in the next second = %v, want success", err)
	}
}

func TestAcquireKeylessProvider(t *testing.T) {
	catalog := keyedCatalog(t)
	r, counter := newRedisEnv(t).router(catalog, newFakeClock(), router.Options{})
	runMirror(t, r)

	before := counter.n.Load()
	pick, err := r.Acquire(context.Background(), candidate("p", "a", 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	if pick.KeyID != "" || pick.Provider.APIKey != "provider-secret" {
		t.Errorf("pick = key %q secret %q, want no key ID and the provider's APIKey", pick.KeyID, pick.Provider.APIKey)
	}
	if n := counter.n.Load() - before; n != 0 {
		t.Errorf("Acquire sent %d Redis commands with a live mirror, want 0", n)
	}
}

func TestAcquireUnknownProvider(t *testing.T) {
	catalog := keyedCatalog(t)
	r, _ := newRedisEnv(t).router(catalog, newFakeClock(), router.Options{})
	_, err := r.Acquire(context.Background(), candidate("gone", "a", 0, 1))
	if !errors.Is(err, router.ErrNoKey) {
		t.Errorf("Acquire on a missing provider = %v, want ErrNoKey", err)
	}
}

// disableRecorder is an Options.DisableKey that records its calls.
type disableRecorder struct {
	mu    sync.Mutex
	calls []string // "keyID: reason"
}

func (d *disableRecorder) disable(_ context.Context, keyID, reason string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, keyID+": "+reason)
	return nil
}

func TestReport(t *testing.T) {
	const threshold = 3
	opts := router.Options{
		FailureThreshold:  threshold,
		FailureWindow:     time.Minute,
		FailureCooldown:   10 * time.Second,
		MaxCooldown:       time.Minute,
		RateLimitCooldown: 4 * time.Second,
		AuthCooldown:      5 * time.Minute,
	}
	keyed := candidate("keyed", "a", 0, 1)
	open := candidate("open", "b", 0, 1)

	type step struct {
		pick router.Pick
		err  error
	}
	withRetryAfter := func(d time.Duration) error {
		err := upstreamErr(providers.ErrorRateLimited, 429)
		err.RetryAfter = d
		return err
	}
	streamCut := func(streamed bool) error {
		err := upstreamErr(providers.ErrorStreamCut, 0)
		err.Streamed = streamed
		return err
	}
	repeat := func(n int, s step) []step {
		steps := make([]step, n)
		for i := range steps {
			steps[i] = s
		}
		return steps
	}
	keyedPick := router.Pick{Candidate: keyed, KeyID: "k1"}
	openPick := router.Pick{Candidate: open}

	tests := []struct {
		name  string
		steps []step
		// wantCandidate is the cooldown left on keyed/a, 0 for none.
		wantCandidate time.Duration
		// wantKey is the cooldown left on key k1, 0 for none.
		wantKey      time.Duration
		wantDisabled []string
	}{
		{name: "429 without Retry-After", steps: []step{{keyedPick, upstreamErr(providers.ErrorRateLimited, 429)}}, wantCandidate: 4 * time.Second},
		{name: "429 honours Retry-After", steps: []step{{keyedPick, withRetryAfter(17 * time.Second)}}, wantCandidate: 17 * time.Second},
		{name: "429 Retry-After capped", steps: []step{{keyedPick, withRetryAfter(time.Hour)}}, wantCandidate: time.Minute},
		{name: "5xx below threshold", steps: repeat(threshold-1, step{keyedPick, upstreamErr(providers.ErrorServer, 500)})},
		{name: "5xx at threshold", steps: repeat(threshold, step{keyedPick, upstreamErr(providers.ErrorServer, 502)}), wantCandidate: 10 * time.Second},
		{name: "mixed failure kinds count together", steps: []step{
			{keyedPick, upstreamErr(providers.ErrorTimeout, 0)},
			{keyedPick, upstreamErr(providers.ErrorConnect, 0)},
			{keyedPick, upstreamErr(providers.ErrorMalformed, 200)},
		}, wantCandidate: 10 * time.Second},
		{name: "cut before first delta counts", steps: repeat(threshold, step{keyedPick, streamCut(false)}), wantCandidate: 10 * time.Second},
		{name: "cut after text does not count", steps: repeat(threshold, step{keyedPick, streamCut(true)})},
		{name: "success clears failures", steps: append(append(
			repeat(threshold-1, step{keyedPick, upstreamErr(providers.ErrorServer, 500)}),
			step{keyedPick, nil}),
			repeat(threshold-1, step{keyedPick, upstreamErr(providers.ErrorServer, 500)})...)},
		{name: "failures during a cooldown do not extend it", steps: repeat(threshold+3, step{keyedPick, upstreamErr(providers.ErrorServer, 500)}), wantCandidate: 10 * time.Second},
		{name: "401 disables and cools the key", steps: []step{{keyedPick, upstreamErr(providers.ErrorAuth, 401)}},
			wantKey: 5 * time.Minute, wantDisabled: []string{"k1: upstream returned 401 at 2030-01-02T03:04:05Z"}},
		{name: "403 disables and cools the key", steps: []step{{keyedPick, upstreamErr(providers.ErrorAuth, 403)}},
			wantKey: 5 * time.Minute, wantDisabled: []string{"k1: upstream returned 403 at 2030-01-02T03:04:05Z"}},
		{name: "400 changes nothing", steps: repeat(threshold+1, step{keyedPick, upstreamErr(providers.ErrorBadRequest, 400)})},
		{name: "canceled context changes nothing", steps: repeat(threshold+1, step{keyedPick, fmt.Errorf("chat completion: %w", context.Canceled)})},
		{name: "other candidate untouched", steps: repeat(threshold, step{openPick, upstreamErr(providers.ErrorServer, 500)})},
	}

	for _, tt := range tests {
		for _, mode := range []string{"redis", "mirror"} {
			t.Run(tt.name+"/"+mode, func(t *testing.T) {
				catalog := buildCatalog(t, catalogSpec{
					providers: []providers.Provider{
						{ID: "keyed", Keys: []providers.ProviderKey{{ID: "k1", Secret: "s1", Weight: 1}, {ID: "k2", Secret: "s2", Weight: 1}}},
						{ID: "open"},
					},
					models: []providers.LogicalModel{chatModel("m", keyed, open)},
				})
				clock := newFakeClock()
				disabled := &disableRecorder{}
				o := opts
				o.DisableKey = disabled.disable
				r, _ := newRedisEnv(t).router(catalog, clock, o)
				if mode == "mirror" {
					runMirror(t, r)
				}
				ctx := context.Background()

				for _, s := range tt.steps {
					r.Report(ctx, s.pick, s.err)
				}

				if got := candidateCooldown(t, r, keyed, clock); got != tt.wantCandidate {
					t.Errorf("cooldown of keyed/a = %s, want %s", got, tt.wantCandidate)
				}
				if got := keyCooldown(t, r, "k1", clock); got != tt.wantKey {
					t.Errorf("cooldown of key k1 = %s, want %s", got, tt.wantKey)
				}
				if got := strings.Join(disabled.calls, "; "); got != strings.Join(tt.wantDisabled, "; ") {
					t.Errorf("DisableKey calls = %q, want %q", got, tt.wantDisabled)
				}
			})
		}
	}
}

// candidateCooldown returns how long c stays cooling down, measured with
// Acquire.
func candidateCooldown(t *testing.T, r *router.Router, c providers.Candidate, clock *fakeClock) time.Duration {
	t.Helper()
	_, err := r.Acquire(context.Background(), c)
	var cooldown *router.CooldownError
	if errors.As(err, &cooldown) && !strings.HasPrefix(cooldown.Subject, "every key") {
		return cooldown.RetryAfter(clock.Now())
	}
	return 0
}

// keyCooldown returns how long key keyID stays cooling down, as Cooldowns
// lists it.
func keyCooldown(t *testing.T, r *router.Router, keyID string, clock *fakeClock) time.Duration {
	t.Helper()
	cooldowns, err := r.Cooldowns(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cooldowns {
		if c.KeyID == keyID {
			return c.Until.Sub(clock.Now())
		}
	}
	return 0
}

func TestReportGrowingCooldown(t *testing.T) {
	catalog := keyedCatalog(t)
	clock := newFakeClock()
	r, _ := newRedisEnv(t).router(catalog, clock, router.Options{
		FailureThreshold: 2,
		FailureWindow:    time.Minute,
		FailureCooldown:  10 * time.Second,
		MaxCooldown:      35 * time.Second,
	})
	ctx := context.Background()
	c := candidate("p", "a", 0, 1)
	fail := func() { r.Report(ctx, router.Pick{Candidate: c}, upstreamErr(providers.ErrorServer, 503)) }

	fail()
	fail()
	// Each failure once the previous cooldown has ended starts the next
	// one at once, twice as long, up to MaxCooldown.
	for i, want := range []time.Duration{10 * time.Second, 20 * time.Second, 35 * time.Second, 35 * time.Second} {
		if i > 0 {
			fail()
		}
		if got := candidateCooldown(t, r, c, clock); got != want {
			t.Fatalf("cooldown %d = %s, want %s", i+1, got, want)
		}
		clock.Advance(want)
	}

	// A success ends the streak: the next cooldown needs the threshold
	// again and starts short.
	r.Report(ctx, router.Pick{Candidate: c}, nil)
	fail()
	if got := candidateCooldown(t, r, c, clock); got != 0 {
		t.Fatalf("cooldown after a success and one failure = %s, want none", got)
	}
	fail()
	if got := candidateCooldown(t, r, c, clock); got != 10*time.Second {
		t.Errorf("cooldown after a success and two failures = %s, want 10s", got)
	}
}

func TestReportSuccessWritesOnlyToClear(t *testing.T) {
	catalog := keyedCatalog(t)
	env := newRedisEnv(t)
	clock := newFakeClock()
	r, counter := env.router(catalog, clock, router.Options{FailureThreshold: 2})
	other, _ := env.router(catalog, clock, router.Options{FailureThreshold: 2})
	runMirror(t, r)
	runMirror(t, other)
	ctx := context.Background()
	c := candidate("p", "a", 0, 1)
	pick := router.Pick{Candidate: c}

	before := counter.n.Load()
	for range 10 {
		r.Report(ctx, pick, nil)
	}
	if n := counter.n.Load() - before; n != 0 {
		t.Fatalf("10 successes without failures sent %d Redis commands, want 0", n)
	}

	// A failure that another process saw must still be cleared here.
	other.Report(ctx, pick, upstreamErr(providers.ErrorServer, 500))
	waitUntil(t, 5*time.Second, "failure mark to reach this router", func() bool { return router.Failing(r, c) })
	before = counter.n.Load()
	r.Report(ctx, pick, nil)
	if n := counter.n.Load() - before; n == 0 {
		t.Fatal("a success after another process's failure sent no Redis command, want the clear")
	}
	waitUntil(t, 5*time.Second, "clear to reach the other router", func() bool { return !router.Failing(other, c) })

	// The count in Redis was reset too, so one more failure stays below
	// the threshold of two.
	other.Report(ctx, pick, upstreamErr(providers.ErrorServer, 500))
	if got := candidateCooldown(t, r, c, clock); got != 0 {
		t.Errorf("cooldown after failure, success, failure = %s, want none", got)
	}
}

func TestReportDisableKeyFailure(t *testing.T) {
	catalog := keyedCatalog(t, providers.ProviderKey{ID: "k1", Secret: "s1", Weight: 1})
	clock := newFakeClock()
	r, _ := newRedisEnv(t).router(catalog, clock, router.Options{
		DisableKey: func(context.Context, string, string) error { return errors.New("database down") },
	})
	ctx := context.Background()
	c := candidate("p", "a", 0, 1)

	r.Report(ctx, router.Pick{Candidate: c, KeyID: "k1"}, upstreamErr(providers.ErrorAuth, 401))
	if _, err := r.Acquire(ctx, c); !errors.Is(err, router.ErrCoolingDown) {
		t.Errorf("Acquire after a 401 whose DisableKey failed = %v, want ErrCoolingDown", err)
	}
}

func TestReportKeylessAuthCoolsCandidate(t *testing.T) {
	catalog := keyedCatalog(t)
	clock := newFakeClock()
	disabled := &disableRecorder{}
	r, _ := newRedisEnv(t).router(catalog, clock, router.Options{AuthCooldown: time.Minute, DisableKey: disabled.disable})
	c := candidate("p", "a", 0, 1)

	r.Report(context.Background(), router.Pick{Candidate: c}, upstreamErr(providers.ErrorAuth, 401))
	if got := candidateCooldown(t, r, c, clock); got != time.Minute {
		t.Errorf("cooldown of a keyless candidate after 401 = %s, want 1m", got)
	}
	if len(disabled.calls) != 0 {
		t.Errorf("DisableKey called %v for a provider without keys", disabled.calls)
	}
}

func TestClearKeyCooldown(t *testing.T) {
	catalog := keyedCatalog(t, providers.ProviderKey{ID: "k1", Secret: "s1", Weight: 1})
	env := newRedisEnv(t)
	clock := newFakeClock()
	r, _ := env.router(catalog, clock, router.Options{})
	other, _ := env.router(catalog, clock, router.Options{})
	runMirror(t, other)
	ctx := context.Background()
	c := candidate("p", "a", 0, 1)

	r.Report(ctx, router.Pick{Candidate: c, KeyID: "k1"}, upstreamErr(providers.ErrorAuth, 401))
	waitUntil(t, 5*time.Second, "cooldown to reach the other router", func() bool {
		_, err := other.Acquire(ctx, c)
		return err != nil
	})
	if err := r.ClearKeyCooldown(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Acquire(ctx, c); err != nil {
		t.Errorf("Acquire after ClearKeyCooldown = %v", err)
	}
	waitUntil(t, 5*time.Second, "clear to reach the other router", func() bool {
		_, err := other.Acquire(ctx, c)
		return err == nil
	})
}
