package events_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/events"
	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/models"
)

// timeLog collects the created_at values that a lag hook receives.
type timeLog struct {
	mu    sync.Mutex
	times []time.Time
}

func (l *timeLog) add(createdAt time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.times = append(l.times, createdAt)
}

func (l *timeLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.times)
}

func TestBusReportsPublishedEvents(t *testing.T) {
	st := testenv.Store(t)
	bus, _ := newBus(t)
	published := &timeLog{}
	bus.OnPublished = published.add
	runID := newRun(t, st)

	before := time.Now()
	w := events.NewWriter(st, bus, runID, 1, time.Millisecond, slog.New(slog.DiscardHandler))
	for range 3 {
		if err := w.Emit(models.EventMessageReset, map[string]int{"attempt": 2}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if published.len() != 3 {
		t.Fatalf("OnPublished calls = %d, want 3", published.len())
	}
	for i, createdAt := range published.times {
		if createdAt.Before(before) || createdAt.After(time.Now()) {
			t.Errorf("event %d created_at %s is outside the test's run", i, createdAt)
		}
	}
}

func TestFollowerReportsLiveDeliveriesOnly(t *testing.T) {
	st := testenv.Store(t)
	bus, _ := newBus(t)
	runID := newRun(t, st)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	logger := slog.New(slog.DiscardHandler)

	// Two events exist before the client connects; they are replayed.
	w := events.NewWriter(st, bus, runID, 1, time.Millisecond, logger)
	for range 2 {
		_ = w.Emit(models.EventMessageReset, map[string]int{"attempt": 2})
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	hub := events.NewHub(ctx, bus, logger)
	delivered := &timeLog{}
	f := &events.Follower{Store: st, Hub: hub, Logger: logger, Heartbeat: time.Second, Poll: 50 * time.Millisecond, OnLiveDelivery: delivered.add}
	var frames []string
	err := f.Follow(ctx, runID, 0, func(fr events.Frame) error {
		frames = append(frames, fr.Event)
		if fr.Event == "replay.done" {
			if delivered.len() != 0 {
				t.Errorf("%d replayed events reached OnLiveDelivery", delivered.len())
			}
			// Three more events, the last one terminal, arrive live.
			go func() {
				_ = w.Emit(models.EventMessageReset, map[string]int{"attempt": 3})
				_ = w.Emit(models.EventMessageReset, map[string]int{"attempt": 4})
				_ = w.Emit(models.EventMessageCompleted, map[string]string{"output_text": "done"})
				_ = w.Close(ctx)
			}()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if delivered.len() != 3 {
		t.Errorf("OnLiveDelivery calls = %d, want 3 (frames %v)", delivered.len(), frames)
	}
}
