package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"
)

// Defaults of the zero fields of AggregatorOptions.
const (
	DefaultFlushInterval     = 30 * time.Second
	DefaultMaxPendingBuckets = 50_000
)

// flushTimeout bounds one flush that Run starts.
const flushTimeout = 20 * time.Second

// upsertBatchRows is the number of rows per INSERT. Each row has 39 bind
// variables, so a batch stays far below PostgreSQL's 65535 and SQLite's
// 32766.
const upsertBatchRows = 200

// TableName is the table of the minute buckets.
const TableName = "provider_metrics_minute"

// BucketKey identifies one minute bucket.
type BucketKey struct {
	// Start is the first instant of the bucket's minute, in UTC.
	Start        time.Time
	ProviderID   string
	LogicalModel string
	// Status is StatusOK, StatusCanceled, StatusError or an upstream error
	// kind such as upstream_error.
	Status string
}

// BucketValues are the additive counts of one bucket.
type BucketValues struct {
	Requests int64
	// Errors counts the requests whose status counts against the
	// provider's health; see CountsAsError.
	Errors  int64
	Latency Histogram
	// TTFT has one observation per streamed request that received a first
	// token.
	TTFT      Histogram
	TokensIn  int64
	TokensOut int64
}

// Merge adds other to v.
func (v *BucketValues) Merge(other BucketValues) {
	v.Requests += other.Requests
	v.Errors += other.Errors
	v.Latency.Merge(other.Latency)
	v.TTFT.Merge(other.TTFT)
	v.TokensIn += other.TokensIn
	v.TokensOut += other.TokensOut
}

// AggregatorOptions configure an Aggregator.
type AggregatorOptions struct {
	// FlushInterval is the period of Run's flushes. Default 30 seconds.
	FlushInterval time.Duration
	// MaxPendingBuckets caps the buckets held in memory between flushes.
	// A record for a new bucket beyond it is dropped and counted. Default
	// 50000.
	MaxPendingBuckets int
	Logger            *slog.Logger
}

// Aggregator sums upstream requests into per-minute buckets per provider,
// logical model and status in memory, and adds them to the database table
// provider_metrics_minute in batched upserts. Because the upserts add to
// the stored counts, several processes may flush into the same row. The
// methods are safe for concurrent use.
type Aggregator struct {
	db   *gorm.DB
	opts AggregatorOptions

	mu      sync.Mutex
	pending map[BucketKey]*BucketValues

	// flushMu lets one flush run at a time, so that a failed flush puts
	// its buckets back before the next one takes them.
	flushMu sync.Mutex

	dropped     atomic.Int64
	flushErrors atomic.Int64
	rowsWritten atomic.Int64
	// flushes and flushNanos count the flushes that wrote buckets and the
	// time they took.
	flushes    atomic.Int64
	flushNanos atomic.Int64
	// droppedLogged is the value of dropped at the last warning about it.
	droppedLogged atomic.Int64
}

// NewAggregator returns an Aggregator that writes to db.
func NewAggregator(db *gorm.DB, opts AggregatorOptions) *Aggregator {
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.MaxPendingBuckets <= 0 {
		opts.MaxPendingBuckets = DefaultMaxPendingBuckets
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Aggregator{db: db, opts: opts, pending: make(map[BucketKey]*BucketValues)}
}

// Record adds values to the bucket of key, whose Start is truncated to the
// minute. It only updates memory under a short lock and never waits for
// the database.
func (a *Aggregator) Record(key BucketKey, values BucketValues) {
	key.Start = key.Start.UTC().Truncate(time.Minute)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.mergeLocked(key, values)
}

// mergeLocked adds values to the pending bucket of key; a.mu must be held.
func (a *Aggregator) mergeLocked(key BucketKey, values BucketValues) {
	if current, ok := a.pending[key]; ok {
		current.Merge(values)
		return
	}
	if len(a.pending) >= a.opts.MaxPendingBuckets {
		a.dropped.Add(values.Requests)
		return
	}
	// The copy keeps the heap allocation on this path: taking the
	// parameter's address would move it to the heap on every call.
	bucket := values
	a.pending[key] = &bucket
}

// Pending returns the number of buckets waiting for a flush.
func (a *Aggregator) Pending() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.pending)
}

