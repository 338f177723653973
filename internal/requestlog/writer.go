// Package requestlog writes gateway request log rows in batches, off the
// request path.
package requestlog

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"

	"github.com/aihigress/aihigress/models"
)

// Defaults for the zero fields of Options.
const (
	DefaultFlushInterval = time.Second
	DefaultBatchSize     = 500
	DefaultQueueSize     = 10_000
	// DefaultDropReportInterval is the min time between two log records
	// about dropped rows.
	DefaultDropReportInterval = 10 * time.Second
)

// insertTimeout bounds one multi-row INSERT.
const insertTimeout = 10 * time.Second

// Options configures a Writer. A zero field takes its default.
type Options struct {
	// FlushInterval is the max time a recorded row waits before it is
	// written.
	FlushInterval time.Duration
	// BatchSize is the number of queued rows that triggers a write before
	// FlushInterval has passed, and the max number of rows per INSERT.
	BatchSize int
	// QueueSize is the number of rows that may wait. Record drops rows that
	// find the queue full.
	QueueSize int
	// DropReportInterval is the min time between two log records about
	// dropped rows.
	DropReportInterval time.Duration
	Logger             *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.FlushInterval <= 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.DropReportInterval <= 0 {
		o.DropReportInterval = DefaultDropReportInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Writer queues request log rows and inserts them in batches from one
// goroutine. Record never blocks: a row that finds the queue full, or that
// arrives after Close, is dropped and counted. The methods are safe for
// concurrent use. Record, Dropped, Written and Close accept a nil *Writer,
// which discards every row.
type Writer struct {
	db    *gorm.DB
	opts  Options
	queue chan models.RequestLog

	closed  atomic.Bool
	dropped atomic.Int64
	written atomic.Int64

	// full wakes the writer's goroutine when a whole batch is queued. The
	// goroutine does not wait on queue itself, so that recording a row
	// costs a channel send and no goroutine switch.
	full chan struct{}

	startOnce sync.Once
	closeOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
}

// New returns a Writer that inserts into the request_logs table of db. Call
// Start before recording and Close when done.
func New(db *gorm.DB, opts Options) *Writer {
	opts = opts.withDefaults()
	return &Writer{
		db:    db,
		opts:  opts,
		queue: make(chan models.RequestLog, opts.QueueSize),
		full:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
}

// Start starts the goroutine that writes the rows. Later calls do nothing.
func (w *Writer) Start() {
	w.startOnce.Do(func() { go w.run() })
}

// Record queues row for writing, or drops it when the queue is full or the
// writer is closed. It reports whether the row was queued.
func (w *Writer) Record(row models.RequestLog) bool {
	if w == nil {
		return false
	}
	if w.closed.Load() {
		w.dropped.Add(1)
		return false
	}
	select {
	case w.queue <- row:
		if len(w.queue) >= w.opts.BatchSize {
			select {
			case w.full <- struct{}{}:
			default:
			}
		}
		return true
	default:
		w.dropped.Add(1)
		return false
	}
}

// Dropped returns the number of rows dropped so far, because the queue was
// full, the writer was closed or an INSERT failed.
func (w *Writer) Dropped() int64 {
	if w == nil {
		return 0
	}
	return w.dropped.Load()
}

// Written returns the number of rows inserted so far.
func (w *Writer) Written() int64 {
	if w == nil {
		return 0
	}
	return w.written.Load()
}

// Close stops accepting rows, writes the queued ones and waits for the
// writer's goroutine, or until ctx ends. Rows recorded while Close runs may
// be dropped, so callers stop their HTTP server first.
func (w *Writer) Close(ctx context.Context) error {
	if w == nil {
		return nil
	}
	w.Start()
	w.closeOnce.Do(func() {
		w.closed.Store(true)
		close(w.stop)
	})
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *Writer) run() {
	defer close(w.done)

	ticker := time.NewTicker(w.opts.FlushInterval)
	defer ticker.Stop()

	batch := make([]models.RequestLog, 0, w.opts.BatchSize)
	var reportedDrops int64
	lastReport := time.Time{}

	for {
		select {
		case <-w.full:
			batch = w.writeQueued(batch, w.opts.BatchSize)

		case <-ticker.C:
			batch = w.writeQueued(batch, 1)
			reportedDrops, lastReport = w.reportDrops(reportedDrops, lastReport)

		case <-w.stop:
			// Record rejects rows from now on, so the queue only shrinks.
			w.writeQueued(batch, 1)
			w.reportDrops(reportedDrops, time.Time{})
			return
		}
	}
}

// writeQueued inserts the queued rows in batches while at least minRows
// are queued, and returns batch emptied. With minRows = BatchSize it leaves
// a partial batch queued for the next tick.
func (w *Writer) writeQueued(batch []models.RequestLog, minRows int) []models.RequestLog {
	for len(w.queue) >= minRows && len(w.queue) > 0 {
		// This goroutine is the only receiver, so a receive from a
		// non-empty queue does not block.
		for len(batch) < w.opts.BatchSize && len(w.queue) > 0 {
			batch = append(batch, <-w.queue)
		}
		batch = w.flush(batch)
	}
	return batch
}

// flush inserts batch with one multi-row INSERT and returns batch emptied.
// A failed INSERT is logged, and its rows count as dropped.
func (w *Writer) flush(batch []models.RequestLog) []models.RequestLog {
	if len(batch) == 0 {
		return batch
	}

	ctx, cancel := context.WithTimeout(context.Background(), insertTimeout)
	defer cancel()
	err := w.db.WithContext(ctx).Create(&batch).Error
	if err != nil {
		w.dropped.Add(int64(len(batch)))
		level := slog.LevelError
		if errors.Is(err, context.DeadlineExceeded) {
			level = slog.LevelWarn
		}
		w.opts.Logger.Log(ctx, level, "write request log rows failed; the rows are dropped", "rows", len(batch), "error", err)
	} else {
		w.written.Add(int64(len(batch)))
	}

	clear(batch)
	return batch[:0]
}

// reportDrops logs the rows dropped since the last report, at most once per
// DropReportInterval unless lastReport is zero. It returns the new report
// state.
func (w *Writer) reportDrops(reported int64, lastReport time.Time) (int64, time.Time) {
	dropped := w.dropped.Load()
	if dropped == reported {
		return reported, lastReport
	}
	now := time.Now()
	if !lastReport.IsZero() && now.Sub(lastReport) < w.opts.DropReportInterval {
		return reported, lastReport
	}
	w.opts.Logger.Warn("request log rows dropped; the queue was full, the writer was closed or an insert failed",
		"dropped_since_last_report", dropped-reported, "dropped_total", dropped, "queue_size", w.opts.QueueSize)
	return dropped, now
}
