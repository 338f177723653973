package metrics

import (
	"context"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
)

// HourlyTableName is the table of the hourly sums of the minute buckets.
const HourlyTableName = "provider_metrics_hourly"

// RollUpHour replaces the provider_metrics_hourly rows of the hour that
// starts at hour with the sums of its minute buckets, in one transaction,
// and returns the number of hourly rows written. The histogram columns are
// cumulative counts, so summing them merges the histograms.
func RollUpHour(ctx context.Context, db *gorm.DB, hour time.Time) (int64, error) {
	if db == nil {
		return 0, ErrNoDatabase
	}
	hour = hour.UTC()
	values := valueColumns()
	sums := make([]string, len(values))
	for i, column := range values {
		sums[i] = "SUM(" + column + ")"
	}
	hourParam := "?"
	if db.Dialector.Name() == "postgres" {
		// PostgreSQL would infer a bare placeholder in a SELECT list as
		// text, which a timestamptz column does not accept.
		hourParam = "CAST(? AS TIMESTAMPTZ)"
	}
	insert := "INSERT INTO " + HourlyTableName + " (hour_start, provider_id, logical_model, status, " + strings.Join(values, ", ") + ")" +
		" SELECT " + hourParam + ", provider_id, logical_model, status, " + strings.Join(sums, ", ") +
		" FROM " + TableName + " WHERE bucket_start >= ? AND bucket_start < ?" +
		" GROUP BY provider_id, logical_model, status"

	var written int64
	err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec("DELETE FROM "+HourlyTableName+" WHERE hour_start = ?", hour).Error; err != nil {
			return err
		}
		res := tx.Exec(insert, hour, hour, hour.Add(time.Hour))
		written = res.RowsAffected
		return res.Error
	})
	if err != nil {
		return 0, fmt.Errorf("roll up provider metrics of %s: %w", hour.Format(time.RFC3339), err)
	}
	return written, nil
}

// OldestBucket returns the start of the oldest minute bucket, and false
// when the table is empty.
func OldestBucket(ctx context.Context, db *gorm.DB) (time.Time, bool, error) {
	if db == nil {
		return time.Time{}, false, ErrNoDatabase
	}
	var rows []struct{ BucketStart time.Time }
	err := db.WithContext(ctx).Table(TableName).Select("bucket_start").Order("bucket_start").Limit(1).Find(&rows).Error
	if err != nil {
		return time.Time{}, false, fmt.Errorf("find the oldest provider metric bucket: %w", err)
	}
	if len(rows) == 0 {
		return time.Time{}, false, nil
	}
	return rows[0].BucketStart.UTC(), true, nil
}

// DeleteBuckets deletes the minute buckets that start in [from, before)
// and returns how many it deleted. The table has no single-column key to
// delete a number of rows by, so callers bound each call by a time range.
func DeleteBuckets(ctx context.Context, db *gorm.DB, from, before time.Time) (int64, error) {
	if db == nil {
		return 0, ErrNoDatabase
	}
	res := db.WithContext(ctx).Exec("DELETE FROM "+TableName+" WHERE bucket_start >= ? AND bucket_start < ?", from.UTC(), before.UTC())
	if res.Error != nil {
		return 0, fmt.Errorf("delete provider metric buckets before %s: %w", before.UTC().Format(time.RFC3339), res.Error)
	}
	return res.RowsAffected, nil
}
