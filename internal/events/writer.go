package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/models"
)

// Writer appends the events of one run. It must be the run's only writer
// while it is open. A second writer is caught by the unique (run_id, seq)
// index, which makes the later append fail with store.ErrConflict.
//
// Deltas are merged while a database write is in flight, or until the merge
// window has passed since the previous write began. So a fast stream costs
// one INSERT per window rather than one per token, and the first delta after
// a quiet spell is written at once.
type Writer struct {
	store  *store.Store
	bus    *Bus
	runID  string
	window time.Duration
	logger *slog.Logger

	mu      sync.Mutex
	pending []pendingEvent
	nextSeq int64
	err     error
	wake    chan struct{}
	urge    chan struct{} // cuts the merge window short for Flush
	done    chan struct{}
	closed  bool
	idle    *sync.Cond
	writing bool
}

type pendingEvent struct {
	eventType string
	delta     []byte
	payload   json.RawMessage
	at        time.Time
}

// NewWriter starts a writer for runID whose first event gets lastSeq+1.
func NewWriter(st *store.Store, bus *Bus, runID string, lastSeq int64, window time.Duration, logger *slog.Logger) *Writer {
	w := &Writer{
		store:   st,
		bus:     bus,
		runID:   runID,
		window:  window,
		logger:  logger,
		nextSeq: lastSeq + 1,
		wake:    make(chan struct{}, 1),
		urge:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	w.idle = sync.NewCond(&w.mu)
	go w.loop()
	return w
}

// Delta queues streamed text. It returns the error of an earlier failed
// write, after which the writer accepts nothing more.
func (w *Writer) Delta(text string) error {
	if text == "" {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if n := len(w.pending); n > 0 && w.pending[n-1].eventType == models.EventMessageDelta {
		w.pending[n-1].delta = append(w.pending[n-1].delta, text...)
	} else {
		w.pending = append(w.pending, pendingEvent{eventType: models.EventMessageDelta, delta: []byte(text), at: eventTime()})
	}
	w.signal()
	return nil
}

// Emit queues an event with a JSON-encodable payload.
func (w *Writer) Emit(eventType string, payload any) error {
	body, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("encode %s payload: %w", eventType, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	w.pending = append(w.pending, pendingEvent{eventType: eventType, payload: body, at: eventTime()})
	w.signal()
	return nil
}

// Flush waits until every queued event is stored and published, or ctx ends.
func (w *Writer) Flush(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		w.mu.Lock()
		w.idle.Broadcast()
		w.mu.Unlock()
	})
	defer stop()

	w.mu.Lock()
	defer w.mu.Unlock()
	for (len(w.pending) > 0 || w.writing) && w.err == nil && ctx.Err() == nil {
		w.signal()
		select {
		case w.urge <- struct{}{}:
		default:
		}
		w.idle.Wait()
	}
	if w.err != nil {
		return w.err
	}
	return ctx.Err()
}

// LastSeq returns the sequence number of the last stored event.
func (w *Writer) LastSeq() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nextSeq - 1
}

// Close flushes what is queued and stops the writer.
func (w *Writer) Close(ctx context.Context) error {
	err := w.Flush(ctx)
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.done)
	}
	w.mu.Unlock()
	return err
}

// signal wakes the loop; w.mu must be held.
func (w *Writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *Writer) loop() {
	var lastWrite time.Time
	for {
		select {
		case <-w.done:
			return
		case <-w.wake:
		}

		if wait := w.window - time.Since(lastWrite); wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-w.done:
				timer.Stop()
				return
			case <-w.urge:
				timer.Stop()
			case <-timer.C:
			}
		}

		w.mu.Lock()
		batch := w.take()
		w.writing = len(batch) > 0
		w.mu.Unlock()
		if len(batch) == 0 {
			w.mu.Lock()
			w.idle.Broadcast()
			w.mu.Unlock()
			continue
		}

		lastWrite = time.Now()
		err := w.write(batch)
		select {
		case <-w.urge: // a waiting Flush sends a fresh one after the broadcast below
		default:
		}

		w.mu.Lock()
		w.writing = false
		if err != nil && w.err == nil {
			w.err = err
		}
		if len(w.pending) > 0 && w.err == nil {
			w.signal()
		}
		w.idle.Broadcast()
		w.mu.Unlock()
	}
}

// take turns the queue into stored events with sequence numbers; w.mu must
// be held.
func (w *Writer) take() []models.ChatRunEvent {
	if w.err != nil || len(w.pending) == 0 {
		return nil
	}
	batch := make([]models.ChatRunEvent, 0, len(w.pending))
	for i := range w.pending {
		p := &w.pending[i]
		payload := p.payload
		if p.eventType == models.EventMessageDelta {
			payload, _ = json.Marshal(struct {
				Delta string `json:"delta"`
			}{string(p.delta)})
		}
		batch = append(batch, models.ChatRunEvent{
			RunID: w.runID, Seq: w.nextSeq, EventType: p.eventType, Payload: models.JSON(payload), CreatedAt: p.at,
		})
		w.nextSeq++
	}
	w.pending = w.pending[:0]
	return batch
}

func (w *Writer) write(batch []models.ChatRunEvent) error {
	// The write must finish even when the activity is being canceled, or the
	// sequence numbers already handed out would leave a gap.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.store.AppendEvents(ctx, batch); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("another writer is active on run %s: %w", w.runID, err)
		}
		return err
	}
	if w.bus != nil {
		if err := w.bus.Publish(ctx, batch); err != nil {
			// Stored events reach clients through their database catch-up.
			w.logger.Warn("publish events failed", "run_id", w.runID, "error", err)
		}
	}
	return nil
}

// eventTime returns the current time in UTC, truncated to microseconds.
// PostgreSQL stores microseconds, so an event that a client receives live
// carries the same created_at as its stored copy in a replay.
func eventTime() time.Time {
	return time.Now().UTC().Truncate(time.Microsecond)
}
