package integration

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/apikeys"
	"github.com/aihigress/aihigress/internal/mockupstream"
	"github.com/aihigress/aihigress/models"
)

// imageRunError is the error body of a synchronous image generation whose
// run failed: the usual error object and the run's id.
type imageRunError struct {
	Error struct {
		Message string `json:"message"`
		Type    string `json:"type"`
		Code    string `json:"code"`
	} `json:"error"`
	RunID string `json:"run_id"`
}

func TestImageFailoverToNextCandidate(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})

	accepted := key.startImageRun(map[string]any{"model": "image-failover", "prompt": "a bridge in fog"}, nil)
	run := key.waitRunFor(accepted.RunID, "succeeded", 30*time.Second)
	if run.Attempt != 2 {
		t.Errorf("attempt = %d, want 2: the first candidate returns 500", run.Attempt)
	}
	if run.SelectedProviderID != "mock-images" || run.SelectedProviderModel != "gpt-image-mock" {
		t.Errorf("selected %s/%s, want the second candidate mock-images/gpt-image-mock", run.SelectedProviderID, run.SelectedProviderModel)
	}
	if got := s.mock.Stats().Images; got != 2 {
		t.Errorf("the mock received %d image requests, want 2", got)
	}

	var result imagesBody
	key.mustDo("GET", "/v1/runs/"+run.RunID+"/result", nil, 200, &result)
	if len(result.Data) != 1 {
		t.Fatalf("result has %d images, want 1", len(result.Data))
	}
	s.fetchImageLink(t, result.Data[0].URL)

	stream := key.openEvents("/v1/runs/"+run.RunID+"/events", nil)
	frames := stream.readUntil(t, "done")
	stream.close()
	progress := strings.Join(deltaTexts(t, frames), "")
	for _, want := range []string{"mock-images/fault-500 (attempt 1)", "mock-images/gpt-image-mock (attempt 2)"} {
		if !strings.Contains(progress, want) {
			t.Errorf("progress %q does not mention %q", progress, want)
		}
	}
	recordHistory(t, s, run.WorkflowID, "image_failover")
}

func TestImageUpstreamErrorsFailRun(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})

	tests := []struct {
		model       string
		wantCode    string
		wantMessage string
	}{
		// The upstream's own message reaches the client.
		{"image-bad-request", "upstream_bad_request", "Invalid request (injected by the mock upstream)."},
		{"image-gemini-blocked", "upstream_no_image", "finishReason SAFETY"},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			requestsBefore := s.mock.Stats().Images
			status, header, raw := exchange(t, key, "POST", "/v1/images/generations", map[string]any{"model": tt.model, "prompt": "a storm"}, nil)
			if status != http.StatusBadRequest || !strings.HasPrefix(header.Get("Content-Type"), "application/json") {
				t.Fatalf("status %d (%s), want a 400 JSON error: %.300s", status, header.Get("Content-Type"), raw)
			}
			var body imageRunError
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatalf("decode %s: %v", raw, err)
			}
			if body.Error.Code != tt.wantCode || body.Error.Type != "invalid_request_error" || !strings.Contains(body.Error.Message, tt.wantMessage) {
				t.Errorf("error = %+v, want code %s, type invalid_request_error and a message containing %q", body.Error, tt.wantCode, tt.wantMessage)
			}
			if body.RunID == "" {
				t.Fatalf("the error has no run_id: %s", raw)
			}

			var run runDetail
			exchangeJSON(t, key, "GET", "/v1/runs/"+body.RunID, 200, &run)
			if run.Status != "failed" || run.ErrorCode == nil || *run.ErrorCode != tt.wantCode {
				t.Errorf("run status %s, error code %v; want failed with %s", run.Status, run.ErrorCode, tt.wantCode)
			}
			// Another attempt would fail the same way, so there is none.
			if run.Attempt != 1 {
				t.Errorf("attempt = %d, want 1", run.Attempt)
			}
			if got := s.mock.Stats().Images - requestsBefore; got != 1 {
				t.Errorf("the mock received %d image requests, want 1", got)
			}

			var conflict runConflict
			status, _, raw = exchange(t, key, "GET", "/v1/runs/"+body.RunID+"/result", nil, nil)
			if err := json.Unmarshal(raw, &conflict); status != http.StatusConflict || err != nil || conflict.Status != "failed" || conflict.Error.Code != tt.wantCode {
				t.Errorf("result: status %d, body %s; want 409 with status failed and code %s", status, raw, tt.wantCode)
			}
		})
	}

	t.Run("conversation", func(t *testing.T) {
		bound := *alice
		bound.t = t
		convID := bound.conversation("mock-gpt")
		stream := bound.postStreaming("/v1/conversations/"+convID+"/image-generations",
			map[string]any{"prompt": "a storm", "model": "image-gemini-blocked", "streaming": true})
		frames := stream.readUntil(t, "done")
		stream.close()

		events := runEvents(frames)
		last := events[len(events)-1]
		if last.Event != "message.failed" {
			t.Fatalf("run events = %v, want message.failed last", eventNames(events))
		}
		failed := imageGenerationOf(t, last)
		if failed.Status != "failed" || failed.Error == nil || failed.Error.Code != "upstream_no_image" || !strings.Contains(failed.Error.Message, "SAFETY") {
			t.Errorf("message.failed image_generation = %+v, want status failed with upstream_no_image and SAFETY", failed)
		}

		history := listImageHistory(t, alice, convID)
		var listed imageGeneration
		if len(history) != 2 || json.Unmarshal(history[1].Content, &listed) != nil {
			t.Fatalf("history = %+v, want the prompt and a failed generation", history)
		}
		if listed.Status != "failed" || listed.Error == nil || listed.Error.Code != "upstream_no_image" || len(listed.Images) != 0 {
			t.Errorf("assistant content = %s, want a failed generation without images", history[1].Content)
		}
	})
}

