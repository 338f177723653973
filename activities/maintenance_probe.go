package activities

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/router"
	"github.com/aihigress/aihigress/models"
	"github.com/aihigress/aihigress/workflows"
)

const (
	// defaultProbeCooldown is the cooldown after a failed probe when the
	// probe schedule is off and an operator started the workflow.
	defaultProbeCooldown = time.Minute
	// maxProbeCooldown caps the Retry-After of a 429 probe response.
	maxProbeCooldown = time.Hour
)

// ListProbeTargets returns the enabled providers of the catalog, sorted by
// ID.
func (a *Maintenance) ListProbeTargets(ctx context.Context) ([]workflows.ProbeTarget, error) {
	var targets []workflows.ProbeTarget
	for _, p := range a.Catalog.Providers() {
		if !p.Disabled {
			targets = append(targets, workflows.ProbeTarget{ProviderID: p.ID, Kind: p.Kind})
		}
	}
	return targets, nil
}

// ProbeProvider lists the models of the provider with a key that the
// router chooses, as providers.Client.ProbeModels describes. A 2xx response
// is healthy. So are 404 and 405, because some OpenAI-compatible servers
// have no model list, and the response shows that the server is up. The
// status code in the result distinguishes the cases. Any other outcome is unhealthy. The
// result reports NotSent when no request went out. It returns an error
// only when ctx ends.
func (a *Maintenance) ProbeProvider(ctx context.Context, target workflows.ProbeTarget) (workflows.ProbeResult, error) {
	result := workflows.ProbeResult{ProviderID: target.ProviderID, CheckedAt: a.now()}
	pick, err := a.Router.Acquire(ctx, providers.Candidate{ProviderID: target.ProviderID})
	var cooldown *router.CooldownError
	switch {
	case errors.Is(err, router.ErrNoKey):
		result.NotSent = true
		result.Error = "not probed: the provider was disabled or removed after the probe list was read"
		return result, nil
	case errors.As(err, &cooldown):
		result.NotSent = true
		result.Error = fmt.Sprintf("not probed: %v", err)
		return result, nil
	case err != nil:
		return result, err
	}
	result.KeyID = pick.KeyID

	started := time.Now()
	status, err := a.Client.ProbeModels(ctx, pick.Provider, a.Settings.ProbeTimeout)
	result.LatencyMS = float64(time.Since(started)) / float64(time.Millisecond)
	result.StatusCode = status
	if ctxErr := ctx.Err(); ctxErr != nil {
		return result, ctxErr
	}

	var upstream *providers.UpstreamError
	switch {
	case err == nil:
		result.Healthy = true
	case errors.As(err, &upstream) && (upstream.StatusCode == http.StatusNotFound || upstream.StatusCode == http.StatusMethodNotAllowed):
		result.Healthy = true
	case errors.As(err, &upstream):
		result.Error = upstream.Error()
		result.ErrorKind = string(upstream.Kind)
		result.RetryAfter = upstream.RetryAfter
	default:
		result.Error = err.Error()
	}
	if !result.Healthy {
		a.logger(ctx).Warn("provider probe failed", "provider_id", target.ProviderID, "key_id", pick.KeyID,
			"status", status, "latency_ms", result.LatencyMS, "error", result.Error)
	}
	return result, nil
}

// RecordProviderHealth stores the probe results in provider_health.
func (a *Maintenance) RecordProviderHealth(ctx context.Context, in workflows.RecordProviderHealthInput) error {
	rows := make([]models.ProviderHealth, len(in.Results))
	for i, r := range in.Results {
		rows[i] = models.ProviderHealth{
			ProviderID: r.ProviderID, CheckedAt: r.CheckedAt.UTC(), Healthy: r.Healthy,
			StatusCode: r.StatusCode, LatencyMS: r.LatencyMS, Error: r.Error,
		}
	}
	return a.Store.InsertProviderHealth(ctx, rows)
}

// CoolDownProviders takes the providers of failed probes out of use in
// every process until the next probe. A probe that an upstream rejected
// with 401 or 403 blames the provider key it used, which the router cools
// down and disables as it does after a rejected request. Any other failure
// cools down every candidate of the provider for the probe interval, or
// for a longer Retry-After of a 429 response (at most an hour). Results
// that are healthy or NotSent change nothing.
func (a *Maintenance) CoolDownProviders(ctx context.Context, in workflows.CoolDownProvidersInput) (workflows.CoolDownProvidersResult, error) {
	cooldown := a.Settings.ProbeProvidersInterval
	if cooldown <= 0 {
		cooldown = defaultProbeCooldown
	}
	var result workflows.CoolDownProvidersResult
	for _, r := range in.Results {
		if r.Healthy || r.NotSent {
			continue
		}
		if r.ErrorKind == string(providers.ErrorAuth) && r.KeyID != "" {
			pick := router.Pick{Candidate: providers.Candidate{ProviderID: r.ProviderID}, KeyID: r.KeyID}
			a.Router.Report(ctx, pick, &providers.UpstreamError{Kind: providers.ErrorAuth, StatusCode: r.StatusCode, Message: r.Error})
			result.RejectedKeys++
			continue
		}
		wait := cooldown
		if r.RetryAfter > wait {
			wait = min(r.RetryAfter, maxProbeCooldown)
		}
		if _, err := a.Router.CoolDownProvider(ctx, r.ProviderID, wait, router.CooldownProbeFailed); err != nil {
			return result, err
		}
		result.Providers++
	}
	return result, nil
}