// Dropped returns the number of requests lost because the pending buckets
// were at MaxPendingBuckets.
func (a *Aggregator) Dropped() int64 { return a.dropped.Load() }

// FlushErrors returns the number of flushes that failed.
func (a *Aggregator) FlushErrors() int64 { return a.flushErrors.Load() }

// RowsWritten returns the number of bucket rows that flushes upserted.
func (a *Aggregator) RowsWritten() int64 { return a.rowsWritten.Load() }

// Flushes returns the number of flushes that wrote at least one bucket.
func (a *Aggregator) Flushes() int64 { return a.flushes.Load() }

// FlushTime returns the time that the flushes counted by Flushes took, from
// taking the pending buckets to the commit.
func (a *Aggregator) FlushTime() time.Duration { return time.Duration(a.flushNanos.Load()) }

// Flush writes the pending buckets in one transaction. When the write
// fails, the buckets go back into memory, merged with what was recorded
// since, and the next flush retries them.
func (a *Aggregator) Flush(ctx context.Context) error {
	a.flushMu.Lock()
	defer a.flushMu.Unlock()

	started := time.Now()
	a.mu.Lock()
	batch := a.pending
	a.pending = make(map[BucketKey]*BucketValues, len(batch))
	a.mu.Unlock()
	a.warnDropped()
	if len(batch) == 0 {
		return nil
	}

	keys := make([]BucketKey, 0, len(batch))
	for key := range batch {
		keys = append(keys, key)
	}
	err := a.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		for start := 0; start < len(keys); start += upsertBatchRows {
			end := min(start+upsertBatchRows, len(keys))
			query, args := upsertStatement(keys[start:end], batch)
			if err := tx.Exec(query, args...).Error; err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		a.flushErrors.Add(1)
		a.mu.Lock()
		for key, values := range batch {
			a.mergeLocked(key, *values)
		}
		a.mu.Unlock()
		return fmt.Errorf("upsert %d provider metric buckets: %w", len(batch), err)
	}
	a.rowsWritten.Add(int64(len(batch)))
	a.flushes.Add(1)
	a.flushNanos.Add(int64(time.Since(started)))
	return nil
}

// warnDropped logs once per flush when records were dropped since the last
// warning.
func (a *Aggregator) warnDropped() {
	dropped := a.dropped.Load()
	if previous := a.droppedLogged.Swap(dropped); dropped > previous {
		a.opts.Logger.Warn("provider metric buckets at their limit; requests were left out of provider_metrics_minute",
			"dropped_requests", dropped-previous, "max_pending_buckets", a.opts.MaxPendingBuckets)
	}
}

// Run flushes every FlushInterval until ctx ends. It does not flush at
// the end. The owner calls Flush after Run returns, so that the last
// buckets are written with a context of their own.
func (a *Aggregator) Run(ctx context.Context) {
	ticker := time.NewTicker(a.opts.FlushInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
		err := a.Flush(flushCtx)
		cancel()
		if err != nil {
			a.opts.Logger.Error("flush provider metrics failed; the buckets stay in memory for the next flush", "error", err)
		}
	}
}

// Columns of provider_metrics_minute, in the order of upsertStatement's
// values.
var (
	keyColumns     = []string{"bucket_start", "provider_id", "logical_model", "status"}
	latencyColumns = bucketColumns("latency")
	ttftColumns    = bucketColumns("ttft")
)

// valueColumns returns the additive columns in the order of appendValues.
func valueColumns() []string {
	columns := []string{"requests", "errors", "tokens_in", "tokens_out", "latency_ms_sum"}
	columns = append(columns, latencyColumns...)
	columns = append(columns, "ttft_count", "ttft_ms_sum")
	return append(columns, ttftColumns...)
}

// Columns returns every column that the aggregator writes.
func Columns() []string {
	return append(append([]string{}, keyColumns...), valueColumns()...)
}

