package events_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aihigress/aihigress/internal/events"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/models"
)

func newRun(t *testing.T, st *store.Store) string {
	t.Helper()
	ctx := context.Background()
	user := models.User{Username: "u" + testenv.Suffix(), Email: testenv.Suffix() + "@example.com", PasswordHash: "x", IsActive: true}
	if err := st.CreateUser(ctx, &user); err != nil {
		t.Fatal(err)
	}
	assistant := models.Assistant{UserID: user.ID, Name: "A", DefaultLogicalModel: "m"}
	if err := st.CreateAssistant(ctx, &assistant); err != nil {
		t.Fatal(err)
	}
	conv := models.Conversation{UserID: user.ID, AssistantID: assistant.ID}
	if err := st.CreateConversation(ctx, &conv); err != nil {
		t.Fatal(err)
	}
	turn, err := st.CreateTurn(ctx, store.NewTurn{UserID: user.ID, ConversationID: conv.ID, Content: "hi", LogicalModel: "m"})
	if err != nil {
		t.Fatal(err)
	}
	return turn.Run.ID
}

func newBus(t *testing.T) (*events.Bus, *redis.Client) {
	t.Helper()
	url, prefix := testenv.Redis(t)
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	return events.NewBus(rdb, prefix), rdb
}

func storedSummary(t *testing.T, st *store.Store, runID string) []string {
	t.Helper()
	stored, err := st.EventsAfter(context.Background(), runID, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, e := range stored {
		if e.Seq != int64(i+2) {
			t.Errorf("event %d has seq %d, want %d", i, e.Seq, i+2)
		}
		entry := e.EventType
		if e.EventType == models.EventMessageDelta {
			var p struct{ Delta string }
			if err := json.Unmarshal(e.Payload, &p); err != nil {
				t.Fatal(err)
			}
			entry += ":" + p.Delta
		}
		got = append(got, entry)
	}
	return got
}

func TestWriterMergesDeltasAndKeepsOrder(t *testing.T) {
	st := testenv.Store(t)
	bus, _ := newBus(t)
	runID := newRun(t, st)
	ctx := context.Background()

	w := events.NewWriter(st, bus, runID, 1, time.Second, slog.New(slog.DiscardHandler))
	if err := w.Delta("a"); err != nil {
		t.Fatal(err)
	}
	// The first delta after a quiet spell is written without waiting for
	// the merge window.
	deadline := time.Now().Add(500 * time.Millisecond)
	for len(storedSummary(t, st, runID)) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := storedSummary(t, st, runID); strings.Join(got, "|") != "message.delta:a" {
		t.Fatalf("after the first delta stored = %v, want [message.delta:a]", got)
	}

	// Within the window, deltas wait and merge; a reset keeps its place.
	for _, d := range []string{"b", "c"} {
		if err := w.Delta(d); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Emit(models.EventMessageReset, map[string]int{"attempt": 2}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"d", "e"} {
		if err := w.Delta(d); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if got := storedSummary(t, st, runID); len(got) != 1 {
		t.Errorf("stored %v within the merge window, want only the first delta", got)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}

	want := "message.delta:a|message.delta:bc|message.reset|message.delta:de"
	if got := storedSummary(t, st, runID); strings.Join(got, "|") != want {
		t.Errorf("stored events = %s, want %s", strings.Join(got, "|"), want)
	}
	if w.LastSeq() != 5 {
		t.Errorf("LastSeq = %d, want 5", w.LastSeq())
	}
}

func TestWriterRejectsSecondWriter(t *testing.T) {
	st := testenv.Store(t)
	bus, _ := newBus(t)
	runID := newRun(t, st)
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)

	first := events.NewWriter(st, bus, runID, 1, time.Millisecond, logger)
	second := events.NewWriter(st, bus, runID, 1, time.Millisecond, logger)
	if err := first.Delta("x"); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := second.Delta("y"); err != nil {
		t.Fatal(err)
	}
	if err := second.Close(ctx); err == nil {
		t.Fatal("a second writer reused seq 2 without an error")
	}
	if err := second.Delta("z"); err == nil {
		t.Error("a failed writer accepted another delta")
	}
}

func TestFollowerWithoutRedisDeliversOnce(t *testing.T) {
	st := testenv.Store(t)
	runID := newRun(t, st)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// No bus and no hub: the follower must rely on the database alone.
	w := events.NewWriter(st, nil, runID, 1, time.Millisecond, slog.New(slog.DiscardHandler))
	go func() {
		for i := 0; i < 20; i++ {
			_ = w.Delta("t")
			time.Sleep(5 * time.Millisecond)
		}
		_ = w.Emit(models.EventMessageCompleted, map[string]string{"output_text": strings.Repeat("t", 20)})
		_ = w.Close(ctx)
	}()

	f := &events.Follower{Store: st, Logger: slog.New(slog.DiscardHandler), Heartbeat: time.Second, Poll: 20 * time.Millisecond}
	var frames []events.Frame
	err := f.Follow(ctx, runID, 0, func(fr events.Frame) error {
		frames = append(frames, fr)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if frames[len(frames)-1].Event != "done" {
		t.Fatalf("last frame = %s, want done", frames[len(frames)-1].Event)
	}
	var text strings.Builder
	next := int64(1)
	for _, fr := range frames {
		switch fr.Event {
		case "replay.done", "heartbeat", "done":
			continue
		}
		if fr.ID != next {
			t.Fatalf("frame %s has id %d, want %d", fr.Event, fr.ID, next)
		}
		next++
		if fr.Event == models.EventMessageDelta {
			var w events.Wire
			if err := json.Unmarshal(fr.Data, &w); err != nil {
				t.Fatal(err)
			}
			var p struct{ Delta string }
			_ = json.Unmarshal(w.Payload, &p)
			text.WriteString(p.Delta)
		}
	}
	if text.String() != strings.Repeat("t", 20) {
		t.Errorf("delivered text = %q, want 20 t's", text.String())
	}
}

// TestPublishedCreatedAtMatchesStored checks that every event reaches live
// subscribers with the created_at that a replay reads from the database,
// for the events of the writer and the terminal events of FinalizeRun.
// PostgreSQL keeps microseconds, so a nanosecond time would differ.
func TestPublishedCreatedAtMatchesStored(t *testing.T) {
	st := testenv.Store(t)
	bus, _ := newBus(t)
	published := &timeLog{}
	bus.OnPublished = published.add
	runID := newRun(t, st)
	ctx := context.Background()

	w := events.NewWriter(st, bus, runID, 1, time.Millisecond, slog.New(slog.DiscardHandler))
	for _, delta := range []string{"a", "b", "c"} {
		if err := w.Delta(delta); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := w.Emit(models.EventMessageReset, map[string]int{"attempt": 2}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	_, terminal, _, err := st.FinalizeRun(ctx, runID, store.Outcome{Status: models.RunSucceeded})
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.Publish(ctx, terminal); err != nil {
		t.Fatal(err)
	}

	stored, err := st.EventsAfter(ctx, runID, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != published.len() || len(terminal) == 0 {
		t.Fatalf("stored %d events and published %d with %d terminal ones, want the same count and a terminal event",
			len(stored), published.len(), len(terminal))
	}
	for i, e := range stored {
		live := published.times[i].UTC().Format(time.RFC3339Nano)
		replayed := events.ToWire(e).CreatedAt.UTC().Format(time.RFC3339Nano)
		if live != replayed {
			t.Errorf("event %d (%s): created_at %s live, %s replayed", e.Seq, e.EventType, live, replayed)
		}
	}
}
