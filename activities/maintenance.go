package activities

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/aihigress/aihigress/internal/apikeys"
	"github.com/aihigress/aihigress/internal/config"
	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/router"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/workflows"
)

const (
	// maxFailingKeys caps the keys that one error rate run disables, which
	// also bounds the list in the workflow history. The next run finds the
	// rest.
	maxFailingKeys = 1000
	// deleteBatchSize is the number of rows that one DELETE of a retention
	// job removes, between two heartbeats.
	deleteBatchSize = 5000
)

// Maintenance holds the dependencies of the scheduled maintenance
// activities.
type Maintenance struct {
	Store *store.Store
	// APIKeys marks keys inactive and publishes the cache invalidations
	// that the API processes listen to.
	APIKeys *apikeys.Service
	Catalog *providers.Catalog
	Router  *router.Router
	Client  *providers.Client
	// Settings are the worker's maintenance configuration: the error rate
	// rule, the probe timeout and the retention periods.
	Settings config.Maintenance
	Logger   *slog.Logger
	// Now is the clock of the probe times. Nil means time.Now.
	Now func() time.Time
}

func (a *Maintenance) now() time.Time {
	if a.Now != nil {
		return a.Now().UTC()
	}
	return time.Now().UTC()
}

func (a *Maintenance) logger(ctx context.Context) *slog.Logger {
	logger := a.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	info := activity.GetInfo(ctx)
	return logger.With("workflow_id", info.WorkflowExecution.ID, "activity", info.ActivityType.Name)
}

// ExpireAPIKeys marks every active key whose expires_at has passed as
// inactive with disabled_reason "expired", and drops the keys from the API
// processes' caches. It compares with the current time, not the run's
// AsOf, because a key that has expired stays expired.
func (a *Maintenance) ExpireAPIKeys(ctx context.Context) (workflows.ExpireAPIKeysResult, error) {
	n, err := a.APIKeys.Sweep(ctx)
	if err != nil {
		return workflows.ExpireAPIKeysResult{Expired: n}, err
	}
	if n > 0 {
		a.logger(ctx).Info("expired API keys marked inactive", "expired", n)
	}
	return workflows.ExpireAPIKeysResult{Expired: n}, nil
}

// FindFailingAPIKeys returns the active keys that, in the error rate
// window before in.AsOf, sent at least the minimum number of requests of
// which at least the threshold were client errors (store.ClientErrorCondition).
// It returns none while the rule is off.
func (a *Maintenance) FindFailingAPIKeys(ctx context.Context, in workflows.FindFailingAPIKeysInput) ([]workflows.FailingAPIKey, error) {
	rule := a.Settings.APIKeyErrorRate
	if !rule.Enabled() {
		return nil, nil
	}
	found, err := a.Store.FailingAPIKeys(ctx, in.AsOf.Add(-rule.Window), rule.MinRequests, rule.Threshold, maxFailingKeys)
	if err != nil {
		return nil, err
	}
	keys := make([]workflows.FailingAPIKey, len(found))
	for i, k := range found {
		keys[i] = workflows.FailingAPIKey{KeyID: k.KeyID, UserID: k.UserID, Requests: k.Requests, Errors: k.Errors, UpdatedAt: k.UpdatedAt.UTC()}
	}
	return keys, nil
}

// DisableAPIKeys disables each key with disabled_reason "error_rate" and
// drops it from every API process's cache through the invalidation
// channel. A key that is inactive, deleted or changed since it was found
// is left alone, so a retry disables nothing twice.
func (a *Maintenance) DisableAPIKeys(ctx context.Context, in workflows.DisableAPIKeysInput) (workflows.DisableAPIKeysResult, error) {
	logger := a.logger(ctx)
	var result workflows.DisableAPIKeysResult
	for _, key := range in.Keys {
		disabled, err := a.APIKeys.Disable(ctx, key.KeyID, store.APIKeyDisabledErrorRate, key.UpdatedAt)
		if errors.Is(err, store.ErrNotFound) {
			result.Skipped++
			continue
		}
		if err != nil {
			return result, err
		}
		if !disabled {
			result.Skipped++
			continue
		}
		result.Disabled++
		logger.Warn("API key disabled for its error rate", "key_id", key.KeyID, "user_id", key.UserID,
			"requests", key.Requests, "client_errors", key.Errors, "error_rate", float64(key.Errors)/float64(max(key.Requests, 1)),
			"window", a.Settings.APIKeyErrorRate.Window.String())
	}
	return result, nil
}

// PruneRunEvents deletes, in batches, the events created before in.AsOf
// minus RUN_EVENTS_RETENTION of runs in a terminal status, except their
// terminal events (message.completed, message.failed, run.canceled). The
// runs keep their rows, so GET /v1/runs/{id} and /result still work, and
// the replay of /events sends the terminal events.
func (a *Maintenance) PruneRunEvents(ctx context.Context, in workflows.PruneRunEventsInput) (workflows.PruneRunEventsResult, error) {
	retention := a.Settings.RunEventsRetention
	if retention <= 0 {
		return workflows.PruneRunEventsResult{}, nil
	}
	before := in.AsOf.UTC().Add(-retention)
	result := workflows.PruneRunEventsResult{Before: before}
	for {
		n, err := a.Store.DeleteRunEventBatch(ctx, before, deleteBatchSize)
		result.Deleted += n
		if err != nil {
			return result, err
		}
		activity.RecordHeartbeat(ctx, result.Deleted)
		if n < deleteBatchSize {
			break
		}
	}
	if result.Deleted > 0 {
		a.logger(ctx).Info("old run events deleted", "deleted", result.Deleted, "before", before.Format(time.RFC3339))
	}
	return result, nil
}
