// Package events carries run events from the worker to SSE clients. Events
// are written to the database first and published on Redis second, so a
// client can never see an event that a later reconnect would not replay.
package events

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/aihigress/aihigress/models"
)

// Wire is the data of one SSE frame, in the original AI Higress format.
type Wire struct {
	Type      string          `json:"type"`
	RunID     string          `json:"run_id"`
	Seq       int64           `json:"seq"`
	EventType string          `json:"event_type"`
	CreatedAt time.Time       `json:"created_at"`
	Payload   json.RawMessage `json:"payload"`
}

// ToWire converts a stored event.
func ToWire(e models.ChatRunEvent) Wire {
	payload := json.RawMessage(e.Payload)
	if len(payload) == 0 {
		payload = json.RawMessage("{}")
	}
	return Wire{
		Type:      "run.event",
		RunID:     e.RunID,
		Seq:       e.Seq,
		EventType: e.EventType,
		CreatedAt: e.CreatedAt,
		Payload:   payload,
	}
}

func marshalWire(w Wire) ([]byte, error) {
	data, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("encode event %d of run %s: %w", w.Seq, w.RunID, err)
	}
	return data, nil
}
