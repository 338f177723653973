// Package models holds the GORM models. The schema itself is owned by the
// versioned SQL migrations in the migrations folder; a test checks that both
// dialects provide every column declared here.
package models

import "time"

// Run statuses.
const (
	RunQueued    = "queued"
	RunRunning   = "running"
	RunSucceeded = "succeeded"
	RunFailed    = "failed"
	RunCanceled  = "canceled"
)

// Run kinds.
const (
	RunKindChat  = "chat"
	RunKindImage = "image"
)

// Message roles.
const (
	RoleUser      = "user"
	RoleAssistant = "assistant"
)

// IsTerminalRunStatus reports whether a run in status s can change no more.
func IsTerminalRunStatus(s string) bool {
	return s == RunSucceeded || s == RunFailed || s == RunCanceled
}

// User is an account. PasswordHash is a bcrypt hash.
type User struct {
	ID           string `gorm:"primaryKey"`
	Username     string
	Email        string
	PasswordHash string
	IsSuperuser  bool
	IsActive     bool
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Assistant is a named system prompt with a default logical model.
type Assistant struct {
	ID                  string `gorm:"primaryKey"`
	UserID              string
	Name                string
	SystemPrompt        string
	DefaultLogicalModel string
	ModelPreset         JSON
	CreatedAt           time.Time
	UpdatedAt           time.Time
}

// Conversation is a chat thread with one assistant.
type Conversation struct {
	ID          string `gorm:"primaryKey"`
	UserID      string
	AssistantID string
	Title       string
	Archived    bool
	// NextSeq is the sequence number that the next message will get.
	NextSeq   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Message is one entry of a conversation. Content is a JSON document such as
// {"type":"text","text":"..."}.
type Message struct {
	ID             string `gorm:"primaryKey"`
	ConversationID string
	UserID         string
	Seq            int64
	Role           string
	Content        JSON
	// RunID is the run that produced an assistant message, or the latest run
	// started from a user message.
	RunID     *string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// ChatRun is one execution of ChatRunWorkflow.
type ChatRun struct {
	ID                    string `gorm:"primaryKey"`
	UserID                string
	ConversationID        *string
	UserMessageID         *string
	AssistantMessageID    *string
	Kind                  string
	Status                string
	RequestedLogicalModel string
	SelectedProviderID    string
	SelectedProviderModel string
	ModelPreset           JSON
	WorkflowID            string
	IdempotencyKey        *string
	Attempt               int
	PromptTokens          int
	CompletionTokens      int
	ErrorCode             string
	ErrorMessage          string
	OutputText            string
	OutputPreview         string
	StartedAt             *time.Time
	FinishedAt            *time.Time
	LatencyMS             *int64 `gorm:"column:latency_ms"`
	// APIKeyID is the API key that started a gateway background run.
	APIKeyID *string
	// RequestBody is the OpenAI chat completion request of a gateway
	// background run, which has no conversation to build the prompt from.
	RequestBody JSON
	// FinishReason is the upstream's finish_reason for the successful
	// attempt, such as "stop", "length" or "tool_calls".
	FinishReason string
	// OutputToolCalls is the JSON array of tool calls in the reply, or null.
	OutputToolCalls JSON
	// OutputImages is the JSON array of an image run's stored images, as
	// []StoredImage, or null.
	OutputImages JSON
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// ChatRunEvent is one stored event of a run; (RunID, Seq) is unique.
type ChatRunEvent struct {
	ID        int64 `gorm:"primaryKey;autoIncrement"`
	RunID     string
	Seq       int64
	EventType string
	Payload   JSON
	CreatedAt time.Time
}

// TableName keeps the table name of the original service.
func (ChatRunEvent) TableName() string { return "chat_run_events" }

// All lists every model, for schema checks.
func All() []any {
	return []any{
		&User{}, &Assistant{}, &Conversation{}, &Message{}, &ChatRun{}, &ChatRunEvent{},
		&APIKey{}, &ProviderRow{}, &ProviderKey{}, &LogicalModelRow{}, &LogicalModelCandidate{}, &RequestLog{}, &MediaObject{}, &ProviderMetricsMinute{},
		&RequestLogHourly{}, &ProviderMetricsHourly{}, &RollupProgress{}, &ProviderHealth{},
	}
}
