package router_test

import (
	"errors"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/router"
)

// TestCoolDownProvider cools down every candidate of one provider, in all
// its logical models. Another process must read the cooldown from Redis,
// and the other provider must stay in use.
func TestCoolDownProvider(t *testing.T) {
	sick1 := candidate("sick", "m1", 1, 1)
	sick2 := candidate("sick", "m2", 0, 1)
	well := candidate("well", "m1", 0, 1)
	catalog := buildCatalog(t, catalogSpec{
		providers: []providers.Provider{{ID: "sick"}, {ID: "well"}},
		models: []providers.LogicalModel{
			chatModel("both", sick1, well),
			chatModel("sick-only", sick2),
			chatModel("sick-again", sick1),
		},
	})
	env := newRedisEnv(t)
	clock := newFakeClock()
	log := &cooldownLog{}
	prober, _ := env.router(catalog, clock, router.Options{OnCooldown: log.record})
	other, _ := env.router(catalog, clock, router.Options{})

	n, err := prober.CoolDownProvider(t.Context(), "sick", time.Minute, router.CooldownProbeFailed)
	if err != nil {
		t.Fatal(err)
	}
	// sick/m1 serves two models but is one candidate.
	if n != 2 {
		t.Errorf("CoolDownProvider cooled %d candidates, want 2", n)
	}
	if got := log.String(); got != "[sick:probe_failed]" {
		t.Errorf("OnCooldown calls = %s, want [sick:probe_failed]", got)
	}

	plan, err := other.Plan(t.Context(), "both", providers.CapabilityChat)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(plan); got != "well/m1" {
		t.Errorf("plan of model both = %s, want well/m1", got)
	}
	_, err = other.Plan(t.Context(), "sick-only", providers.CapabilityChat)
	var cooling *router.CooldownError
	if !errors.As(err, &cooling) {
		t.Fatalf("plan of model sick-only: error = %v, want a *CooldownError", err)
	}
	if want := clock.Now().Add(time.Minute); !cooling.RetryAt.Equal(want) {
		t.Errorf("RetryAt = %s, want %s", cooling.RetryAt, want)
	}

	// A shorter cooldown keeps the longer end.
	if _, err := prober.CoolDownProvider(t.Context(), "sick", time.Second, router.CooldownProbeFailed); err != nil {
		t.Fatal(err)
	}
	clock.Advance(30 * time.Second)
	if _, err := other.Plan(t.Context(), "sick-only", providers.CapabilityChat); !errors.As(err, &cooling) {
		t.Errorf("plan after a shorter cooldown: error = %v, want the first cooldown to last", err)
	}

	clock.Advance(31 * time.Second)
	if plan, err := other.Plan(t.Context(), "sick-only", providers.CapabilityChat); err != nil || names(plan) != "sick/m2" {
		t.Errorf("plan after the cooldown = %s, %v; want sick/m2", names(plan), err)
	}
}

func TestCoolDownProviderWithoutCandidates(t *testing.T) {
	catalog := buildCatalog(t, catalogSpec{
		providers: []providers.Provider{{ID: "unused"}, {ID: "used"}},
		models:    []providers.LogicalModel{chatModel("m", candidate("used", "m", 0, 1))},
	})
	log := &cooldownLog{}
	r, _ := newRedisEnv(t).router(catalog, newFakeClock(), router.Options{OnCooldown: log.record})
	n, err := r.CoolDownProvider(t.Context(), "unused", time.Minute, router.CooldownProbeFailed)
	if err != nil || n != 0 {
		t.Errorf("CoolDownProvider = %d, %v; want 0, nil", n, err)
	}
	if got := log.String(); got != "[]" {
		t.Errorf("OnCooldown calls = %s, want none", got)
	}
}
