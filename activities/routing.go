package activities

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/router"
	"github.com/aihigress/aihigress/models"
	"github.com/aihigress/aihigress/workflows"
)

// capabilityOf returns what a run of this kind needs from its logical model.
func capabilityOf(run *models.ChatRun) providers.Capability {
	if run.Kind == models.RunKindImage {
		return providers.CapabilityImageGeneration
	}
	return providers.CapabilityChat
}

// chooseUpstream acquires a key for the attempt. It tries the workflow's
// candidate first unless an earlier attempt of the run used it. Otherwise,
// or when that candidate is cooling down or has no usable key, it goes
// through a fresh plan in fallbackOrder. When no candidate can be used, the
// error is the retryable upstream_cooling_down with the wait as
// NextRetryDelay, or the non-retryable no_candidate when nothing usable is
// configured.
func chooseUpstream(ctx context.Context, rt *router.Router, run *models.ChatRun, in workflows.AttemptInput) (router.Pick, error) {
	requested := providers.Candidate{ProviderID: in.Candidate.ProviderID, Model: in.Candidate.Model}
	var failures acquireFailures

	// The plan is made only when the workflow's candidate cannot be used,
	// so the common attempt costs no extra lookup.
	if !wasTried(in.Tried, requested) {
		pick, err := rt.Acquire(ctx, requested)
		if err == nil {
			return pick, nil
		}
		failures.add(err)
	}

	plan, err := rt.Plan(ctx, run.RequestedLogicalModel, capabilityOf(run))
	failures.addCooldown(err)
	for _, candidate := range fallbackOrder(plan, requested, in.Tried) {
		pick, err := rt.Acquire(ctx, candidate)
		if err == nil {
			return pick, nil
		}
		failures.add(err)
	}

	if !failures.retryAt.IsZero() {
		wait := max(time.Until(failures.retryAt), time.Millisecond)
		return router.Pick{}, temporal.NewApplicationErrorWithOptions(
			fmt.Sprintf("no candidate of logical model %q is usable now: all are cooling down after upstream failures or at their key rate limits; the first is usable again in %s",
				run.RequestedLogicalModel, wait.Round(time.Millisecond)),
			workflows.ErrorCoolingDown,
			temporal.ApplicationErrorOptions{NextRetryDelay: wait, Details: []any{workflows.AttemptFailure{Candidate: in.Candidate}}})
	}
	message := fmt.Sprintf("logical model %q has no usable candidate on this worker", run.RequestedLogicalModel)
	if failures.first != nil {
		message += ": " + failures.first.Error()
	}
	return router.Pick{}, temporal.NewNonRetryableApplicationError(message, workflows.ErrorNoCandidate, failures.first)
}

// fallbackOrder lists the candidates to try after the workflow's candidate
// requested: the plan's candidates that the run has not tried, then
// requested itself if the run tried it, then the rest of the plan.
func fallbackOrder(plan []providers.Candidate, requested providers.Candidate, tried []workflows.Candidate) []providers.Candidate {
	isRequested := func(c providers.Candidate) bool {
		return c.ProviderID == requested.ProviderID && c.Model == requested.Model
	}
	order := make([]providers.Candidate, 0, len(plan)+1)
	for _, c := range plan {
		if !isRequested(c) && !wasTried(tried, c) {
			order = append(order, c)
		}
	}
	if wasTried(tried, requested) {
		order = append(order, requested)
	}
	for _, c := range plan {
		if !isRequested(c) && wasTried(tried, c) {
			order = append(order, c)
		}
	}
	return order
}

func wasTried(tried []workflows.Candidate, c providers.Candidate) bool {
	return slices.Contains(tried, workflows.Candidate{ProviderID: c.ProviderID, Model: c.Model})
}

// acquireFailures collects why candidates could not be used: the first
// error, and the earliest time at which a cooling candidate comes back.
type acquireFailures struct {
	first   error
	retryAt time.Time
}

func (f *acquireFailures) add(err error) {
	if f.first == nil {
		f.first = err
	}
	f.addCooldown(err)
}

func (f *acquireFailures) addCooldown(err error) {
	var cooldown *router.CooldownError
	if errors.As(err, &cooldown) && (f.retryAt.IsZero() || cooldown.RetryAt.Before(f.retryAt)) {
		f.retryAt = cooldown.RetryAt
	}
}
