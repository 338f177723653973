// Package router chooses the upstream candidate and provider key for each
// attempt, and records the outcome of attempts so that failing candidates
// and keys cool down.
package router

import (
	"context"
	"errors"
	"fmt"

	"github.com/aihigress/aihigress/internal/providers"
)

// ErrNoKey is returned by Acquire when every key of the provider is
// unusable.
var ErrNoKey = errors.New("no usable provider key")

// Pick is one candidate with the key chosen for it. Provider.APIKey holds the
// key's secret, so Provider can be passed to the upstream client as it is.
type Pick struct {
	Candidate providers.Candidate
	Provider  providers.Provider
	// KeyID is the provider key used, or "" for a provider without keys.
	KeyID string
}

// Router orders candidates and chooses keys from a catalog.
type Router struct {
	catalog *providers.Catalog
}

// New returns a Router over catalog.
func New(catalog *providers.Catalog) *Router {
	return &Router{catalog: catalog}
}

// Plan returns the candidates to try for a logical model, best first. The
// error wraps providers.ErrUnknownModel or providers.ErrCapability.
//
// TODO: order tiers by weighted random choice and skip candidates in cooldown.
func (r *Router) Plan(ctx context.Context, logicalModel string, capability providers.Capability) ([]providers.Candidate, error) {
	return r.catalog.Candidates(logicalModel, capability)
}

// Acquire chooses a key of the candidate's provider.
func (r *Router) Acquire(ctx context.Context, candidate providers.Candidate) (Pick, error) {
	provider, ok := r.catalog.Provider(candidate.ProviderID)
	if !ok || provider.Disabled {
		return Pick{}, fmt.Errorf("provider %q: %w", candidate.ProviderID, ErrNoKey)
	}
	pick := Pick{Candidate: candidate, Provider: provider}
	if len(provider.Keys) > 0 {
		pick.KeyID = provider.Keys[0].ID
		pick.Provider.APIKey = provider.Keys[0].Secret
	}
	pick.Provider.Keys = nil
	return pick, nil
}

// Report records the outcome of an attempt made with pick; err is nil on
// success.
func (r *Router) Report(ctx context.Context, pick Pick, err error) {}
