package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/aihigress/aihigress/internal/metrics"
	"github.com/aihigress/aihigress/workflows"
)

// rollupLookback is how many hours before the last complete one each
// roll-up writes again. A gateway request is logged when it ends, with the
// time it started, and minute buckets are flushed every
// METRICS_FLUSH_INTERVAL, so rows of an hour keep arriving for a while
// after it ends. Rows that arrive later than this are left out of the
// hourly tables.
const rollupLookback = 2 * time.Hour

// rollupSource contains the retention and the queries that RollUp and
// DeleteExpiredRows use on one table.
type rollupSource struct {
	retention time.Duration
	rollHour  func(ctx context.Context, hour time.Time) (int64, error)
	oldest    func(ctx context.Context) (time.Time, bool, error)
	// deleteBefore deletes one batch of rows before a time and returns how
	// many it deleted, with errLastBatch when no such row is left.
	deleteBefore func(ctx context.Context, before time.Time) (int64, error)
}

func (a *Maintenance) rollupSource(table string) (rollupSource, error) {
	switch table {
	case workflows.TableRequestLogs:
		return rollupSource{
			retention: a.Settings.RequestLogRetention,
			rollHour:  a.Store.RollUpRequestLogHour,
			oldest:    a.Store.OldestRequestLog,
			deleteBefore: func(ctx context.Context, before time.Time) (int64, error) {
				n, err := a.Store.DeleteRequestLogBatch(ctx, before, deleteBatchSize)
				if err == nil && n < deleteBatchSize {
					return n, errLastBatch
				}
				return n, err
			},
		}, nil
	case workflows.TableProviderMetrics:
		db := a.Store.DB
		return rollupSource{
			retention: a.Settings.MetricsMinuteRetention,
			rollHour:  func(ctx context.Context, hour time.Time) (int64, error) { return metrics.RollUpHour(ctx, db, hour) },
			oldest:    func(ctx context.Context) (time.Time, bool, error) { return metrics.OldestBucket(ctx, db) },
			deleteBefore: func(ctx context.Context, before time.Time) (int64, error) {
				// The buckets have no single-column key to count a batch
				// by, so each call deletes the oldest hour before before.
				oldest, ok, err := metrics.OldestBucket(ctx, db)
				if err != nil {
					return 0, err
				}
				if !ok || !oldest.Before(before) {
					return 0, errLastBatch
				}
				return metrics.DeleteBuckets(ctx, db, oldest, earliest(oldest.Truncate(time.Hour).Add(time.Hour), before))
			},
		}, nil
	case workflows.TableProviderHealth:
		return rollupSource{
			retention: a.Settings.MetricsMinuteRetention,
			deleteBefore: func(ctx context.Context, before time.Time) (int64, error) {
				n, err := a.Store.DeleteProviderHealthBatch(ctx, before, deleteBatchSize)
				if err == nil && n < deleteBatchSize {
					return n, errLastBatch
				}
				return n, err
			},
		}, nil
	}
	return rollupSource{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("invalid maintenance table %q: want %s, %s or %s", table,
		workflows.TableRequestLogs, workflows.TableProviderMetrics, workflows.TableProviderHealth), workflows.ErrorInvalidInput, nil)
}

// errLastBatch ends a deletion loop after a batch that left no more rows.
var errLastBatch = errors.New("last batch")

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// RollUp writes the hourly sums of in.SourceTable for every hour that is
// not rolled up yet and for the rollupLookback hours before the last
// complete hour before in.AsOf. Each hour's rows are replaced, so running
// it again for an hour writes the same rows. Hours before the source's
// deletion time are never rolled up again, because their raw rows may be
// gone. Progress is stored after every hour, so a retry continues where
// the last attempt stopped.
func (a *Maintenance) RollUp(ctx context.Context, in workflows.RollUpInput) (workflows.RollUpResult, error) {
	source, err := a.rollupSource(in.SourceTable)
	if err != nil {
		return workflows.RollUpResult{}, err
	}
	if source.rollHour == nil {
		return workflows.RollUpResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("table %q has no hourly roll-up", in.SourceTable), workflows.ErrorInvalidInput, nil)
	}

	end := in.AsOf.UTC().Truncate(time.Hour)
	from := end.Add(-rollupLookback)
	progress, ok, err := a.Store.RollupProgress(ctx, in.SourceTable)
	if err != nil {
		return workflows.RollUpResult{}, err
	}
	switch {
	case ok:
		from = earliest(from, progress.RolledUntil)
	default:
		oldest, found, err := source.oldest(ctx)
		if err != nil {
			return workflows.RollUpResult{}, err
		}
		if found {
			from = earliest(from, oldest.Truncate(time.Hour))
		}
	}
	if ok && progress.DeletedBefore != nil && from.Before(*progress.DeletedBefore) {
		from = *progress.DeletedBefore
	}

	result := workflows.RollUpResult{SourceTable: in.SourceTable, From: from, Until: end}
	for hour := from; hour.Before(end); hour = hour.Add(time.Hour) {
		rows, err := source.rollHour(ctx, hour)
		if err != nil {
			return result, err
		}
		if err := a.Store.AdvanceRolledUntil(ctx, in.SourceTable, hour.Add(time.Hour)); err != nil {
			return result, err
		}
		result.Hours++
		result.Rows += rows
		activity.RecordHeartbeat(ctx, hour)
	}
	a.logger(ctx).Info("hours rolled up", "table", in.SourceTable, "from", from.Format(time.RFC3339),
		"until", end.Format(time.RFC3339), "hours", result.Hours, "hourly_rows", result.Rows)
	return result, nil
}

// DeleteExpiredRows deletes, in batches, the rows of in.Table older than
// its retention before in.AsOf. For a rolled-up table the cutoff is the
// start of an hour and never after the rolled-up hours, so rows that were
// not rolled up stay. The cutoff is stored before the first row goes. With
// the retention off, or before the first roll-up, it deletes nothing.
func (a *Maintenance) DeleteExpiredRows(ctx context.Context, in workflows.DeleteExpiredRowsInput) (workflows.DeleteExpiredRowsResult, error) {
	source, err := a.rollupSource(in.Table)
	if err != nil {
		return workflows.DeleteExpiredRowsResult{}, err
	}
	result := workflows.DeleteExpiredRowsResult{Table: in.Table}
	if source.retention <= 0 {
		return result, nil
	}

	before := in.AsOf.UTC().Add(-source.retention)
	if source.rollHour != nil {
		progress, ok, err := a.Store.RollupProgress(ctx, in.Table)
		if err != nil || !ok {
			return result, err
		}
		before = earliest(before.Truncate(time.Hour), progress.RolledUntil)
		if err := a.Store.AdvanceDeletedBefore(ctx, in.Table, before); err != nil {
			return result, err
		}
	}
	result.Before = before

	for {
		n, err := source.deleteBefore(ctx, before)
		result.Deleted += n
		if errors.Is(err, errLastBatch) {
			break
		}
		if err != nil {
			return result, err
		}
		activity.RecordHeartbeat(ctx, result.Deleted)
	}
	if result.Deleted > 0 {
		a.logger(ctx).Info("expired rows deleted", "table", in.Table, "before", before.Format(time.RFC3339), "deleted", result.Deleted)
	}
	return result, nil
}
