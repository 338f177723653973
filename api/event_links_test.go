package api

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/aihigress/aihigress/internal/events"
	"github.com/aihigress/aihigress/internal/media"
)

func TestResignEventImages(t *testing.T) {
	signer, err := media.NewSigner("event-links-test-master-key-0123456789", "p", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Images: ImageOptions{PublicBaseURL: "https://api.example.test", Signer: signer}}
	c, _ := gin.CreateTestContext(httptest.NewRecorder())
	c.Request = httptest.NewRequest("GET", "/v1/runs/r1/events", nil)

	completed := `{"type":"run.event","run_id":"r1","seq":5,"event_type":"message.completed","created_at":"2026-12-05T10:00:00Z",` +
		`"payload":{"output_text":"","image_generation":{"type":"image_generation","status":"succeeded","prompt":"a fox","params":{"n":1},` +
		`"images":[{"object_key":"p/images/2026/12/05/a.png","url":"/media/images/p/images/2026/12/05/a.png?expires=1&sig=00","content_type":"image/png","size":7}]}}}`
	tests := []struct {
		name      string
		frame     events.Frame
		wantErr   bool
		wantFresh bool
	}{
		{name: "delta unchanged", frame: events.Frame{ID: 2, Event: "message.delta", Data: []byte(`{"payload":{"delta":"image_generation"}}`)}},
		{name: "chat completion unchanged", frame: events.Frame{ID: 3, Event: "message.completed", Data: []byte(`{"payload":{"output_text":"\"image_generation\""}}`)}},
		{name: "image completion re-signed", frame: events.Frame{ID: 5, Event: "message.completed", Data: []byte(completed)}, wantFresh: true},
		{name: "malformed payload unchanged", frame: events.Frame{ID: 6, Event: "message.completed", Data: []byte(`{"payload":{"image_generation":[1]}}`)}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.resignEventImages(c, tt.frame)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantFresh {
				if string(got.Data) != string(tt.frame.Data) {
					t.Errorf("data = %s, want it unchanged", got.Data)
				}
				return
			}

			var wire events.Wire
			if err := json.Unmarshal(got.Data, &wire); err != nil {
				t.Fatalf("decode re-signed frame: %v", err)
			}
			if wire.Seq != 5 || wire.RunID != "r1" || wire.EventType != "message.completed" {
				t.Errorf("wire = %+v, want the event's run, seq and type kept", wire)
			}
			var payload struct {
				ImageGeneration struct {
					Prompt string `json:"prompt"`
					Images []struct {
						ObjectKey string `json:"object_key"`
						URL       string `json:"url"`
						Size      int64  `json:"size"`
					} `json:"images"`
				} `json:"image_generation"`
			}
			if err := json.Unmarshal(wire.Payload, &payload); err != nil {
				t.Fatal(err)
			}
			images := payload.ImageGeneration.Images
			if payload.ImageGeneration.Prompt != "a fox" || len(images) != 1 || images[0].Size != 7 {
				t.Fatalf("image_generation = %+v, want the prompt and the one image kept", payload.ImageGeneration)
			}
			if !strings.HasPrefix(images[0].URL, "https://api.example.test/media/images/p/images/2026/12/05/a.png?expires=") {
				t.Errorf("url = %q, want a link on the public base URL", images[0].URL)
			}
			if strings.Contains(images[0].URL, "expires=1&") {
				t.Errorf("url = %q, want a new expiry", images[0].URL)
			}
		})
	}
}
