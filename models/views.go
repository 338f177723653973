package models

import (
	"encoding/json"
	"time"
)

// Event types of a run, as clients see them.
const (
	EventMessageCreated   = "message.created"
	EventMessageDelta     = "message.delta"
	EventMessageReset     = "message.reset"
	EventMessageCompleted = "message.completed"
	EventMessageFailed    = "message.failed"
	EventRunCanceled      = "run.canceled"
)

// IsTerminalEvent reports whether no event follows one of type t.
func IsTerminalEvent(t string) bool {
	return t == EventMessageCompleted || t == EventMessageFailed
}

// TextContent is the content document of a plain text message.
type TextContent struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// NewTextContent encodes text as a message content document.
func NewTextContent(text string) JSON {
	return MustJSON(TextContent{Type: "text", Text: text})
}

// Text returns the text of a text message, or "" for other content types.
func (m Message) Text() string {
	var c TextContent
	if err := json.Unmarshal(m.Content, &c); err != nil || c.Type != "text" {
		return ""
	}
	return c.Text
}

// Usage is a run's token accounting.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

// RunDetail is the public representation of a run.
type RunDetail struct {
	RunID                 string     `json:"run_id"`
	Kind                  string     `json:"kind"`
	Status                string     `json:"status"`
	ConversationID        *string    `json:"conversation_id,omitempty"`
	UserMessageID         *string    `json:"user_message_id,omitempty"`
	AssistantMessageID    *string    `json:"assistant_message_id,omitempty"`
	RequestedLogicalModel string     `json:"requested_logical_model"`
	SelectedProviderID    string     `json:"selected_provider_id"`
	SelectedProviderModel string     `json:"selected_provider_model"`
	CreatedAt             time.Time  `json:"created_at"`
	StartedAt             *time.Time `json:"started_at"`
	FinishedAt            *time.Time `json:"finished_at"`
	LatencyMS             *int64     `json:"latency_ms"`
	Usage                 Usage      `json:"usage"`
	ErrorCode             *string    `json:"error_code"`
	ErrorMessage          *string    `json:"error_message"`
	OutputPreview         string     `json:"output_preview"`
	OutputText            *string    `json:"output_text,omitempty"`
	WorkflowID            string     `json:"workflow_id"`
	Attempt               int        `json:"attempt"`
	LastSeq               int64      `json:"last_seq"`
}

// Detail builds the public representation. The output text is included only
// when withText is set, because message listings carry just the preview.
func (r ChatRun) Detail(lastSeq int64, withText bool) RunDetail {
	d := RunDetail{
		RunID:                 r.ID,
		Kind:                  r.Kind,
		Status:                r.Status,
		ConversationID:        r.ConversationID,
		UserMessageID:         r.UserMessageID,
		AssistantMessageID:    r.AssistantMessageID,
		RequestedLogicalModel: r.RequestedLogicalModel,
		SelectedProviderID:    r.SelectedProviderID,
		SelectedProviderModel: r.SelectedProviderModel,
		CreatedAt:             r.CreatedAt,
		StartedAt:             r.StartedAt,
		FinishedAt:            r.FinishedAt,
		LatencyMS:             r.LatencyMS,
		Usage:                 Usage{PromptTokens: r.PromptTokens, CompletionTokens: r.CompletionTokens},
		OutputPreview:         r.OutputPreview,
		WorkflowID:            r.WorkflowID,
		Attempt:               r.Attempt,
		LastSeq:               lastSeq,
	}
	if r.ErrorCode != "" {
		d.ErrorCode = &r.ErrorCode
		d.ErrorMessage = &r.ErrorMessage
	}
	if withText {
		text := r.OutputText
		d.OutputText = &text
	}
	return d
}

// PreviewLength is the maximum length, in characters, of OutputPreview.
const PreviewLength = 400

// Preview cuts text to PreviewLength characters.
func Preview(text string) string {
	n := 0
	for i := range text {
		if n == PreviewLength {
			return text[:i]
		}
		n++
	}
	return text
}
