package store

import (
	"context"
	"fmt"

	"gorm.io/gorm"

	"github.com/aihigress/aihigress/models"
)

// AppendEvents inserts events in one statement. A sequence number that is
// already taken returns ErrConflict: another writer is active on the run.
func (s *Store) AppendEvents(ctx context.Context, events []models.ChatRunEvent) error {
	if len(events) == 0 {
		return nil
	}
	if err := s.DB.WithContext(ctx).Create(&events).Error; err != nil {
		if isUniqueViolation(err) {
			return fmt.Errorf("append events to run %s: %w", events[0].RunID, ErrConflict)
		}
		return fmt.Errorf("append events to run %s: %w", events[0].RunID, err)
	}
	return nil
}

// EventsAfter returns up to limit events of a run with seq > after, in order.
func (s *Store) EventsAfter(ctx context.Context, runID string, after int64, limit int) ([]models.ChatRunEvent, error) {
	var events []models.ChatRunEvent
	err := s.DB.WithContext(ctx).
		Where("run_id = ? AND seq > ?", runID, after).
		Order("seq ASC").Limit(limit).Find(&events).Error
	if err != nil {
		return nil, fmt.Errorf("load events of run %s: %w", runID, err)
	}
	return events, nil
}

// LastSeq returns the highest event sequence number of a run, 0 if none.
func (s *Store) LastSeq(ctx context.Context, runID string) (int64, error) {
	return maxSeq(s.DB.WithContext(ctx), runID)
}

// LastSeqs returns the highest event sequence number of each run.
func (s *Store) LastSeqs(ctx context.Context, runIDs []string) (map[string]int64, error) {
	out := make(map[string]int64, len(runIDs))
	if len(runIDs) == 0 {
		return out, nil
	}
	var rows []struct {
		RunID string
		Seq   int64
	}
	err := s.DB.WithContext(ctx).Model(&models.ChatRunEvent{}).
		Select("run_id, MAX(seq) AS seq").Where("run_id IN ?", runIDs).Group("run_id").Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("load last event numbers: %w", err)
	}
	for _, r := range rows {
		out[r.RunID] = r.Seq
	}
	return out, nil
}

// TerminalEventAtOrBefore reports whether the run has a terminal event
// (message.completed or message.failed) with seq <= seq.
func (s *Store) TerminalEventAtOrBefore(ctx context.Context, runID string, seq int64) (bool, error) {
	var n int64
	err := s.DB.WithContext(ctx).Model(&models.ChatRunEvent{}).
		Where("run_id = ? AND seq <= ? AND event_type IN ?", runID, seq, []string{models.EventMessageCompleted, models.EventMessageFailed}).
		Count(&n).Error
	if err != nil {
		return false, fmt.Errorf("find terminal event of run %s: %w", runID, err)
	}
	return n > 0, nil
}

// DeltaSinceReset reports whether the run has a message.delta after its last
// message.reset, which means an earlier attempt streamed text that a new
// attempt must tell clients to drop.
func (s *Store) DeltaSinceReset(ctx context.Context, runID string) (bool, error) {
	var lastReset int64
	err := s.DB.WithContext(ctx).Model(&models.ChatRunEvent{}).
		Select("COALESCE(MAX(seq), 0)").Where("run_id = ? AND event_type = ?", runID, models.EventMessageReset).
		Scan(&lastReset).Error
	if err != nil {
		return false, fmt.Errorf("find last reset of run %s: %w", runID, err)
	}
	var n int64
	err = s.DB.WithContext(ctx).Model(&models.ChatRunEvent{}).
		Where("run_id = ? AND event_type = ? AND seq > ?", runID, models.EventMessageDelta, lastReset).
		Limit(1).Count(&n).Error
	if err != nil {
		return false, fmt.Errorf("find deltas of run %s: %w", runID, err)
	}
	return n > 0, nil
}

func maxSeq(db *gorm.DB, runID string) (int64, error) {
	var seq int64
	err := db.Model(&models.ChatRunEvent{}).Select("COALESCE(MAX(seq), 0)").Where("run_id = ?", runID).Scan(&seq).Error
	if err != nil {
		return 0, fmt.Errorf("find last event number of run %s: %w", runID, err)
	}
	return seq, nil
}