func appendValues(args []any, v *BucketValues) []any {
	args = append(args, v.Requests, v.Errors, v.TokensIn, v.TokensOut, v.Latency.SumMS)
	for _, count := range v.Latency.Cumulative {
		args = append(args, count)
	}
	args = append(args, v.TTFT.Count, v.TTFT.SumMS)
	for _, count := range v.TTFT.Cumulative {
		args = append(args, count)
	}
	return args
}

// upsertStatement builds one INSERT of keys' buckets that adds to rows that
// exist. PostgreSQL and SQLite (3.24 and later) share the syntax.
func upsertStatement(keys []BucketKey, batch map[BucketKey]*BucketValues) (string, []any) {
	values := valueColumns()
	columns := append(append([]string{}, keyColumns...), values...)
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(columns)), ", ") + ")"

	var query strings.Builder
	query.WriteString("INSERT INTO " + TableName + " (" + strings.Join(columns, ", ") + ") VALUES ")
	args := make([]any, 0, len(keys)*len(columns))
	for i, key := range keys {
		if i > 0 {
			query.WriteString(", ")
		}
		query.WriteString(row)
		args = append(args, key.Start, key.ProviderID, key.LogicalModel, key.Status)
		args = appendValues(args, batch[key])
	}
	query.WriteString(" ON CONFLICT (" + strings.Join(keyColumns, ", ") + ") DO UPDATE SET ")
	for i, column := range values {
		if i > 0 {
			query.WriteString(", ")
		}
		fmt.Fprintf(&query, "%s = %s.%s + excluded.%s", column, TableName, column, column)
	}
	return query.String(), args
}

// ErrNoDatabase is returned by the queries of a Recorder without a
// database.
var ErrNoDatabase = errors.New("provider metrics have no database")

// WindowRow is the sum of the buckets of one provider, logical model and
// status over a window.
type WindowRow struct {
	ProviderID   string
	LogicalModel string
	Status       string
	BucketValues
}

// QueryWindow sums the stored buckets whose minute starts at or after from,
// per provider, logical model and status, ordered by those three.
func QueryWindow(ctx context.Context, db *gorm.DB, from time.Time) ([]WindowRow, error) {
	if db == nil {
		return nil, ErrNoDatabase
	}
	values := valueColumns()
	sums := make([]string, len(values))
	for i, column := range values {
		sqlType := "BIGINT"
		if strings.HasSuffix(column, "_sum") {
			sqlType = "DOUBLE PRECISION"
		}
		sums[i] = fmt.Sprintf("CAST(COALESCE(SUM(%s), 0) AS %s)", column, sqlType)
	}
	query := "SELECT provider_id, logical_model, status, " + strings.Join(sums, ", ") +
		" FROM " + TableName + " WHERE bucket_start >= ?" +
		" GROUP BY provider_id, logical_model, status ORDER BY provider_id, logical_model, status"

	rows, err := db.WithContext(ctx).Raw(query, from.UTC().Truncate(time.Minute)).Rows()
	if err != nil {
		return nil, fmt.Errorf("query provider metrics: %w", err)
	}
	defer rows.Close()

	var result []WindowRow
	for rows.Next() {
		var row WindowRow
		v := &row.BucketValues
		dest := []any{&row.ProviderID, &row.LogicalModel, &row.Status, &v.Requests, &v.Errors, &v.TokensIn, &v.TokensOut, &v.Latency.SumMS}
		for i := range v.Latency.Cumulative {
			dest = append(dest, &v.Latency.Cumulative[i])
		}
		dest = append(dest, &v.TTFT.Count, &v.TTFT.SumMS)
		for i := range v.TTFT.Cumulative {
			dest = append(dest, &v.TTFT.Cumulative[i])
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("read provider metrics: %w", err)
		}
		// Every request has a latency, so the latency count is the request
		// count and needs no column of its own.
		v.Latency.Count = v.Requests
		result = append(result, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read provider metrics: %w", err)
	}
	return result, nil
}
