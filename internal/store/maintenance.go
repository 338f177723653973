package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/aihigress/aihigress/models"
)

// ClientErrorCondition is the SQL condition on request_logs (aliased r)
// that the error rate job counts as a failed request: a 4xx status other
// than 429 and 499. Rate limits and upstream quotas cause 429, and a client
// that went away causes 499. Server and upstream errors (5xx) do not count,
// because an upstream outage would otherwise disable every busy key.
const ClientErrorCondition = "r.status_code >= 400 AND r.status_code < 500 AND r.status_code NOT IN (429, 499)"

// FailingAPIKey is an active API key whose recent gateway requests were
// mostly client errors.
type FailingAPIKey struct {
	KeyID    string
	UserID   string
	Requests int64
	Errors   int64
	// UpdatedAt is the key's updated_at when it was found, so that
	// DisableAPIKey can leave alone a key that changed since.
	UpdatedAt time.Time
}

// FailingAPIKeys returns at most limit active keys, ordered by ID, that
// sent at least minRequests gateway requests since since, of which at least
// the fraction threshold matched ClientErrorCondition. Only requests after
// the key's updated_at count, so a key that its user enabled again starts
// with a clean record.
func (s *Store) FailingAPIKeys(ctx context.Context, since time.Time, minRequests int, threshold float64, limit int) ([]FailingAPIKey, error) {
	errorCount := "SUM(CASE WHEN " + ClientErrorCondition + " THEN 1 ELSE 0 END)"
	query := "SELECT r.api_key_id AS key_id, k.user_id AS user_id, k.updated_at AS updated_at," +
		" COUNT(*) AS requests, " + errorCount + " AS errors" +
		" FROM request_logs r JOIN api_keys k ON k.id = r.api_key_id" +
		" WHERE r.created_at >= ? AND r.created_at >= k.updated_at AND k.is_active = ?" +
		" GROUP BY r.api_key_id, k.user_id, k.updated_at" +
		" HAVING COUNT(*) >= ? AND " + errorCount + " >= CAST(? AS DOUBLE PRECISION) * COUNT(*)" +
		" ORDER BY r.api_key_id LIMIT ?"
	var keys []FailingAPIKey
	err := s.DB.WithContext(ctx).Raw(query, since.UTC(), true, minRequests, threshold, limit).Scan(&keys).Error
	if err != nil {
		return nil, fmt.Errorf("find API keys with a high error rate: %w", err)
	}
	return keys, nil
}

// RollupProgress returns the roll-up state of sourceTable, and false when
// nothing was rolled up from it yet.
func (s *Store) RollupProgress(ctx context.Context, sourceTable string) (models.RollupProgress, bool, error) {
	var progress models.RollupProgress
	err := s.DB.WithContext(ctx).Where("source_table = ?", sourceTable).Take(&progress).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return models.RollupProgress{}, false, nil
	}
	if err != nil {
		return models.RollupProgress{}, false, fmt.Errorf("read roll-up progress of %s: %w", sourceTable, err)
	}
	progress.RolledUntil = progress.RolledUntil.UTC()
	if progress.DeletedBefore != nil {
		before := progress.DeletedBefore.UTC()
		progress.DeletedBefore = &before
	}
	return progress, true, nil
}

// AdvanceRolledUntil stores until as the end of the rolled-up hours of
// sourceTable, unless a later time is stored already.
func (s *Store) AdvanceRolledUntil(ctx context.Context, sourceTable string, until time.Time) error {
	err := s.DB.WithContext(ctx).Exec(
		"INSERT INTO rollup_progress (source_table, rolled_until, updated_at) VALUES (?, ?, ?)"+
			" ON CONFLICT (source_table) DO UPDATE SET rolled_until = excluded.rolled_until, updated_at = excluded.updated_at"+
			" WHERE rollup_progress.rolled_until < excluded.rolled_until",
		sourceTable, until.UTC(), s.DB.NowFunc()).Error
	if err != nil {
		return fmt.Errorf("store roll-up progress of %s: %w", sourceTable, err)
	}
	return nil
}

// AdvanceDeletedBefore stores before as the time before which raw rows of
// sourceTable may be deleted, unless a later time is stored already. Call
// it before deleting, so that no roll-up reads an hour while its rows go.
func (s *Store) AdvanceDeletedBefore(ctx context.Context, sourceTable string, before time.Time) error {
	before = before.UTC()
	err := s.DB.WithContext(ctx).Model(&models.RollupProgress{}).
		Where("source_table = ? AND (deleted_before IS NULL OR deleted_before < ?)", sourceTable, before).
		Updates(map[string]any{"deleted_before": before, "updated_at": s.DB.NowFunc()}).Error
	if err != nil {
		return fmt.Errorf("store the deletion time of %s: %w", sourceTable, err)
	}
	return nil
}

// OldestRequestLog returns the created_at of the oldest request log row,
// and false when the table is empty.
func (s *Store) OldestRequestLog(ctx context.Context) (time.Time, bool, error) {
	var rows []models.RequestLog
	err := s.DB.WithContext(ctx).Select("created_at").Order("created_at").Limit(1).Find(&rows).Error
	if err != nil {
		return time.Time{}, false, fmt.Errorf("find the oldest request log row: %w", err)
	}
	if len(rows) == 0 {
		return time.Time{}, false, nil
	}
	return rows[0].CreatedAt.UTC(), true, nil
}

