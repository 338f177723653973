package integration

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/aihigress/aihigress/activities"
	"github.com/aihigress/aihigress/internal/apikeys"
	"github.com/aihigress/aihigress/internal/media"
	"github.com/aihigress/aihigress/internal/mockupstream"
	"github.com/aihigress/aihigress/models"
)

// TestImageWorkerKilledMidRun kills the worker process with SIGKILL while
// its GenerateImages activity waits for the upstream, then starts a new
// one. The run must succeed on a later attempt and leave exactly its n
// objects in the storage, because object keys derive from the run ID and
// the image index.
func TestImageWorkerKilledMidRun(t *testing.T) {
	// Every image request waits 2 s at the mock, which is when the kill
	// lands.
	s := newStack(t, stackOptions{noWorker: true, mock: mockupstream.Options{TimeToFirstToken: 2 * time.Second}})
	binary := buildBinary(t)
	logPath := filepath.Join(t.TempDir(), "worker.log")
	defer func() {
		if t.Failed() {
			if data, err := os.ReadFile(logPath); err == nil {
				t.Logf("worker log:\n%s", data)
			}
		}
	}()

	first := startWorkerProcess(t, binary, s, logPath)
	alice := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})
	accepted := key.startImageRun(map[string]any{"model": "image-openai", "prompt": "survive a crash", "n": 3}, nil)

	waitFor(t, 30*time.Second, "the upstream to receive the first image request", func() bool { return s.mock.Stats().Images == 1 })
	// The attempt sends the upstream request before it records itself, so
	// the kill waits for the record as well.
	waitFor(t, 10*time.Second, "the run to record its first attempt", func() bool {
		var current runDetail
		key.mustDo("GET", "/v1/runs/"+accepted.RunID, nil, 200, &current)
		return current.Status == "running" && current.Attempt == 1
	})
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = first.Process.Wait()

	var killed runDetail
	key.mustDo("GET", "/v1/runs/"+accepted.RunID, nil, 200, &killed)
	if killed.Status != "running" || killed.Attempt != 1 {
		t.Fatalf("after the kill the run is %s at attempt %d, want running at attempt 1", killed.Status, killed.Attempt)
	}
	if files := s.storedFiles(t); len(files) != 0 {
		t.Fatalf("the killed attempt stored %v, want nothing before the upstream responded", files)
	}

	startWorkerProcess(t, binary, s, logPath)
	// The server notices the lost worker after the activity's 10 s
	// heartbeat timeout.
	run := key.waitRunFor(accepted.RunID, "succeeded", 60*time.Second)
	if run.Attempt < 2 {
		t.Errorf("attempt = %d, want at least 2 after the kill", run.Attempt)
	}
	if got := s.mock.Stats().Images; got != int64(run.Attempt) {
		t.Errorf("the mock received %d image requests, want one per attempt (%d)", got, run.Attempt)
	}

	// A retried attempt overwrites the objects of an earlier one, because
	// the keys derive from the run and the image index only.
	keys := s.runObjectKeys(alice)
	stored, err := s.app.Store.RunByID(context.Background(), run.RunID)
	if err != nil {
		t.Fatal(err)
	}
	var derived []string
	for i := range 3 {
		derived = append(derived, media.ObjectKey(s.cfg.Images.Prefix, activities.ImageKeyKind, stored.CreatedAt, run.RunID, i, "image/png"))
	}
	slices.Sort(derived)
	if !slices.Equal(keys, derived) {
		t.Fatalf("the run's keys are %v, want %v derived from the run ID and the index", keys, derived)
	}
	if files := s.storedFiles(t); !slices.Equal(files, keys) {
		t.Errorf("storage contains %v, want exactly the run's keys %v", files, keys)
	}
	var result imagesBody
	key.mustDo("GET", "/v1/runs/"+run.RunID+"/result", nil, 200, &result)
	if len(result.Data) != 3 {
		t.Fatalf("result has %d images, want 3", len(result.Data))
	}
	for _, datum := range result.Data {
		s.fetchImageLink(t, datum.URL)
	}

	var events []models.ChatRunEvent
	if err := s.app.Store.DB.Where("run_id = ?", run.RunID).Order("seq").Find(&events).Error; err != nil {
		t.Fatal(err)
	}
	if len(events) == 0 || events[len(events)-1].EventType != models.EventMessageCompleted {
		t.Errorf("stored events end with %v, want message.completed", events)
	}
	recordHistory(t, s, run.WorkflowID, "image_worker_killed")
}
