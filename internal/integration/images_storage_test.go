package integration

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/apikeys"
	"github.com/aihigress/aihigress/internal/fakeoss"
	"github.com/aihigress/aihigress/models"
)

// runObjectKeys returns the object keys of the image runs of owner, sorted.
func (s *stack) runObjectKeys(owner *client) []string {
	s.t.Helper()
	var keys []string
	for _, run := range s.imageRuns(owner) {
		var images []models.StoredImage
		if err := json.Unmarshal(run.OutputImages, &images); err != nil {
			s.t.Fatalf("decode output_images of run %s: %v", run.ID, err)
		}
		for _, image := range images {
			keys = append(keys, image.ObjectKey)
		}
	}
	slices.Sort(keys)
	return keys
}

// TestImageStorageOSS stores images in a fake OSS server through the
// IMAGE_OSS_* settings, with V4 signatures for IMAGE_OSS_REGION. The
// objects must land in the bucket, and links and b64_json responses must
// read them back from it.
func TestImageStorageOSS(t *testing.T) {
	bucket := fakeoss.Start(t, fakeoss.Options{AccessKeyID: "test-id", AccessKeySecret: "test-secret", Bucket: "images", Region: "cn-hangzhou"})
	s := newStack(t, stackOptions{env: map[string]string{
		"IMAGE_OSS_ENDPOINT":          bucket.URL(),
		"IMAGE_OSS_BUCKET":            "images",
		"IMAGE_OSS_ACCESS_KEY_ID":     "test-id",
		"IMAGE_OSS_ACCESS_KEY_SECRET": "test-secret",
		"IMAGE_OSS_REGION":            "cn-hangzhou",
	}})
	if got := s.app.Media.Name(); got != "oss" {
		t.Fatalf("storage = %s, want oss", got)
	}
	alice := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})

	var linked imagesBody
	key.mustDo("POST", "/v1/images/generations", map[string]any{"model": "image-openai", "prompt": "a cloud bucket", "n": 2}, 200, &linked)
	if len(linked.Data) != 2 {
		t.Fatalf("response has %d images, want 2", len(linked.Data))
	}

	keys := s.runObjectKeys(alice)
	if got := bucket.Keys(); !slices.Equal(got, keys) {
		t.Fatalf("bucket contains %v, want the run's keys %v", got, keys)
	}
	if files := s.storedFiles(t); len(files) != 0 {
		t.Errorf("the local directory contains %v, want nothing when OSS is configured", files)
	}
	for _, datum := range linked.Data {
		served := s.fetchImageLink(t, datum.URL)
		objectKey := strings.TrimPrefix(linkPath(t, datum.URL), s.baseURL+"/media/images/")
		stored, ok := bucket.Object(objectKey)
		if !ok {
			t.Fatalf("bucket has no object %s", objectKey)
		}
		if !bytes.Equal(served, stored.Data) || stored.ContentType != "image/png" {
			t.Errorf("link of %s served %d bytes, the bucket contains %d bytes of %s", objectKey, len(served), len(stored.Data), stored.ContentType)
		}

		resp := fetch(t, "GET", datum.URL, http.Header{"Range": {"bytes=8-15"}})
		if resp.status != http.StatusPartialContent || !bytes.Equal(resp.body, stored.Data[8:16]) {
			t.Errorf("range request: status %d, body %x; want 206 with %x", resp.status, resp.body, stored.Data[8:16])
		}
	}

	var inline imagesBody
	key.mustDo("POST", "/v1/images/generations",
		map[string]any{"model": "image-openai", "prompt": "a cloud bucket", "n": 2, "response_format": "b64_json"}, 200, &inline)
	for i, datum := range inline.Data {
		decodeB64PNG(t, "b64_json image "+strconv.Itoa(i), datum.B64JSON)
	}
	if got, want := len(bucket.Keys()), 4; got != want {
		t.Errorf("bucket contains %d objects after two runs of two images, want %d", got, want)
	}
	if counts := bucket.Counts(); counts.AuthFailures != 0 || counts.Put != 4 || counts.SignedV1 != 0 {
		t.Errorf("OSS requests = %+v, want 4 puts, all with V4 signatures", counts)
	}
}