// RollUpRequestLogHour replaces the request_log_hourly rows of the hour that
// starts at hour with the sums of its request_logs rows, in one
// transaction, and returns the number of hourly rows written.
func (s *Store) RollUpRequestLogHour(ctx context.Context, hour time.Time) (int64, error) {
	hour = hour.UTC()
	statusClass := "CAST(status_code / 100 AS TEXT) || 'xx'"
	insert := "INSERT INTO request_log_hourly (hour_start, api_key_id, user_id, logical_model, provider_id, status_class," +
		" requests, errors, prompt_tokens, completion_tokens, latency_ms_sum, upstream_ms_sum)" +
		" SELECT " + s.timeParam() + ", api_key_id, user_id, logical_model, provider_id, " + statusClass + "," +
		" COUNT(*), SUM(CASE WHEN status_code >= 400 OR error_code <> '' THEN 1 ELSE 0 END)," +
		" SUM(prompt_tokens), SUM(completion_tokens), SUM(latency_ms), SUM(upstream_ms)" +
		" FROM request_logs WHERE created_at >= ? AND created_at < ?" +
		" GROUP BY api_key_id, user_id, logical_model, provider_id, " + statusClass

	var written int64
	err := s.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec("DELETE FROM request_log_hourly WHERE hour_start = ?", hour).Error; err != nil {
			return err
		}
		res := tx.Exec(insert, hour, hour, hour.Add(time.Hour))
		written = res.RowsAffected
		return res.Error
	})
	if err != nil {
		return 0, fmt.Errorf("roll up the request log of %s: %w", hour.Format(time.RFC3339), err)
	}
	return written, nil
}

// DeleteRequestLogBatch deletes at most limit request log rows created
// before before and returns how many it deleted.
func (s *Store) DeleteRequestLogBatch(ctx context.Context, before time.Time, limit int) (int64, error) {
	res := s.DB.WithContext(ctx).Exec(
		"DELETE FROM request_logs WHERE id IN (SELECT id FROM request_logs WHERE created_at < ? LIMIT ?)",
		before.UTC(), limit)
	if res.Error != nil {
		return 0, fmt.Errorf("delete request log rows before %s: %w", before.UTC().Format(time.RFC3339), res.Error)
	}
	return res.RowsAffected, nil
}

// terminalEventTypes are the events that a run's final state needs: the
// replay of GET /v1/runs/{id}/events ends with them, and they carry the
// output and the final run.
var terminalEventTypes = []string{models.EventMessageCompleted, models.EventMessageFailed, models.EventRunCanceled}

// DeleteRunEventBatch deletes at most limit events created before before
// of runs in a terminal status, except their terminal events, and returns
// how many it deleted. The events of active runs are never deleted.
func (s *Store) DeleteRunEventBatch(ctx context.Context, before time.Time, limit int) (int64, error) {
	res := s.DB.WithContext(ctx).Exec(
		"DELETE FROM chat_run_events WHERE id IN ("+
			"SELECT e.id FROM chat_run_events e JOIN chat_runs r ON r.id = e.run_id"+
			" WHERE e.created_at < ? AND r.status IN ? AND e.event_type NOT IN ? LIMIT ?)",
		before.UTC(), []string{models.RunSucceeded, models.RunFailed, models.RunCanceled}, terminalEventTypes, limit)
	if res.Error != nil {
		return 0, fmt.Errorf("delete run events before %s: %w", before.UTC().Format(time.RFC3339), res.Error)
	}
	return res.RowsAffected, nil
}

// InsertProviderHealth stores probe results.
func (s *Store) InsertProviderHealth(ctx context.Context, rows []models.ProviderHealth) error {
	if len(rows) == 0 {
		return nil
	}
	if err := s.DB.WithContext(ctx).Create(&rows).Error; err != nil {
		return fmt.Errorf("store %d provider probe results: %w", len(rows), err)
	}
	return nil
}

// DeleteProviderHealthBatch deletes at most limit probe results checked
// before before and returns how many it deleted.
func (s *Store) DeleteProviderHealthBatch(ctx context.Context, before time.Time, limit int) (int64, error) {
	res := s.DB.WithContext(ctx).Exec(
		"DELETE FROM provider_health WHERE id IN (SELECT id FROM provider_health WHERE checked_at < ? LIMIT ?)",
		before.UTC(), limit)
	if res.Error != nil {
		return 0, fmt.Errorf("delete provider probe results before %s: %w", before.UTC().Format(time.RFC3339), res.Error)
	}
	return res.RowsAffected, nil
}

// timeParam returns the placeholder of a time value in a SELECT list.
// PostgreSQL would infer a bare placeholder there as text, which a
// timestamptz column does not accept.
func (s *Store) timeParam() string {
	if s.Dialect == Postgres {
		return "CAST(? AS TIMESTAMPTZ)"
	}
	return "?"
}
