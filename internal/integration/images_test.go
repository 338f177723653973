package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"image/png"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"

	"github.com/aihigress/aihigress/internal/apikeys"
	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/models"
)

// imagesBody is OpenAI's images response, as POST /v1/images/generations
// and GET /v1/runs/{id}/result return it.
type imagesBody struct {
	Created int64 `json:"created"`
	Data    []struct {
		URL           string `json:"url"`
		B64JSON       string `json:"b64_json"`
		RevisedPrompt string `json:"revised_prompt"`
	} `json:"data"`
	Usage *struct {
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

// imageGeneration is the image_generation content of an assistant message
// and of the payload of its message.completed event.
type imageGeneration struct {
	Type   string `json:"type"`
	Status string `json:"status"`
	Prompt string `json:"prompt"`
	Images []struct {
		ObjectKey   string `json:"object_key"`
		URL         string `json:"url"`
		ContentType string `json:"content_type"`
		Size        int64  `json:"size"`
	} `json:"images"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// imageRunAccepted is the 202 body of a background image generation.
type imageRunAccepted struct {
	ID     string `json:"id"`
	RunID  string `json:"run_id"`
	Object string `json:"object"`
	Status string `json:"status"`
	Model  string `json:"model"`
}

// startImageRun posts a background image generation and returns the 202
// body. It fails the test on any other status.
func (c *client) startImageRun(body map[string]any, header http.Header) imageRunAccepted {
	c.t.Helper()
	body["background"] = true
	resp := c.request("POST", "/v1/images/generations", body, header)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		c.t.Fatalf("POST /v1/images/generations: status %d, want 202: %s", resp.StatusCode, raw)
	}
	var accepted imageRunAccepted
	if err := json.Unmarshal(raw, &accepted); err != nil {
		c.t.Fatalf("decode %s: %v", raw, err)
	}
	if got, want := resp.Header.Get("Location"), "/v1/runs/"+accepted.RunID; got != want {
		c.t.Errorf("Location = %q, want %q", got, want)
	}
	return accepted
}

// waitRunFor polls the run until it reaches status, for up to timeout.
func (c *client) waitRunFor(runID, status string, timeout time.Duration) runDetail {
	c.t.Helper()
	var run runDetail
	waitFor(c.t, timeout, "run "+runID+" to be "+status, func() bool {
		c.mustDo("GET", "/v1/runs/"+runID, nil, 200, &run)
		return run.Status == status
	})
	return run
}

// decodePNG fails t unless data is a PNG image.
func decodePNG(t *testing.T, what string, data []byte) {
	t.Helper()
	if _, err := png.Decode(bytes.NewReader(data)); err != nil {
		t.Fatalf("%s is not a PNG image (%d bytes): %v", what, len(data), err)
	}
}

// decodeB64PNG decodes a b64_json value and fails t unless it is a PNG.
func decodeB64PNG(t *testing.T, what, encoded string) []byte {
	t.Helper()
	data, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		t.Fatalf("%s is not standard base64: %v", what, err)
	}
	decodePNG(t, what, data)
	return data
}

// mediaResponse is the response to a media link request.
type mediaResponse struct {
	status int
	header http.Header
	body   []byte
}

// fetch sends method to rawURL without credentials, because the signature
// in a media link is its only credential.
func fetch(t *testing.T, method, rawURL string, header http.Header) mediaResponse {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, nil)
	if err != nil {
		t.Fatalf("build request for %s: %v", rawURL, err)
	}
	for name, values := range header {
		req.Header[name] = values
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, rawURL, err)
	}
	return mediaResponse{status: resp.StatusCode, header: resp.Header, body: body}
}

// linkExpiry returns the expires query value of a signed media link.
func linkExpiry(t *testing.T, link string) int64 {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatalf("parse link %q: %v", link, err)
	}
	expires, err := strconv.ParseInt(u.Query().Get("expires"), 10, 64)
	if err != nil {
		t.Fatalf("link %q has no Unix time in expires: %v", link, err)
	}
	return expires
}

// fetchImageLink fetches a signed media link and checks the response of a
// valid link: 200, image/png that decodes, Content-Length, an ETag and
// "Cache-Control: private, max-age=N" with N at most the seconds left until
// the link expires. It returns the image bytes.
func (s *stack) fetchImageLink(t *testing.T, link string) []byte {
	t.Helper()
	if !strings.HasPrefix(link, s.baseURL+"/media/images/"+s.cfg.Images.Prefix+"/images/") {
		t.Fatalf("link %q does not start with %s/media/images/%s/images/", link, s.baseURL, s.cfg.Images.Prefix)
	}
	expires := linkExpiry(t, link)
	before := time.Now().Unix()
	resp := fetch(t, "GET", link, nil)
	if resp.status != http.StatusOK {
		t.Fatalf("GET %s: status %d, want 200: %.300s", link, resp.status, resp.body)
	}
	if got := resp.header.Get("Content-Type"); got != "image/png" {
		t.Errorf("GET %s: Content-Type = %q, want image/png", link, got)
	}
	if got, want := resp.header.Get("Content-Length"), strconv.Itoa(len(resp.body)); got != want {
		t.Errorf("GET %s: Content-Length = %q, want %s", link, got, want)
	}
	if resp.header.Get("ETag") == "" {
		t.Errorf("GET %s: no ETag", link)
	}
	maxAge, ok := strings.CutPrefix(resp.header.Get("Cache-Control"), "private, max-age=")
	seconds, err := strconv.ParseInt(maxAge, 10, 64)
	if !ok || err != nil {
		t.Errorf("GET %s: Cache-Control = %q, want private, max-age=N", link, resp.header.Get("Cache-Control"))
	} else if remaining := expires - before; seconds <= 0 || seconds > remaining {
		t.Errorf("GET %s: max-age=%d, want from 1 to the %d seconds left until the link expires", link, seconds, remaining)
	}
	decodePNG(t, link, resp.body)
	return resp.body
}

// imageRuns returns the image runs of owner's user, oldest first, as the
// database stores them.
func (s *stack) imageRuns(owner *client) []models.ChatRun {
	s.t.Helper()
	var runs []models.ChatRun
	err := s.app.Store.DB.Where("user_id = ? AND kind = ?", owner.userID(), models.RunKindImage).
		Order("created_at").Find(&runs).Error
	if err != nil {
		s.t.Fatal(err)
	}
	return runs
}

// storedFiles returns the paths of the files in the local image storage,
// relative to its directory, with slashes, sorted. These are object keys.
// A directory that does not exist contains no files.
func (s *stack) storedFiles(t *testing.T) []string {
	t.Helper()
	dir := s.cfg.Images.LocalDir
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	var files []string
	err := filepath.WalkDir(dir, func(path string, entry fs.DirEntry, err error) error {
		if err != nil || entry.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		files = append(files, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		t.Fatalf("list %s: %v", dir, err)
	}
	slices.Sort(files)
	return files
}

// imageGenerationOf decodes the image_generation content of the payload of a
// message.completed or message.failed frame.
func imageGenerationOf(t *testing.T, f frame) imageGeneration {
	t.Helper()
	var data struct {
		Payload struct {
			ImageGeneration *imageGeneration `json:"image_generation"`
		} `json:"payload"`
	}
	if err := json.Unmarshal([]byte(f.Data), &data); err != nil {
		t.Fatalf("decode %s frame: %v", f.Event, err)
	}
	if data.Payload.ImageGeneration == nil {
		t.Fatalf("%s frame has no image_generation payload: %s", f.Event, f.Data)
	}
	return *data.Payload.ImageGeneration
}

// deltaTexts returns the delta texts of the message.delta frames.
func deltaTexts(t *testing.T, frames []frame) []string {
	t.Helper()
	var texts []string
	for _, f := range frames {
		if f.Event != "message.delta" {
			continue
		}
		var data struct {
			Payload struct {
				Delta string `json:"delta"`
			} `json:"payload"`
		}
		if err := json.Unmarshal([]byte(f.Data), &data); err != nil {
			t.Fatalf("decode delta %q: %v", f.Data, err)
		}
		texts = append(texts, data.Payload.Delta)
	}
	return texts
}

func TestImageSyncEndToEnd(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})

	// The mock derives each image from the prompt, the index, the size and
	// Gemini's seed, so the url and the b64_json response of one lane carry
	// the same bytes. The Google lane picks a random seed per call unless
	// the client sets one, as it does here.
	lanes := []struct {
		model            string
		extraBody        map[string]any
		wantOutputTokens int
	}{
		{"image-openai", nil, 2 * 1056},
		// Gemini counts 1290 tokens per image plus the words of each
		// candidate's text part.
		{"image-gemini", map[string]any{"google": map[string]any{"generationConfig": map[string]any{"seed": 42}}}, 2 * 1290},
	}
	linkedImages := map[string][][]byte{}
	for _, lane := range lanes {
		t.Run(lane.model, func(t *testing.T) {
			request := map[string]any{"model": lane.model, "prompt": "a red fox in the snow", "n": 2, "size": "1024x1024"}
			if lane.extraBody != nil {
				request["extra_body"] = lane.extraBody
			}

			var linked imagesBody
			bound := *key
			bound.t = t
			bound.mustDo("POST", "/v1/images/generations", request, 200, &linked)
			if len(linked.Data) != 2 {
				t.Fatalf("url response has %d images, want 2", len(linked.Data))
			}
			if linked.Created == 0 {
				t.Error("url response has no created time")
			}
			if linked.Usage == nil || linked.Usage.OutputTokens < lane.wantOutputTokens {
				t.Errorf("usage = %+v, want at least %d output tokens", linked.Usage, lane.wantOutputTokens)
			}
			fetched := make([][]byte, len(linked.Data))
			for i, datum := range linked.Data {
				if datum.B64JSON != "" {
					t.Errorf("url response image %d also has b64_json", i)
				}
				fetched[i] = s.fetchImageLink(t, datum.URL)
			}
			if bytes.Equal(fetched[0], fetched[1]) {
				t.Error("the two images of one request are identical; each index must get its own image")
			}
			linkedImages[lane.model] = fetched

			request["response_format"] = "b64_json"
			resp := bound.request("POST", "/v1/images/generations", request, nil)
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				t.Fatalf("b64_json response: status %d, Content-Type %q: %.300s", resp.StatusCode, resp.Header.Get("Content-Type"), raw)
			}
			var inline imagesBody
			if err := json.Unmarshal(raw, &inline); err != nil {
				t.Fatalf("b64_json response is not valid JSON: %v: %.300s", err, raw)
			}
			if len(inline.Data) != 2 {
				t.Fatalf("b64_json response has %d images, want 2", len(inline.Data))
			}
			if inline.Usage == nil || inline.Usage.OutputTokens != linked.Usage.OutputTokens {
				t.Errorf("b64_json usage = %+v, want the url response's %+v", inline.Usage, linked.Usage)
			}
			for i, datum := range inline.Data {
				if datum.URL != "" {
					t.Errorf("b64_json response image %d also has url %q", i, datum.URL)
				}
				data := decodeB64PNG(t, "b64_json image "+strconv.Itoa(i), datum.B64JSON)
				if !bytes.Equal(data, fetched[i]) {
					t.Errorf("b64_json image %d (%d bytes) differs from the linked image (%d bytes)", i, len(data), len(fetched[i]))
				}
			}
		})
	}

	// The OpenAI lane also takes images that the upstream returns as
	// links: the worker downloads them before it stores them.
	t.Run("upstream url response", func(t *testing.T) {
		downloadsBefore := s.mock.Stats().ImageFiles
		var linked imagesBody
		bound := *key
		bound.t = t
		bound.mustDo("POST", "/v1/images/generations", map[string]any{
			"model": "image-openai", "prompt": "a red fox in the snow", "n": 2, "size": "1024x1024",
			"extra_body": map[string]any{"openai": map[string]any{"response_format": "url"}},
		}, 200, &linked)
		if got := s.mock.Stats().ImageFiles - downloadsBefore; got != 2 {
			t.Errorf("the worker downloaded %d images from the upstream, want 2", got)
		}
		if len(linked.Data) != 2 {
			t.Fatalf("response has %d images, want 2", len(linked.Data))
		}
		for i, datum := range linked.Data {
			if got := s.fetchImageLink(t, datum.URL); i < len(linkedImages["image-openai"]) && !bytes.Equal(got, linkedImages["image-openai"][i]) {
				t.Errorf("image %d differs from the one that the upstream sent inline for the same request", i)
			}
		}
	})

	// Five requests of two images each, and every run's keys are files.
	runs := s.imageRuns(alice)
	if len(runs) != 5 {
		t.Fatalf("%d image runs, want 5", len(runs))
	}
	var keys []string
	for _, run := range runs {
		if run.Status != models.RunSucceeded || run.Attempt != 1 || run.WorkflowID != "image-run-"+run.ID {
			t.Errorf("run %s: status %s, attempt %d, workflow %s; want succeeded, 1, image-run-<id>", run.ID, run.Status, run.Attempt, run.WorkflowID)
		}
		var images []models.StoredImage
		if err := json.Unmarshal(run.OutputImages, &images); err != nil {
			t.Fatalf("decode output_images of %s: %v", run.ID, err)
		}
		for _, image := range images {
			keys = append(keys, image.ObjectKey)
		}
	}
	slices.Sort(keys)
	if files := s.storedFiles(t); !slices.Equal(files, keys) {
		t.Errorf("storage contains %v, want exactly the runs' object keys %v", files, keys)
	}
}

func TestImageBackgroundEndToEnd(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})

	// The workflow's summary shows the first 80 characters of the prompt,
	// and nothing else of the request may reach Temporal.
	marker := "marker" + testenv.Suffix()
	prompt := "a lighthouse at dusk, " + strings.Repeat("calm sea, ", 10) + marker
	accepted := key.startImageRun(map[string]any{"model": "image-openai", "prompt": prompt, "n": 2}, nil)
	if accepted.ID == "" || accepted.ID != accepted.RunID || accepted.Object != "image.generation.run" || accepted.Model != "image-openai" {
		t.Errorf("202 body = %+v, want id = run_id, object image.generation.run, model image-openai", accepted)
	}

	run := key.waitRunFor(accepted.RunID, "succeeded", 30*time.Second)
	if run.Kind != "image" || run.WorkflowID != "image-run-"+run.RunID || run.Attempt != 1 {
		t.Errorf("run = %+v, want kind image, workflow image-run-<id>, attempt 1", run)
	}
	if run.SelectedProviderID != "mock-images" || run.SelectedProviderModel != "gpt-image-mock" {
		t.Errorf("selected %s/%s, want mock-images/gpt-image-mock", run.SelectedProviderID, run.SelectedProviderModel)
	}
	if run.OutputPreview != "2 image(s)" {
		t.Errorf("output_preview = %q, want %q", run.OutputPreview, "2 image(s)")
	}

	var result imagesBody
	key.mustDo("GET", "/v1/runs/"+run.RunID+"/result", nil, 200, &result)
	if len(result.Data) != 2 {
		t.Fatalf("result has %d images, want 2", len(result.Data))
	}
	var imageBytes int
	for _, datum := range result.Data {
		imageBytes += len(s.fetchImageLink(t, datum.URL))
	}
	checkHistoryHasNoImage(t, s, run.WorkflowID, marker, imageBytes)
	checkRunningAtStart(t, s, run.WorkflowID, "mock-images")

	stream := key.openEvents("/v1/runs/"+run.RunID+"/events", nil)
	deadline := time.AfterFunc(30*time.Second, stream.close)
	frames := stream.readUntil(t, "done")
	deadline.Stop()
	stream.close()

	checkSequence(t, frames, 0)
	events := runEvents(frames)
	if len(events) == 0 || events[len(events)-1].Event != "message.completed" {
		t.Fatalf("run events = %v, want message.completed last", eventNames(frames))
	}
	deltas := deltaTexts(t, frames)
	if len(deltas) == 0 || !strings.Contains(strings.Join(deltas, ""), "Generating 2 image(s)") || !strings.Contains(strings.Join(deltas, ""), "Stored 2 image(s)") {
		t.Errorf("progress deltas = %q, want the generating and stored lines", deltas)
	}
	completed := imageGenerationOf(t, events[len(events)-1])
	if completed.Type != "image_generation" || completed.Status != "succeeded" || len(completed.Images) != 2 {
		t.Fatalf("message.completed image_generation = %+v, want 2 succeeded images", completed)
	}
	for i, image := range completed.Images {
		if image.ObjectKey == "" || !strings.Contains(image.URL, "/media/images/"+image.ObjectKey+"?") {
			t.Errorf("completed image %d = %+v, want an object key and its signed link", i, image)
		}
	}
	if last := frames[len(frames)-1]; last.Event != "done" || last.Data != "[DONE]" {
		t.Errorf("last frame = %s %q, want done [DONE]", last.Event, last.Data)
	}
	recordHistory(t, s, run.WorkflowID, "image_succeeded")
}

// TestImageEventReplaySignsFreshLinks checks that a replay of a run's
// events long after the run carries working links, although the stored
// message.completed event holds links that have expired.
func TestImageEventReplaySignsFreshLinks(t *testing.T) {
	s := newStack(t, stackOptions{env: map[string]string{"MEDIA_LINK_TTL": "5s"}})
	alice := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})
	accepted := key.startImageRun(map[string]any{"model": "image-openai", "prompt": "an old map", "n": 1}, nil)
	key.waitRunFor(accepted.RunID, "succeeded", 30*time.Second)

	stored, err := s.app.Store.EventsAfter(context.Background(), accepted.RunID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var storedLink string
	for _, event := range stored {
		if event.EventType == "message.completed" {
			storedLink = imageGenerationOf(t, frame{Event: event.EventType, Data: `{"payload":` + string(event.Payload) + `}`}).Images[0].URL
		}
	}
	if storedLink == "" {
		t.Fatal("the run has no stored message.completed event with an image link")
	}
	time.Sleep(time.Until(time.Unix(linkExpiry(t, storedLink)+1, 0)))
	// Without a public base URL the worker signs links relative to the
	// API's origin.
	if resp := fetch(t, "GET", s.baseURL+storedLink, nil); resp.status != http.StatusForbidden {
		t.Fatalf("GET of the stored link after its expiry: status %d, want 403", resp.status)
	}

	stream := key.openEvents("/v1/runs/"+accepted.RunID+"/events", nil)
	deadline := time.AfterFunc(30*time.Second, stream.close)
	frames := stream.readUntil(t, "done")
	deadline.Stop()
	stream.close()

	events := runEvents(frames)
	if len(events) == 0 || events[len(events)-1].Event != "message.completed" {
		t.Fatalf("run events = %v, want message.completed last", eventNames(frames))
	}
	replayed := imageGenerationOf(t, events[len(events)-1])
	if len(replayed.Images) != 1 || replayed.Images[0].URL == storedLink {
		t.Fatalf("replayed images = %+v, want one with a newly signed link", replayed.Images)
	}
	s.fetchImageLink(t, replayed.Images[0].URL)
}

// checkHistoryHasNoImage fails t when the workflow's history contains
// marker, a PNG or its base64 form, or as many bytes as the run's images.
func checkHistoryHasNoImage(t *testing.T, s *stack, workflowID, marker string, imageBytes int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iter := s.app.Temporal.GetWorkflowHistory(ctx, workflowID, "", false, 0)
	total := 0
	for iter.HasNext() {
		event, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		encoded, err := proto.Marshal(event)
		if err != nil {
			t.Fatal(err)
		}
		total += len(encoded)
		for _, forbidden := range []string{marker, "\x89PNG", "iVBORw0KGgo"} {
			if bytes.Contains(encoded, []byte(forbidden)) {
				t.Errorf("history event %d (%s) contains %q", event.GetEventId(), event.GetEventType(), forbidden)
			}
		}
	}
	if total >= imageBytes {
		t.Errorf("the history has %d bytes, want less than the %d bytes of the images", total, imageBytes)
	}
}

// checkRunningAtStart fails t unless the workflow started with
// AihRunStatus "running" and AihProvider provider, and its first workflow
// task scheduled the first attempt and nothing before it.
func checkRunningAtStart(t *testing.T, s *stack, workflowID, provider string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iter := s.app.Temporal.GetWorkflowHistory(ctx, workflowID, "", false, 0)
	var events []*historypb.HistoryEvent
	for iter.HasNext() {
		event, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, event)
	}
	if len(events) == 0 {
		t.Fatal("the workflow has no history")
	}

	fields := events[0].GetWorkflowExecutionStartedEventAttributes().GetSearchAttributes().GetIndexedFields()
	for name, want := range map[string]string{"AihRunStatus": "running", "AihProvider": provider} {
		var got string
		if payload, ok := fields[name]; !ok {
			t.Errorf("start search attribute %s is missing", name)
		} else if err := converter.GetDefaultDataConverter().FromPayload(payload, &got); err != nil || got != want {
			t.Errorf("start search attribute %s = %q (%v), want %q", name, got, err, want)
		}
	}

	var afterFirstTask []enumspb.EventType
	for i, event := range events {
		if event.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED && i+1 < len(events) {
			afterFirstTask = []enumspb.EventType{events[i+1].GetEventType()}
			break
		}
	}
	if !slices.Equal(afterFirstTask, []enumspb.EventType{enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED}) {
		t.Errorf("event after the first workflow task = %v, want the attempt's ActivityTaskScheduled", afterFirstTask)
	}
}

func TestImageConversationEndToEnd(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	convID := alice.conversation("mock-gpt")

	prompt := "a paper boat on a pond"
	stream := alice.postStreaming("/v1/conversations/"+convID+"/image-generations",
		map[string]any{"prompt": prompt, "model": "image-gemini", "n": 2, "streaming": true})
	deadline := time.AfterFunc(30*time.Second, stream.close)
	frames := stream.readUntil(t, "done")
	deadline.Stop()
	stream.close()

	checkSequence(t, frames, 0)
	events := runEvents(frames)
	names := eventNames(events)
	if len(events) < 3 || events[0].Event != "message.created" || events[len(events)-1].Event != "message.completed" {
		t.Fatalf("run events = %v, want message.created first and message.completed last", names)
	}
	if !slices.Contains(names, "message.delta") {
		t.Errorf("run events = %v, want message.delta progress", names)
	}
	completed := imageGenerationOf(t, events[len(events)-1])
	if completed.Type != "image_generation" || completed.Status != "succeeded" || completed.Prompt != prompt || len(completed.Images) != 2 {
		t.Fatalf("message.completed image_generation = %+v, want 2 succeeded images for %q", completed, prompt)
	}
	for i, image := range completed.Images {
		link, err := url.Parse(image.URL)
		if image.ObjectKey == "" || err != nil {
			t.Fatalf("completed image %d = %+v, want an object key and a link", i, image)
		}
		// Without PUBLIC_BASE_URL the worker cannot know the API's host, so
		// the event's link is relative to it.
		base, _ := url.Parse(s.baseURL)
		s.fetchImageLink(t, base.ResolveReference(link).String())
	}

	history := listImageHistory(t, alice, convID)
	if len(history) != 2 || history[0].Role != "user" || history[1].Role != "assistant" {
		t.Fatalf("history = %+v, want the user prompt and the assistant's images", history)
	}
	var userContent struct {
		Text string `json:"text"`
	}
	if err := json.Unmarshal(history[0].Content, &userContent); err != nil || userContent.Text != prompt {
		t.Errorf("user message content = %s, want the text %q", history[0].Content, prompt)
	}
	var listed imageGeneration
	if err := json.Unmarshal(history[1].Content, &listed); err != nil {
		t.Fatal(err)
	}
	if listed.Type != "image_generation" || listed.Status != "succeeded" || len(listed.Images) != 2 {
		t.Fatalf("assistant content = %s, want 2 succeeded images", history[1].Content)
	}
	if history[1].Run == nil || history[1].Run.Status != "succeeded" || history[1].Run.Kind != "image" {
		t.Errorf("assistant run = %+v, want a succeeded image run", history[1].Run)
	}
	for i, image := range listed.Images {
		if image.ObjectKey != completed.Images[i].ObjectKey {
			t.Errorf("listed image %d has key %s, the event had %s", i, image.ObjectKey, completed.Images[i].ObjectKey)
		}
		// A fresh link expires one TTL after the read.
		if expires := linkExpiry(t, image.URL); expires < time.Now().Add(s.cfg.Images.LinkTTL-time.Minute).Unix() {
			t.Errorf("listed image %d link expires at %d, want about one TTL (%s) from now", i, expires, s.cfg.Images.LinkTTL)
		}
		s.fetchImageLink(t, image.URL)
	}

	// The stored message keeps object keys only: links are signed on each
	// read, and the bytes are in the media storage.
	stored, err := s.app.Store.Message(context.Background(), history[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, forbidden := range []string{"sig=", "expires=", "base64", "data:image", "iVBORw0KGgo"} {
		if strings.Contains(string(stored.Content), forbidden) {
			t.Errorf("stored assistant content contains %q: %s", forbidden, stored.Content)
		}
	}
	var storedContent imageGeneration
	if err := json.Unmarshal(stored.Content, &storedContent); err != nil || len(storedContent.Images) != 2 {
		t.Fatalf("stored assistant content = %s, want 2 images", stored.Content)
	}
	for i, image := range storedContent.Images {
		if image.ObjectKey != listed.Images[i].ObjectKey || image.URL != "" {
			t.Errorf("stored image %d = %+v, want key %s and no url", i, image, listed.Images[i].ObjectKey)
		}
	}
}

// imageHistoryMessage is a listed message with its raw content.
type imageHistoryMessage struct {
	ID      string          `json:"id"`
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
	Run     *runDetail      `json:"run"`
}

func listImageHistory(t *testing.T, c *client, conversationID string) []imageHistoryMessage {
	t.Helper()
	var page struct {
		Items []imageHistoryMessage `json:"items"`
	}
	bound := *c
	bound.t = t
	bound.mustDo("GET", "/v1/conversations/"+conversationID+"/messages?limit=100", nil, 200, &page)
	return page.Items
}

// TestImageRegenerateMakesNewImages regenerates an image message. The new
// run is an image run with the same parameters, and the message gets new
// images under the new run's keys.
func TestImageRegenerateMakesNewImages(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	convID := alice.conversation("mock-gpt")

	var first turnResponse
	alice.mustDo("POST", "/v1/conversations/"+convID+"/image-generations",
		map[string]any{"prompt": "a kite", "model": "image-openai", "n": 2}, 200, &first)
	before := listImageHistory(t, alice, convID)
	var old imageGeneration
	if err := json.Unmarshal(before[1].Content, &old); err != nil || len(old.Images) != 2 {
		t.Fatalf("first generation content = %s, want 2 images", before[1].Content)
	}

	var again turnResponse
	alice.mustDo("POST", "/v1/messages/"+first.AssistantMessageID+"/regenerate", map[string]any{}, 200, &again)
	if again.Run.Kind != "image" || again.Run.Status != "succeeded" || again.Run.RunID == first.Run.RunID {
		t.Fatalf("regenerated run = %+v, want a new succeeded image run", again.Run)
	}

	after := listImageHistory(t, alice, convID)
	if len(after) != 2 {
		t.Fatalf("history has %d messages after regenerate, want the same 2", len(after))
	}
	var fresh imageGeneration
	if err := json.Unmarshal(after[1].Content, &fresh); err != nil {
		t.Fatal(err)
	}
	if fresh.Status != "succeeded" || fresh.Prompt != "a kite" || len(fresh.Images) != 2 {
		t.Fatalf("regenerated content = %s, want 2 succeeded images for the same prompt", after[1].Content)
	}
	for i := range fresh.Images {
		if fresh.Images[i].ObjectKey == old.Images[i].ObjectKey {
			t.Errorf("image %d kept the old key %s", i, old.Images[i].ObjectKey)
		}
		s.fetchImageLink(t, fresh.Images[i].URL)
	}
	if after[1].Run == nil || after[1].Run.RunID != again.Run.RunID {
		t.Errorf("assistant message run = %+v, want the regenerated run %s", after[1].Run, again.Run.RunID)
	}
}