// exchangeJSON sends a request as c, fails t unless the status is want, and
// decodes the body into out.
func exchangeJSON(t *testing.T, c *client, method, path string, want int, out any) {
	t.Helper()
	status, _, raw := exchange(t, c, method, path, nil, nil)
	if status != want {
		t.Fatalf("%s %s: status %d, want %d: %.300s", method, path, status, want, raw)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("%s %s: decode %.300s: %v", method, path, raw, err)
	}
}

func TestImageIdempotencyKeyReplaysRun(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})
	header := http.Header{"Idempotency-Key": {"image-" + t.Name()}}
	request := func() map[string]any {
		return map[string]any{"model": "image-openai", "prompt": "a quiet harbor", "n": 2}
	}

	first := key.startImageRun(request(), header)
	again := key.startImageRun(request(), header)
	if again.RunID != first.RunID {
		t.Errorf("the repeated request started run %s, want the first run %s", again.RunID, first.RunID)
	}
	key.waitRunFor(first.RunID, "succeeded", 30*time.Second)
	var result imagesBody
	key.mustDo("GET", "/v1/runs/"+first.RunID+"/result", nil, 200, &result)

	// A synchronous repeat of the same request gets the finished run's
	// images at once.
	resp := key.request("POST", "/v1/images/generations", request(), header)
	var replayed imagesBody
	err := json.NewDecoder(resp.Body).Decode(&replayed)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || len(replayed.Data) != 2 {
		t.Fatalf("synchronous repeat: status %d, %d images, error %v; want 200 with 2 images", resp.StatusCode, len(replayed.Data), err)
	}
	for i := range replayed.Data {
		if linkPath(t, replayed.Data[i].URL) != linkPath(t, result.Data[i].URL) {
			t.Errorf("replayed image %d links to %s, want the run's %s", i, linkPath(t, replayed.Data[i].URL), linkPath(t, result.Data[i].URL))
		}
	}

	changed := request()
	changed["prompt"] = "a loud harbor"
	status, respHeader, raw := exchange(t, key, "POST", "/v1/images/generations", changed, header)
	checkError(t, status, respHeader, raw, http.StatusConflict, "idempotency_key_reused")

	if runs := s.imageRuns(alice); len(runs) != 1 {
		t.Errorf("%d image runs, want 1 for one Idempotency-Key", len(runs))
	}
	if got := s.mock.Stats().Images; got != 1 {
		t.Errorf("the mock received %d image requests, want 1", got)
	}
}

