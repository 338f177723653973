package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/aihigress/aihigress/internal/apikeys"
	"github.com/aihigress/aihigress/internal/media"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/models"
)

// TestImageSyncWaitWakesOnTerminalEvent runs no worker, so the image
// workflow never ends. The test stores the run's outcome itself and
// publishes its terminal event, and the synchronous request must respond
// with the images long before IMAGE_SYNC_WAIT_TIMEOUT.
func TestImageSyncWaitWakesOnTerminalEvent(t *testing.T) {
	s := newStack(t, stackOptions{noWorker: true, env: map[string]string{"IMAGE_SYNC_WAIT_TIMEOUT": "60s"}})
	alice := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})

	type response struct {
		status int
		body   imagesBody
		err    error
	}
	responses := make(chan response, 1)
	sent := time.Now()
	go func() {
		body := strings.NewReader(`{"model": "image-openai", "prompt": "a lighthouse at dawn"}`)
		req, err := http.NewRequest(http.MethodPost, key.baseURL+"/v1/images/generations", body)
		if err != nil {
			responses <- response{err: err}
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+key.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			responses <- response{err: err}
			return
		}
		defer resp.Body.Close()
		var r response
		r.status = resp.StatusCode
		r.err = json.NewDecoder(resp.Body).Decode(&r.body)
		responses <- r
	}()

	run := s.waitForImageRun(alice, 10*time.Second)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.app.Temporal.TerminateWorkflow(ctx, run.WorkflowID, "", "the test ended"); err != nil {
			t.Logf("terminate %s: %v", run.WorkflowID, err)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	objectKey := media.ObjectKey(s.cfg.Images.Prefix, "images", run.CreatedAt, run.ID, 0, "image/png")
	if err := s.app.Store.MarkRunning(ctx, run.ID); err != nil {
		t.Fatal(err)
	}
	image := models.StoredImage{ObjectKey: objectKey, Size: 1024, ContentType: "image/png"}
	if err := s.app.Store.SaveImages(ctx, run.ID, []models.StoredImage{image}, models.Usage{}); err != nil {
		t.Fatal(err)
	}
	_, terminal, changed, err := s.app.Store.FinalizeRun(ctx, run.ID, store.Outcome{Status: models.RunSucceeded})
	if err != nil || !changed || len(terminal) == 0 {
		t.Fatalf("FinalizeRun: changed %v, %d terminal events, error %v; want a change with terminal events", changed, len(terminal), err)
	}

	// The API subscribes to the run's events after it started the
	// workflow, which the test cannot observe, so the event is published
	// until the response arrives.
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	for {
		if err := s.app.Bus.Publish(ctx, terminal); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-responses:
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.status != http.StatusOK {
				t.Fatalf("status %d, want 200", r.status)
			}
			if len(r.body.Data) != 1 {
				t.Fatalf("%d images, want 1", len(r.body.Data))
			}
			if want := "/media/images/" + objectKey + "?"; !strings.Contains(r.body.Data[0].URL, want) {
				t.Errorf("url = %q, want a signed link containing %q", r.body.Data[0].URL, want)
			}
			if waited := time.Since(sent); waited > 15*time.Second {
				t.Errorf("the response took %s, want far less than the 60s wait limit", waited)
			}
			return
		case <-ticker.C:
		case <-ctx.Done():
			t.Fatal("no response within 20s of the terminal event")
		}
	}
}

// TestImageWorkflowStartsEagerly runs the image worker on the API's
// Temporal client, as `dev` and `serve` with IMAGE_WORKER_IN_API do. The
// server must hand the first workflow task to that worker with the start
// response. The API plans the run, so the workflow must skip StartRun and
// still record the activity summary with the planned candidate.
func TestImageWorkflowStartsEagerly(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})

	var body imagesBody
	key.mustDo("POST", "/v1/images/generations", map[string]any{"model": "image-openai", "prompt": "a quiet harbor"}, 200, &body)
	runs := s.imageRuns(alice)
	if len(runs) != 1 {
		t.Fatalf("%d image runs, want 1", len(runs))
	}

	// The response can leave on the terminal event, before the workflow
	// task that finalized the run has completed.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.app.Temporal.GetWorkflow(ctx, runs[0].WorkflowID, "").Get(ctx, nil); err != nil {
		t.Fatalf("wait for %s to close: %v", runs[0].WorkflowID, err)
	}
	iter := s.app.Temporal.GetWorkflowHistory(ctx, runs[0].WorkflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	eager, summaries, localActivities := false, []string{}, []string{}
	for iter.HasNext() {
		event, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		if attrs := event.GetWorkflowExecutionStartedEventAttributes(); attrs != nil {
			eager = attrs.GetEagerExecutionAccepted()
		}
		if attrs := event.GetMarkerRecordedEventAttributes(); attrs.GetMarkerName() == "LocalActivity" {
			var data struct{ ActivityType string }
			if err := json.Unmarshal(attrs.GetDetails()["data"].GetPayloads()[0].GetData(), &data); err != nil {
				t.Fatalf("decode local activity marker: %v", err)
			}
			localActivities = append(localActivities, data.ActivityType)
		}
		if event.GetEventType() == enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED {
			var summary string
			if err := json.Unmarshal(event.GetUserMetadata().GetSummary().GetData(), &summary); err != nil {
				t.Fatalf("decode activity summary: %v", err)
			}
			summaries = append(summaries, summary)
		}
	}
	if !eager {
		t.Error("the start event does not record eager execution, want the first workflow task handed over with the start response")
	}
	if want := fmt.Sprintf("images %s/%s attempt 1", runs[0].SelectedProviderID, runs[0].SelectedProviderModel); len(summaries) != 1 || summaries[0] != want {
		t.Errorf("activity summaries = %q, want [%q]", summaries, want)
	}
	if len(localActivities) != 1 || localActivities[0] != "FinalizeRun" {
		t.Errorf("local activities = %q, want only FinalizeRun", localActivities)
	}
	if runs[0].Status != models.RunSucceeded || runs[0].StartedAt == nil {
		t.Errorf("run status %s, started_at %v; want succeeded with a start time", runs[0].Status, runs[0].StartedAt)
	}
}

// waitForImageRun returns the first image run of owner once it exists.
func (s *stack) waitForImageRun(owner *client, limit time.Duration) models.ChatRun {
	s.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if runs := s.imageRuns(owner); len(runs) > 0 {
			return runs[0]
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no image run within %s", limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
