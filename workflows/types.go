// Package workflows holds the Temporal workflow definitions and the types
// that cross the workflow/activity boundary. Nothing here does I/O: every
// side effect is an activity in the activities package.
package workflows

import (
	"go.temporal.io/sdk/temporal"
)

// Task queues.
const (
	ChatTaskQueue = "aihigress-chat"
	// ImageTaskQueue is separate from chat, so that slow image generations
	// cannot hold the chat workers' slots.
	ImageTaskQueue = "aihigress-image"
)

// Names registered with the worker. They are part of recorded histories, so
// renaming one breaks replay of runs that are still open.
const (
	ChatRunWorkflowName = "ChatRunWorkflow"
	StartRunActivity    = "StartRun"
	StreamChatActivity  = "StreamChat"
	FinalizeRunActivity = "FinalizeRun"
	RunStateQuery       = "run_state"

	ImageGenerationWorkflowName = "ImageGenerationWorkflow"
	GenerateImagesActivity      = "GenerateImages"
)

// Search attributes, registered on the dev server by `aihigress dev` and on
// production clusters with `temporal operator search-attribute create`.
var (
	AttrUserID         = temporal.NewSearchAttributeKeyKeyword("AihUserId")
	AttrConversationID = temporal.NewSearchAttributeKeyKeyword("AihConversationId")
	AttrLogicalModel   = temporal.NewSearchAttributeKeyKeyword("AihLogicalModel")
	AttrRunKind        = temporal.NewSearchAttributeKeyKeyword("AihRunKind")
	AttrRunStatus      = temporal.NewSearchAttributeKeyKeyword("AihRunStatus")
	AttrProvider       = temporal.NewSearchAttributeKeyKeyword("AihProvider")
)

// SearchAttributeNames lists the keyword search attributes that must exist
// on the cluster, in a stable order.
var SearchAttributeNames = []string{"AihUserId", "AihConversationId", "AihLogicalModel", "AihRunKind", "AihRunStatus", "AihProvider"}

// ChatRunInput starts ChatRunWorkflow. Prompts and outputs never travel in
// workflow inputs or results: the activities read and write them in the
// database by run ID.
type ChatRunInput struct {
	RunID string
	// MaxAttempts caps upstream attempts across all candidates; 0 means
	// DefaultMaxAttempts.
	MaxAttempts int
}

// ImageRunInput starts ImageGenerationWorkflow. The prompt and parameters
// are in the run's stored request, not in the input.
type ImageRunInput struct {
	RunID string
	// MaxAttempts caps upstream attempts across all candidates; 0 means
	// DefaultMaxAttempts.
	MaxAttempts int
	// Candidates is the router's plan that the API made when it created
	// the run. With it, the workflow skips the StartRun local activity, and
	// the first attempt marks the run running. Inputs from APIs before the
	// field existed lack it, and so do runs whose plan came out empty.
	Candidates []Candidate `json:",omitempty"`
	// RunningAtStart reports that the API started the workflow with
	// AihRunStatus "running" and the first candidate's AihProvider, which
	// it does only with a plan in Candidates. The first workflow task then
	// holds one command, the first attempt, with no version marker and no
	// search attribute update before it. The input decides this instead of
	// GetVersion because GetVersion records a marker and upserts a search
	// attribute of its own.
	RunningAtStart bool `json:",omitempty"`
}

// ImageRef is one stored image: its object key in the media storage, its
// size in bytes and its content type.
type ImageRef struct {
	ObjectKey   string
	Size        int64
	ContentType string
}

// GenerateImagesResult is the outcome of a successful GenerateImages
// attempt.
type GenerateImagesResult struct {
	Images    []ImageRef
	Candidate Candidate
	LastSeq   int64
}

// Candidate is one upstream choice: a provider ID and its model name. It
// contains no credentials.
type Candidate struct {
	ProviderID string
	Model      string
}

// StartRunResult is returned by the StartRun activity.
type StartRunResult struct {
	Candidates []Candidate
	LastSeq    int64
}

// AttemptInput is one upstream attempt of a chat or image run. The activity
// may use another candidate than Candidate when that one is cooling down.
type AttemptInput struct {
	RunID     string
	Attempt   int
	Candidate Candidate
	// Tried lists the candidates that earlier attempts of the run used,
	// oldest first, so that the activity prefers others. Inputs recorded
	// before the field existed lack it.
	Tried []Candidate `json:",omitempty"`
}

// StreamChatInput is the input of StreamChat.
type StreamChatInput = AttemptInput

// StreamChatResult is the small summary of a successful attempt; the text
// itself is stored by the activity.
type StreamChatResult struct {
	TextLength       int
	PromptTokens     int
	CompletionTokens int
	LastSeq          int64
	// Candidate is the candidate that served the attempt. It is zero in
	// results recorded before the field existed.
	Candidate Candidate `json:",omitzero"`
}

// AttemptFailure is the detail of the application error of a failed
// StreamChat attempt.
type AttemptFailure struct {
	// Candidate is the candidate that the attempt used.
	Candidate Candidate
}

// FinalizeInput ends a run.
type FinalizeInput struct {
	RunID        string
	Status       string
	ErrorCode    string
	ErrorMessage string
}

// FinalizeResult is returned by the FinalizeRun activity.
type FinalizeResult struct {
	Status  string
	LastSeq int64
}

// RunState is returned by the run_state query. LastSeq is the last event
// number the workflow has seen, which lags behind the database during an
// upstream attempt.
type RunState struct {
	Status   string `json:"status"`
	LastSeq  int64  `json:"last_seq"`
	Attempt  int    `json:"attempt"`
	Provider string `json:"provider"`
	Model    string `json:"model"`
}

// Error types of application errors raised by the activities; the workflow
// copies them into the run's error_code.
const (
	ErrorUnknownModel = "unknown_model"
	ErrorRunNotFound  = "run_not_found"
	ErrorNoCandidate  = "no_candidate"
	ErrorInvalidInput = "invalid_request"
	// ErrorKeyRejected is an upstream 401 or 403. The key has been taken
	// out of use, so the next attempt may succeed with another key or
	// candidate, unlike the non-retryable upstream_auth.
	ErrorKeyRejected = "upstream_key_rejected"
	// ErrorCoolingDown means that no candidate of the run could be used
	// because all are cooling down after failures. The error's
	// NextRetryDelay says when the first comes back.
	ErrorCoolingDown = "upstream_cooling_down"
)