// linkPath returns the path of a link, which names the object.
func linkPath(t *testing.T, link string) string {
	t.Helper()
	path, _, ok := strings.Cut(link, "?")
	if !ok {
		t.Fatalf("link %q has no query", link)
	}
	return path
}

func TestImageRunHiddenFromOthers(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	bob := s.newUser()
	aliceKey := s.newAPIKey(alice, apikeys.NewKey{})
	aliceOtherKey := s.newAPIKey(alice, apikeys.NewKey{})
	bobKey := s.newAPIKey(bob, apikeys.NewKey{})

	accepted := aliceKey.startImageRun(map[string]any{"model": "image-openai", "prompt": "a private garden"}, nil)
	aliceKey.waitRunFor(accepted.RunID, "succeeded", 30*time.Second)

	// An API key reaches only the runs it created; an access token reaches
	// every run of its user.
	callers := []struct {
		name       string
		as         *client
		wantStatus int
	}{
		{"creating key", aliceKey, 200},
		{"owner's access token", alice, 200},
		{"owner's other key", aliceOtherKey, 404},
		{"other user's key", bobKey, 404},
		{"other user's access token", bob, 404},
	}
	paths := map[string]string{"detail": "/v1/runs/" + accepted.RunID, "result": "/v1/runs/" + accepted.RunID + "/result"}
	for _, caller := range callers {
		for _, name := range []string{"detail", "result"} {
			path := paths[name]
			t.Run(caller.name+" "+name, func(t *testing.T) {
				status, header, raw := exchange(t, caller.as, "GET", path, nil, nil)
				if caller.wantStatus == 200 {
					if status != 200 {
						t.Errorf("status %d, want 200: %.300s", status, raw)
					}
					return
				}
				checkError(t, status, header, raw, caller.wantStatus, "run_not_found")
			})
		}
	}
	t.Run("other user's key events", func(t *testing.T) {
		status, header, raw := exchange(t, bobKey, "GET", "/v1/runs/"+accepted.RunID+"/events", nil, nil)
		checkError(t, status, header, raw, 404, "run_not_found")
	})
	t.Run("other user's key cancel", func(t *testing.T) {
		status, header, raw := exchange(t, bobKey, "POST", "/v1/runs/"+accepted.RunID+"/cancel", nil, nil)
		checkError(t, status, header, raw, 404, "run_not_found")
	})
}

// TestImageClientDisconnectKeepsRun closes a synchronous request while the
// upstream is still working. The workflow must go on, and the images must
// be readable by run ID afterwards.
func TestImageClientDisconnectKeepsRun(t *testing.T) {
	s := newStack(t, stackOptions{mock: mockupstream.Options{TimeToFirstToken: 1500 * time.Millisecond}})
	alice := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		raw, _ := json.Marshal(map[string]any{"model": "image-openai", "prompt": "a patient heron", "n": 2})
		req, err := http.NewRequestWithContext(ctx, "POST", key.baseURL+"/v1/images/generations", strings.NewReader(string(raw)))
		if err != nil {
			done <- err
			return
		}
		req.Header.Set("Authorization", "Bearer "+key.token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			err = errors.New("the request ended with status " + resp.Status + " before the client left")
		}
		done <- err
	}()

	// The client leaves once the upstream has the request.
	waitFor(t, 10*time.Second, "the upstream to receive the image request", func() bool { return s.mock.Stats().Images == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("request error = %v, want context.Canceled", err)
	}

	runs := s.imageRuns(alice)
	if len(runs) != 1 {
		t.Fatalf("%d image runs, want 1", len(runs))
	}
	if models.IsTerminalRunStatus(runs[0].Status) {
		t.Fatalf("run status = %s when the client left, want it still running", runs[0].Status)
	}
	run := key.waitRunFor(runs[0].ID, "succeeded", 30*time.Second)
	if run.Attempt != 1 {
		t.Errorf("attempt = %d, want 1", run.Attempt)
	}
	var result imagesBody
	key.mustDo("GET", "/v1/runs/"+run.RunID+"/result", nil, 200, &result)
	if len(result.Data) != 2 {
		t.Fatalf("result has %d images, want 2", len(result.Data))
	}
	for _, datum := range result.Data {
		s.fetchImageLink(t, datum.URL)
	}
	if got := s.mock.Stats().Images; got != 1 {
		t.Errorf("the mock received %d image requests, want 1", got)
	}
}

