// Package providers holds the upstream catalog (providers, logical models and
// their candidates) and the HTTP client for OpenAI-compatible chat upstreams.
package providers

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Capability names what a logical model may be used for.
type Capability string

const (
	CapabilityChat            Capability = "chat"
	CapabilityImageGeneration Capability = "image_generation"
)

// Provider is one upstream account: a base URL, a key and extra headers.
type Provider struct {
	ID             string            `json:"id" yaml:"id"`
	Name           string            `json:"name" yaml:"name"`
	Kind           string            `json:"kind" yaml:"kind"` // "openai" or "gemini"
	BaseURL        string            `json:"base_url" yaml:"base_url"`
	APIKey         string            `json:"api_key" yaml:"api_key"`
	Headers        map[string]string `json:"headers,omitempty" yaml:"headers,omitempty"`
	TimeoutSeconds int               `json:"timeout_seconds,omitempty" yaml:"timeout_seconds,omitempty"`

	// Disabled providers stay in the catalog, but Candidates leaves out
	// their candidates.
	Disabled bool `json:"-" yaml:"-"`
	// Keys are the enabled upstream credentials, loaded from the database.
	// A provider without keys is called with APIKey, which may be empty for
	// upstreams that need no credential.
	Keys []ProviderKey `json:"-" yaml:"-"`
}

// ProviderKey is one decrypted upstream credential of a provider.
type ProviderKey struct {
	ID     string
	Label  string
	Secret string
	Weight int
	// MaxQPS caps requests per second through this key; 0 means no cap.
	MaxQPS int
}

// Candidate is one upstream model that can serve a logical model.
type Candidate struct {
	ProviderID string `json:"provider_id" yaml:"provider_id"`
	Model      string `json:"model" yaml:"model"`
	Priority   int    `json:"priority,omitempty" yaml:"priority,omitempty"`
	Weight     int    `json:"weight,omitempty" yaml:"weight,omitempty"`
}

// LogicalModel is the model name that clients send; it maps to candidates.
type LogicalModel struct {
	Name         string       `json:"name" yaml:"name"`
	Capabilities []Capability `json:"capabilities" yaml:"capabilities"`
	Candidates   []Candidate  `json:"candidates" yaml:"candidates"`
}

// Message is one chat message in OpenAI's wire format.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// ChatRequest is the body sent upstream. Model is the upstream model name.
// Extra holds fields that are forwarded unchanged.
type ChatRequest struct {
	Model    string
	Messages []Message
	// RawMessages, when not empty, is a JSON array of messages that is sent
	// as it is in place of Messages. Gateway clients use it for content part
	// arrays, tool calls and other message fields that Message lacks.
	RawMessages json.RawMessage
	Extra       map[string]json.RawMessage
}

// Usage is the token accounting that an upstream reports.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// ChatResult is the outcome of a finished upstream call.
type ChatResult struct {
	Text         string
	FinishReason string
	// ToolCalls are the tool calls of the first choice, in index order.
	ToolCalls []ToolCall
	Usage     *Usage // nil when the upstream sent none
}

// ToolCall is one tool call of an assistant message in OpenAI's wire format.
type ToolCall struct {
	ID       string           `json:"id"`
	Type     string           `json:"type"`
	Function ToolCallFunction `json:"function"`
}

// ToolCallFunction is the function that a ToolCall invokes. Arguments is a
// JSON document encoded as a string, as the model wrote it.
type ToolCallFunction struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// ErrorKind classifies an upstream failure for retry and failover decisions.
type ErrorKind string

const (
	ErrorRateLimited ErrorKind = "rate_limited"     // HTTP 429
	ErrorServer      ErrorKind = "upstream_error"   // HTTP 5xx
	ErrorTimeout     ErrorKind = "upstream_timeout" // connect, first-byte or idle timeout
	ErrorStreamCut   ErrorKind = "stream_cut"       // the body ended before [DONE] or a finish_reason
	ErrorMalformed   ErrorKind = "malformed_response"
	ErrorBadRequest  ErrorKind = "upstream_bad_request" // HTTP 400, 404, 413, 422
	ErrorAuth        ErrorKind = "upstream_auth"        // HTTP 401, 403
	ErrorConnect     ErrorKind = "upstream_unreachable"
)

// UpstreamError describes a failed upstream call.
type UpstreamError struct {
	Kind       ErrorKind
	StatusCode int    // 0 when no HTTP response arrived
	Message    string // the upstream's error message, or a description of the failure
	Body       []byte // the upstream's error body, capped in size
	// Streamed reports whether any delta had been delivered before the failure.
	Streamed bool
	// RetryAfter is the wait that the upstream asked for in a Retry-After
	// header, or 0 when the response had none.
	RetryAfter time.Duration
}

func (e *UpstreamError) Error() string {
	// Most kinds already start with "upstream_", and the others do not
	// name the upstream.
	kind := string(e.Kind)
	if !strings.HasPrefix(kind, "upstream_") {
		kind = "upstream " + kind
	}
	if e.StatusCode != 0 {
		return fmt.Sprintf("%s (HTTP %d): %s", kind, e.StatusCode, e.Message)
	}
	return fmt.Sprintf("%s: %s", kind, e.Message)
}

// Retryable reports whether another attempt, possibly on another candidate,
// may succeed.
func (e *UpstreamError) Retryable() bool {
	switch e.Kind {
	case ErrorRateLimited, ErrorServer, ErrorTimeout, ErrorStreamCut, ErrorMalformed, ErrorConnect:
		return true
	}
	return false
}
