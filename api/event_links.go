package api

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/gin-gonic/gin"

	"github.com/aihigress/aihigress/internal/events"
	"github.com/aihigress/aihigress/models"
)

// resignEventImages returns the frame with fresh signed links in the
// image_generation payload of a message.completed event. The stored event
// keeps the links signed when the run ended, which expire after
// MEDIA_LINK_TTL, so a replay long after the run would otherwise send dead
// links. Other frames are returned unchanged.
func (s *Server) resignEventImages(c *gin.Context, f events.Frame) (events.Frame, error) {
	if f.Event != models.EventMessageCompleted || s.Images.Signer == nil || !bytes.Contains(f.Data, []byte(`"image_generation"`)) {
		return f, nil
	}

	var wire events.Wire
	if err := json.Unmarshal(f.Data, &wire); err != nil {
		return f, fmt.Errorf("decode event %d: %w", f.ID, err)
	}
	var payload map[string]json.RawMessage
	if err := json.Unmarshal(wire.Payload, &payload); err != nil {
		return f, fmt.Errorf("decode payload of event %d: %w", f.ID, err)
	}
	raw, ok := payload["image_generation"]
	if !ok {
		return f, nil
	}
	var content models.ImageGenerationContent
	if err := json.Unmarshal(raw, &content); err != nil {
		return f, fmt.Errorf("decode image_generation of event %d: %w", f.ID, err)
	}

	for i := range content.Images {
		content.Images[i].URL = s.imageLink(c, content.Images[i].ObjectKey)
	}
	var err error
	if payload["image_generation"], err = json.Marshal(content); err != nil {
		return f, fmt.Errorf("encode image_generation of event %d: %w", f.ID, err)
	}
	if wire.Payload, err = json.Marshal(payload); err != nil {
		return f, fmt.Errorf("encode payload of event %d: %w", f.ID, err)
	}
	if f.Data, err = json.Marshal(wire); err != nil {
		return f, fmt.Errorf("encode event %d: %w", f.ID, err)
	}
	return f, nil
}
