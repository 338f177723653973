package activities_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/config"
	"github.com/aihigress/aihigress/internal/events"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/models"
	"github.com/aihigress/aihigress/workflows"
)

// startRun creates a turn and marks its run running with deltas, as the
// chat workflow does up to the end of streaming.
func (f *maintenanceFixture) startRun(t *testing.T, conv models.Conversation, text string) models.ChatRun {
	t.Helper()
	ctx := context.Background()
	turn, err := f.store.CreateTurn(ctx, store.NewTurn{UserID: f.user.ID, ConversationID: conv.ID, Content: "hi", LogicalModel: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.MarkRunning(ctx, turn.Run.ID); err != nil {
		t.Fatal(err)
	}
	deltas := []models.ChatRunEvent{
		{RunID: turn.Run.ID, Seq: 2, EventType: models.EventMessageDelta, Payload: models.MustJSON(map[string]string{"delta": text[:2]}), CreatedAt: time.Now().UTC()},
		{RunID: turn.Run.ID, Seq: 3, EventType: models.EventMessageDelta, Payload: models.MustJSON(map[string]string{"delta": text[2:]}), CreatedAt: time.Now().UTC()},
	}
	if err := f.store.AppendEvents(ctx, deltas); err != nil {
		t.Fatal(err)
	}
	if err := f.store.SaveOutput(ctx, turn.Run.ID, store.Output{Text: text}); err != nil {
		t.Fatal(err)
	}
	return turn.Run
}

func (f *maintenanceFixture) eventTypes(t *testing.T, runID string) []string {
	t.Helper()
	stored, err := f.store.EventsAfter(context.Background(), runID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	types := make([]string, len(stored))
	for i, e := range stored {
		types[i] = e.EventType
	}
	return types
}

func TestPruneRunEventsKeepsFinalState(t *testing.T) {
	f := newMaintenanceFixture(t, config.Maintenance{RunEventsRetention: 30 * 24 * time.Hour})
	ctx := context.Background()
	assistant := models.Assistant{UserID: f.user.ID, Name: "A", DefaultLogicalModel: "m"}
	if err := f.store.CreateAssistant(ctx, &assistant); err != nil {
		t.Fatal(err)
	}
	conv := models.Conversation{UserID: f.user.ID, AssistantID: assistant.ID}
	if err := f.store.CreateConversation(ctx, &conv); err != nil {
		t.Fatal(err)
	}

	succeeded := f.startRun(t, conv, "Hello")
	if _, _, _, err := f.store.FinalizeRun(ctx, succeeded.ID, store.Outcome{Status: models.RunSucceeded}); err != nil {
		t.Fatal(err)
	}
	canceled := f.startRun(t, conv, "Bye now")
	if _, _, _, err := f.store.FinalizeRun(ctx, canceled.ID, store.Outcome{Status: models.RunCanceled}); err != nil {
		t.Fatal(err)
	}
	running := f.startRun(t, conv, "Still going")
	recent := f.startRun(t, conv, "Fresh")
	if _, _, _, err := f.store.FinalizeRun(ctx, recent.ID, store.Outcome{Status: models.RunSucceeded}); err != nil {
		t.Fatal(err)
	}

	// Every event but those of the recent run is 40 days old.
	old := time.Now().Add(-40 * 24 * time.Hour).UTC()
	err := f.store.DB.Model(&models.ChatRunEvent{}).Where("run_id IN ?", []string{succeeded.ID, canceled.ID, running.ID}).
		Update("created_at", old).Error
	if err != nil {
		t.Fatal(err)
	}

	var result workflows.PruneRunEventsResult
	f.run(t, f.m.PruneRunEvents, &result, workflows.PruneRunEventsInput{AsOf: time.Now()})
	// message.created and two deltas of each finished old run.
	if result.Deleted != 6 {
		t.Errorf("Deleted = %d, want 6", result.Deleted)
	}
	tests := []struct {
		name  string
		runID string
		want  []string
	}{
		{"succeeded keeps its terminal event", succeeded.ID, []string{models.EventMessageCompleted}},
		{"canceled keeps both terminal events", canceled.ID, []string{models.EventRunCanceled, models.EventMessageFailed}},
		{"running keeps every event", running.ID, []string{models.EventMessageCreated, models.EventMessageDelta, models.EventMessageDelta}},
		{"recent keeps every event", recent.ID, []string{models.EventMessageCreated, models.EventMessageDelta, models.EventMessageDelta, models.EventMessageCompleted}},
	}
	for _, tt := range tests {
		if got := f.eventTypes(t, tt.runID); !slices.Equal(got, tt.want) {
			t.Errorf("%s: events = %v, want %v", tt.name, got, tt.want)
		}
	}

	// The run row keeps its final state and output.
	run, err := f.store.RunByID(ctx, succeeded.ID)
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != models.RunSucceeded || run.OutputText != "Hello" {
		t.Errorf("run after pruning = %s %q, want succeeded with Hello", run.Status, run.OutputText)
	}

	// A replay of the events, as GET /v1/runs/{id}/events does it, sends
	// the terminal event with the output and ends the stream.
	follower := &events.Follower{Store: f.store, Logger: slog.New(slog.DiscardHandler), Heartbeat: time.Second, Poll: time.Second}
	var frames []events.Frame
	replayCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err = follower.Follow(replayCtx, succeeded.ID, 0, func(frame events.Frame) error {
		frames = append(frames, frame)
		return nil
	})
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	var kinds []string
	for _, frame := range frames {
		kinds = append(kinds, frame.Event)
	}
	if want := []string{models.EventMessageCompleted, "replay.done", "done"}; !slices.Equal(kinds, want) {
		t.Fatalf("replayed frames = %v, want %v", kinds, want)
	}
	var completed struct {
		Seq     int64 `json:"seq"`
		Payload struct {
			OutputText string `json:"output_text"`
			Run        struct {
				Status string `json:"status"`
			} `json:"run"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(frames[0].Data, &completed); err != nil {
		t.Fatalf("decode %s: %v", frames[0].Data, err)
	}
	if completed.Seq != 4 || completed.Payload.OutputText != "Hello" || completed.Payload.Run.Status != models.RunSucceeded {
		t.Errorf("replayed message.completed = %+v, want seq 4 with output Hello and status succeeded", completed)
	}

	// A second run finds nothing more to delete.
	f.run(t, f.m.PruneRunEvents, &result, workflows.PruneRunEventsInput{AsOf: time.Now()})
	if result.Deleted != 0 {
		t.Errorf("second run deleted %d events, want 0", result.Deleted)
	}
}

func TestPruneRunEventsRetentionOff(t *testing.T) {
	f := newMaintenanceFixture(t, config.Maintenance{})
	var result workflows.PruneRunEventsResult
	f.run(t, f.m.PruneRunEvents, &result, workflows.PruneRunEventsInput{AsOf: time.Now()})
	if result.Deleted != 0 || !result.Before.IsZero() {
		t.Errorf("result with the retention off = %+v, want nothing", result)
	}
}
