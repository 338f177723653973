package integration

import (
	"bytes"
	"image/png"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/apikeys"
	"github.com/aihigress/aihigress/internal/mockupstream"
)

func TestImageSyncSmoke(t *testing.T) {
	s := newStack(t, stackOptions{mock: mockupstream.Options{}})
	alice := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})

	for _, model := range []string{"image-openai", "image-gemini"} {
		var out struct {
			Data []struct {
				URL string `json:"url"`
			} `json:"data"`
		}
		key.mustDo("POST", "/v1/images/generations", map[string]any{"model": model, "prompt": "a red fox", "n": 2}, 200, &out)
		if len(out.Data) != 2 {
			t.Fatalf("%s: %d images, want 2", model, len(out.Data))
		}
		resp, err := http.Get(out.Data[0].URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" {
			t.Fatalf("%s: GET %s: %d %s: %.200s", model, out.Data[0].URL, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		if _, err := png.Decode(bytes.NewReader(body)); err != nil {
			t.Fatalf("%s: not a PNG: %v", model, err)
		}
	}

	var accepted struct {
		RunID string `json:"run_id"`
	}
	key.mustDo("POST", "/v1/images/generations", map[string]any{"model": "image-openai", "prompt": "a grey owl", "background": true}, 202, &accepted)
	var run struct {
		Status     string `json:"status"`
		WorkflowID string `json:"workflow_id"`
	}
	waitFor(t, 30*time.Second, "background image run to succeed", func() bool {
		key.mustDo("GET", "/v1/runs/"+accepted.RunID, nil, 200, &run)
		return run.Status == "succeeded"
	})
	if run.WorkflowID != "image-run-"+accepted.RunID {
		t.Errorf("workflow_id = %q, want image-run-%s", run.WorkflowID, accepted.RunID)
	}
	recordHistory(t, s, run.WorkflowID, "image_succeeded")
}