// TestImageStorageDatabase runs without IMAGE_LOCAL_DIR and IMAGE_OSS_*, so
// images are kept in the database. Gateway responses then carry data: URLs,
// and conversation history still gets signed links that the database
// storage serves.
func TestImageStorageDatabase(t *testing.T) {
	s := newStack(t, stackOptions{env: map[string]string{"IMAGE_LOCAL_DIR": ""}})
	if got := s.app.Media.Name(); got != "database" {
		t.Fatalf("storage = %s, want database", got)
	}
	alice := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})

	const dataPrefix = "data:image/png;base64,"
	var linked imagesBody
	key.mustDo("POST", "/v1/images/generations", map[string]any{"model": "image-openai", "prompt": "a database of stars", "n": 2}, 200, &linked)
	if len(linked.Data) != 2 {
		t.Fatalf("response has %d images, want 2", len(linked.Data))
	}
	images := make([][]byte, len(linked.Data))
	for i, datum := range linked.Data {
		encoded, ok := strings.CutPrefix(datum.URL, dataPrefix)
		if !ok {
			t.Fatalf("image %d url = %.80s..., want a %s URL", i, datum.URL, dataPrefix)
		}
		images[i] = decodeB64PNG(t, "data: URL "+strconv.Itoa(i), encoded)
	}

	// The background path's result is built the same way.
	accepted := key.startImageRun(map[string]any{"model": "image-openai", "prompt": "a database of stars", "n": 2}, nil)
	key.waitRunFor(accepted.RunID, "succeeded", 30*time.Second)
	var result imagesBody
	key.mustDo("GET", "/v1/runs/"+accepted.RunID+"/result", nil, 200, &result)
	for i, datum := range result.Data {
		encoded, ok := strings.CutPrefix(datum.URL, dataPrefix)
		if !ok {
			t.Fatalf("result image %d url = %.80s..., want a %s URL", i, datum.URL, dataPrefix)
		}
		if data, _ := base64.StdEncoding.DecodeString(encoded); !bytes.Equal(data, images[i]) {
			t.Errorf("result image %d differs from the synchronous response's image of the same request", i)
		}
	}

	var stored int64
	if err := s.app.Store.DB.Model(&models.MediaObject{}).Count(&stored).Error; err != nil {
		t.Fatal(err)
	}
	if stored != 4 {
		t.Errorf("the database contains %d media objects, want 4", stored)
	}

	convID := alice.conversation("mock-gpt")
	var turn struct {
		AssistantMessage struct {
			Content json.RawMessage `json:"content"`
		} `json:"assistant_message"`
		Run runDetail `json:"run"`
	}
	alice.mustDo("POST", "/v1/conversations/"+convID+"/image-generations",
		map[string]any{"prompt": "a database of stars", "model": "image-openai"}, 200, &turn)
	if turn.Run.Status != "succeeded" {
		t.Fatalf("conversation run status = %s, want succeeded", turn.Run.Status)
	}
	history := listImageHistory(t, alice, convID)
	var listed imageGeneration
	if len(history) != 2 || json.Unmarshal(history[1].Content, &listed) != nil || len(listed.Images) != 1 {
		t.Fatalf("history = %+v, want the prompt and one image", history)
	}
	if _, err := url.ParseRequestURI(listed.Images[0].URL); err != nil || strings.HasPrefix(listed.Images[0].URL, "data:") {
		t.Fatalf("history image url = %.80s, want a signed link", listed.Images[0].URL)
	}
	served := s.fetchImageLink(t, listed.Images[0].URL)
	if !bytes.Equal(served, images[0]) {
		t.Errorf("the link served %d bytes, want the %d bytes of image 0 of the same prompt", len(served), len(images[0]))
	}
	var turnContent imageGeneration
	if err := json.Unmarshal(turn.AssistantMessage.Content, &turnContent); err != nil || len(turnContent.Images) != 1 {
		t.Fatalf("turn assistant content = %s, want one image", turn.AssistantMessage.Content)
	}
	s.fetchImageLink(t, turnContent.Images[0].URL)
}