// TestImageCancelStopsRun cancels image runs while the upstream works on
// them, on the gateway and in a conversation. The runs must end canceled
// without stored images.
func TestImageCancelStopsRun(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})

	accepted := key.startImageRun(map[string]any{"model": "image-slow", "prompt": "a slow snail"}, nil)
	waitFor(t, 10*time.Second, "the upstream to receive the image request", func() bool { return s.mock.Stats().Images == 1 })
	var canceled runDetail
	key.mustDo("POST", "/v1/runs/"+accepted.RunID+"/cancel", nil, 200, &canceled)
	if canceled.Status != "canceled" || canceled.ErrorCode == nil || *canceled.ErrorCode != "canceled" {
		t.Errorf("run after cancel = %+v, want canceled", canceled)
	}
	var conflict runConflict
	status, _, raw := exchange(t, key, "GET", "/v1/runs/"+accepted.RunID+"/result", nil, nil)
	if err := json.Unmarshal(raw, &conflict); status != http.StatusConflict || err != nil || conflict.Status != "canceled" {
		t.Errorf("result: status %d, body %s; want 409 with status canceled", status, raw)
	}

	convID := alice.conversation("mock-gpt")
	stream := alice.postStreaming("/v1/conversations/"+convID+"/image-generations",
		map[string]any{"prompt": "a slow snail", "model": "image-slow", "streaming": true})
	defer stream.close()
	frames := stream.readUntil(t, "message.delta")
	alice.mustDo("POST", "/v1/runs/"+runIDOf(t, frames[0])+"/cancel", nil, 200, &canceled)
	frames = append(frames, stream.readUntil(t, "done")...)
	events := runEvents(frames)
	if last := events[len(events)-1]; last.Event != "message.failed" {
		t.Fatalf("run events = %v, want message.failed last", eventNames(events))
	}

	history := listImageHistory(t, alice, convID)
	var listed imageGeneration
	if len(history) != 2 || json.Unmarshal(history[1].Content, &listed) != nil {
		t.Fatalf("history = %+v, want the prompt and a canceled generation", history)
	}
	if listed.Status != "failed" || listed.Error == nil || listed.Error.Code != "canceled" || len(listed.Images) != 0 {
		t.Errorf("assistant content = %s, want a failed generation with code canceled", history[1].Content)
	}
	if files := s.storedFiles(t); len(files) != 0 {
		t.Errorf("canceled runs stored %v, want nothing", files)
	}
}

// TestImageSyncWaitLimitReturns202 makes the upstream slower than
// IMAGE_SYNC_WAIT_TIMEOUT. The synchronous request must turn into the 202
// of the background path, and the run must finish on its own.
func TestImageSyncWaitLimitReturns202(t *testing.T) {
	s := newStack(t, stackOptions{
		mock: mockupstream.Options{TimeToFirstToken: 1500 * time.Millisecond},
		env:  map[string]string{"IMAGE_SYNC_WAIT_TIMEOUT": "300ms"},
	})
	alice := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})

	resp := key.request("POST", "/v1/images/generations", map[string]any{"model": "image-openai", "prompt": "a late train"}, nil)
	var accepted imageRunAccepted
	err := json.NewDecoder(resp.Body).Decode(&accepted)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || err != nil || accepted.RunID == "" {
		t.Fatalf("status %d, body %+v, error %v; want 202 with a run id", resp.StatusCode, accepted, err)
	}
	if got, want := resp.Header.Get("Location"), "/v1/runs/"+accepted.RunID; got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}
	if accepted.Status == "succeeded" {
		t.Errorf("202 reports status %s, want the run still active", accepted.Status)
	}

	key.waitRunFor(accepted.RunID, "succeeded", 30*time.Second)
	var result imagesBody
	key.mustDo("GET", "/v1/runs/"+accepted.RunID+"/result", nil, 200, &result)
	if len(result.Data) != 1 {
		t.Fatalf("result has %d images, want 1", len(result.Data))
	}
	s.fetchImageLink(t, result.Data[0].URL)
}
