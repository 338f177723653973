package replay_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"

	"github.com/aihigress/aihigress/internal/replay"
)

const recorded = "../../testdata/histories/chat_succeeded.json"

// renameActivity copies the recorded history with the activity scheduled
// at eventID renamed, as if the workflow code had changed since.
func renameActivity(t *testing.T, eventID string, name string) string {
	t.Helper()
	data, err := os.ReadFile(recorded)
	if err != nil {
		t.Fatal(err)
	}

	var history map[string]any
	if err := json.Unmarshal(data, &history); err != nil {
		t.Fatal(err)
	}

	found := false
	for _, raw := range history["events"].([]any) {
		event := raw.(map[string]any)
		if event["eventId"] != eventID {
			continue
		}
		attributes := event["activityTaskScheduledEventAttributes"].(map[string]any)
		attributes["activityType"] = map[string]any{"name": name}
		found = true
	}
	if !found {
		t.Fatalf("event %s not found in %s", eventID, recorded)
	}

	out, err := json.Marshal(history)
	if err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(t.TempDir(), "changed.json")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReplayFile(t *testing.T) {
	tests := []struct {
		name                 string
		path                 func(t *testing.T) string
		wantErr              bool
		wantNondeterministic bool
		wantEventID          int64
	}{
		{name: "recorded history", path: func(*testing.T) string { return recorded }},
		{
			name:                 "changed activity",
			path:                 func(t *testing.T) string { return renameActivity(t, "7", "SomethingElse") },
			wantErr:              true,
			wantNondeterministic: true,
			wantEventID:          7,
		},
		{name: "missing file", path: func(t *testing.T) string { return filepath.Join(t.TempDir(), "none.json") }, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			result := replay.New(worker.WorkflowReplayerOptions{}, nil).File(tt.path(t))
			if (result.Err != nil) != tt.wantErr {
				t.Fatalf("replay error = %v, want error: %v", result.Err, tt.wantErr)
			}
			if got := result.Nondeterministic(); got != tt.wantNondeterministic {
				t.Errorf("Nondeterministic() = %v, want %v (error %v)", got, tt.wantNondeterministic, result.Err)
			}
			if result.EventID != tt.wantEventID {
				t.Errorf("EventID = %d, want %d (error %v)", result.EventID, tt.wantEventID, result.Err)
			}
			if !tt.wantErr && result.WorkflowID == "" {
				t.Error("WorkflowID is empty for a replayed history")
			}
		})
	}
}

func TestReplayFolder(t *testing.T) {
	results, err := replay.New(worker.WorkflowReplayerOptions{}, nil).Path(filepath.Dir(recorded))
	if err != nil {
		t.Fatal(err)
	}
	if len(results) < 10 {
		t.Fatalf("replayed %d histories from %s, want every recorded one", len(results), filepath.Dir(recorded))
	}
	for _, r := range results {
		if r.Err != nil {
			t.Errorf("%s: %v", r.Source, r.Err)
		}
	}

	if _, err := replay.New(worker.WorkflowReplayerOptions{}, nil).Path(t.TempDir()); err == nil {
		t.Error("replaying an empty folder succeeded, want an error")
	}
}

// BenchmarkReplayChatHistories replays the recorded chat histories and
// reports histories per second.
func BenchmarkReplayChatHistories(b *testing.B) {
	files, err := filepath.Glob(filepath.Join(filepath.Dir(recorded), "chat_*.json"))
	if err != nil || len(files) == 0 {
		b.Fatalf("no chat histories: %v", err)
	}
	replayer := replay.New(worker.WorkflowReplayerOptions{}, nil)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if result := replayer.File(files[i%len(files)]); result.Err != nil {
			b.Fatal(result.Err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "histories/s")
}
