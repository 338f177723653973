// Package activities holds every side effect of the workflows: database
// reads and writes, upstream HTTP calls and event publishing.
package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/aihigress/aihigress/internal/events"
	"github.com/aihigress/aihigress/internal/metrics"
	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/router"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/models"
	"github.com/aihigress/aihigress/workflows"
)

// ChatLimits bound the prompt that a run sends upstream.
type ChatLimits struct {
	HistoryMaxMessages int
	HistoryMaxChars    int
	DeltaMergeWindow   time.Duration
	HeartbeatInterval  time.Duration
}

// Chat holds the dependencies of the chat run activities.
type Chat struct {
	Store   *store.Store
	Bus     *events.Bus
	Catalog *providers.Catalog
	Router  *router.Router
	Client  *providers.Client
	Limits  ChatLimits
	Logger  *slog.Logger
	// ImageURL signs the image links in the terminal event of an image
	// run; nil leaves them empty, and clients read them from the message.
	ImageURL func(objectKey string) string
	// Metrics receives the upstream calls and finished runs; nil records
	// none.
	Metrics *metrics.Recorder
}

// StartRun marks the run running and resolves its logical model into the
// ordered list of candidates that the workflow will try.
func (a *Chat) StartRun(ctx context.Context, runID string) (workflows.StartRunResult, error) {
	run, err := a.Store.RunByID(ctx, runID)
	if errors.Is(err, store.ErrNotFound) {
		return workflows.StartRunResult{}, temporal.NewNonRetryableApplicationError("run "+runID+" does not exist", workflows.ErrorRunNotFound, nil)
	}
	if err != nil {
		return workflows.StartRunResult{}, err
	}

	capability := capabilityOf(run)
	candidates, err := a.Router.PlanRun(ctx, run.RequestedLogicalModel, capability)
	if err != nil {
		return workflows.StartRunResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("logical model %q cannot serve %s: %v", run.RequestedLogicalModel, capability, err), workflows.ErrorUnknownModel, nil)
	}
	if len(candidates) == 0 {
		return workflows.StartRunResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("logical model %q has no usable candidate", run.RequestedLogicalModel), workflows.ErrorNoCandidate, nil)
	}

	if err := a.Store.MarkRunning(ctx, runID); err != nil {
		return workflows.StartRunResult{}, fmt.Errorf("mark run %s running: %w", runID, err)
	}
	lastSeq, err := a.Store.LastSeq(ctx, runID)
	if err != nil {
		return workflows.StartRunResult{}, err
	}

	result := workflows.StartRunResult{LastSeq: lastSeq}
	for _, c := range candidates {
		result.Candidates = append(result.Candidates, workflows.Candidate{ProviderID: c.ProviderID, Model: c.Model})
	}
	return result, nil
}

// StreamChat makes one upstream attempt: it streams the reply into run
// events, stores the full text on success and returns only a summary.
func (a *Chat) StreamChat(ctx context.Context, in workflows.StreamChatInput) (workflows.StreamChatResult, error) {
	info := activity.GetInfo(ctx)
	logger := a.Logger.With("run_id", in.RunID, "workflow_id", info.WorkflowExecution.ID, "attempt", in.Attempt)

	run, err := a.Store.RunByID(ctx, in.RunID)
	if errors.Is(err, store.ErrNotFound) {
		return workflows.StreamChatResult{}, temporal.NewNonRetryableApplicationError("run "+in.RunID+" does not exist", workflows.ErrorRunNotFound, nil)
	}
	if err != nil {
		return workflows.StreamChatResult{}, err
	}
	logger = logger.With("user_id", run.UserID)

	pick, err := chooseUpstream(ctx, a.Router, run, in)
	if err != nil {
		logger.Warn("no usable upstream for the attempt", "provider", in.Candidate.ProviderID, "model", in.Candidate.Model, "error", err)
		// The run records the attempt anyway, so that its attempt number
		// matches the workflow's.
		if recordErr := a.Store.RecordAttempt(ctx, run.ID, in.Attempt, in.Candidate.ProviderID, in.Candidate.Model); recordErr != nil {
			return workflows.StreamChatResult{}, fmt.Errorf("record attempt: %w", recordErr)
		}
		return workflows.StreamChatResult{}, err
	}
	provider := pick.Provider
	used := workflows.Candidate{ProviderID: pick.Candidate.ProviderID, Model: pick.Candidate.Model}
	if used != in.Candidate {
		logger.Info("switched to another candidate", "planned_provider", in.Candidate.ProviderID, "planned_model", in.Candidate.Model,
			"provider", used.ProviderID, "model", used.Model)
	}
	recordFailover(a.Metrics, run, in.Attempt, used)
	// From here on the attempt runs on the candidate that it actually uses.
	in.Candidate = used
	logger = logger.With("provider", used.ProviderID, "model", used.Model)

	if err := a.Store.RecordAttempt(ctx, run.ID, in.Attempt, provider.ID, in.Candidate.Model); err != nil {
		return workflows.StreamChatResult{}, fmt.Errorf("record attempt: %w", err)
	}

	request, err := a.buildRequest(ctx, run, in.Candidate.Model)
	if err != nil {
		return workflows.StreamChatResult{}, err
	}

	writer, err := a.openWriter(ctx, run.ID, in.Attempt, logger)
	if err != nil {
		return workflows.StreamChatResult{}, err
	}
	defer func() {
		// Deltas that were queued must be stored even when the attempt is
		// canceled, so that the next attempt can detect them and send message.reset.
		closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := writer.Close(closeCtx); err != nil {
			logger.Warn("close event writer failed", "error", err)
		}
	}()

	stopHeartbeat := a.heartbeat(ctx, writer)
	defer stopHeartbeat()

	started := time.Now()
	call := &upstreamCall{run: run, used: used, started: started}
	result, err := a.Client.StreamChat(ctx, provider, request, call.timeFirstToken(writer.Delta))
	a.Router.Report(ctx, pick, err)
	if err == nil && result.Usage != nil {
		call.tokensIn, call.tokensOut = result.Usage.PromptTokens, result.Usage.CompletionTokens
	}
	call.record(ctx, a.Metrics, err)
	if err != nil {
		return workflows.StreamChatResult{}, attemptError(ctx, err, in.Candidate, logger)
	}
	if err := writer.Flush(ctx); err != nil {
		return workflows.StreamChatResult{}, fmt.Errorf("store events: %w", err)
	}

	usage := models.Usage{}
	if result.Usage != nil {
		usage = models.Usage{PromptTokens: result.Usage.PromptTokens, CompletionTokens: result.Usage.CompletionTokens}
	}
	output := store.Output{Text: result.Text, FinishReason: result.FinishReason, Usage: usage}
	if len(result.ToolCalls) > 0 {
		output.ToolCalls = models.MustJSON(result.ToolCalls)
	}
	if err := a.Store.SaveOutput(ctx, run.ID, output); err != nil {
		return workflows.StreamChatResult{}, fmt.Errorf("store output: %w", err)
	}
	logger.Info("upstream attempt succeeded", "chars", len(result.Text), "duration_ms", time.Since(started).Milliseconds())

	return workflows.StreamChatResult{
		TextLength:       len(result.Text),
		PromptTokens:     usage.PromptTokens,
		CompletionTokens: usage.CompletionTokens,
		LastSeq:          writer.LastSeq(),
		Candidate:        in.Candidate,
	}, nil
}

// openWriter starts the run's event writer after the last stored event. When
// an earlier attempt streamed text, it first emits message.reset so that
// clients drop the partial text.
func (a *Chat) openWriter(ctx context.Context, runID string, attempt int, logger *slog.Logger) (*events.Writer, error) {
	lastSeq, err := a.Store.LastSeq(ctx, runID)
	if err != nil {
		return nil, err
	}
	// Attempt 1 is the run's first StreamChat execution, because the
	// workflow gives the activity no retries of its own, so no earlier
	// attempt can have streamed text.
	partial := false
	if attempt > 1 {
		partial, err = a.Store.DeltaSinceReset(ctx, runID)
		if err != nil {
			return nil, err
		}
	}
	writer := events.NewWriter(a.Store, a.Bus, runID, lastSeq, a.Limits.DeltaMergeWindow, logger)
	if partial {
		if err := writer.Emit(models.EventMessageReset, map[string]any{"attempt": attempt, "reason": "retrying after a failed upstream attempt"}); err != nil {
			return nil, err
		}
	}
	return writer, nil
}

// heartbeat records heartbeats with the writer's last event number until
// the returned function is called.
func (a *Chat) heartbeat(ctx context.Context, writer *events.Writer) (stop func()) {
	return startHeartbeat(ctx, a.Limits.HeartbeatInterval, func() any { return writer.LastSeq() })
}

// startHeartbeat records heartbeats with details() every interval (200 ms
// when interval is 0) until the returned function is called. The worker's
// heartbeat throttle decides how often they reach the server, and
// cancellation arrives with the server's reply.
func startHeartbeat(ctx context.Context, interval time.Duration, details func() any) (stop func()) {
	if interval <= 0 {
		interval = 200 * time.Millisecond
	}
	done := make(chan struct{})
	go func() {
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		// The first heartbeat waits one interval: the SDK sends a first
		// heartbeat to the server at once, and short attempts need none.
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
			activity.RecordHeartbeat(ctx, details())
		}
	}()
	return func() { close(done) }
}

// attemptError converts an upstream failure into the error the workflow
// classifies: cancellation stays a context error, and upstream failures
// become application errors typed by their kind, with the candidate used as
// workflows.AttemptFailure details. A rejected credential (401 or 403) has
// been taken out of use by the router, so it becomes the retryable
// upstream_key_rejected, and the next attempt tries another key or
// candidate.
func attemptError(ctx context.Context, err error, used workflows.Candidate, logger *slog.Logger) error {
	if ctx.Err() != nil {
		logger.Info("upstream attempt canceled")
		return ctx.Err()
	}
	details := workflows.AttemptFailure{Candidate: used}
	var upstreamErr *providers.UpstreamError
	if errors.As(err, &upstreamErr) {
		logger.Warn("upstream attempt failed", "error_kind", upstreamErr.Kind, "status", upstreamErr.StatusCode, "error", upstreamErr.Message)
		errorType, nonRetryable := string(upstreamErr.Kind), !upstreamErr.Retryable()
		if upstreamErr.Kind == providers.ErrorAuth {
			errorType, nonRetryable = workflows.ErrorKeyRejected, false
		}
		return temporal.NewApplicationErrorWithOptions(upstreamErr.Error(), errorType, temporal.ApplicationErrorOptions{
			NonRetryable: nonRetryable,
			Details:      []any{details},
		})
	}
	logger.Warn("upstream attempt failed", "error", err)
	return temporal.NewApplicationErrorWithOptions(err.Error(), "internal_error", temporal.ApplicationErrorOptions{Details: []any{details}})
}

// buildRequest builds the upstream request of a run for the candidate's
// upstream model. A gateway run replays the client's request; a
// conversation run sends the conversation with the run's model preset.
func (a *Chat) buildRequest(ctx context.Context, run *models.ChatRun, upstreamModel string) (providers.ChatRequest, error) {
	if len(run.RequestBody) > 0 {
		return gatewayRequest(run, upstreamModel)
	}

	messages, err := a.buildPrompt(ctx, run)
	if err != nil {
		return providers.ChatRequest{}, err
	}
	request := providers.ChatRequest{Model: upstreamModel, Messages: messages}
	if len(run.ModelPreset) > 0 {
		// The API accepts only JSON objects without model, messages or
		// stream as presets, so the preset can be forwarded field by field.
		if err := json.Unmarshal(run.ModelPreset, &request.Extra); err != nil {
			return providers.ChatRequest{}, temporal.NewNonRetryableApplicationError("model_preset is not a JSON object", workflows.ErrorInvalidInput, err)
		}
	}
	return request, nil
}

// gatewayRequest rebuilds the request of a background chat completion from
// the stored client request. The messages go upstream byte for byte, so
// content part arrays, tool calls and names survive. Every other field is
// forwarded as well, except that the client encodes model and stream itself:
// model becomes the upstream model and stream is always true.
func gatewayRequest(run *models.ChatRun, upstreamModel string) (providers.ChatRequest, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(run.RequestBody, &fields); err != nil || fields == nil {
		return providers.ChatRequest{}, temporal.NewNonRetryableApplicationError(
			"run "+run.ID+" has a request_body that is not a JSON object", workflows.ErrorInvalidInput, err)
	}
	messages := fields["messages"]
	if len(messages) == 0 || messages[0] != '[' {
		return providers.ChatRequest{}, temporal.NewNonRetryableApplicationError(
			"run "+run.ID+" has a request_body without a messages array", workflows.ErrorInvalidInput, nil)
	}
	for _, name := range []string{"model", "messages", "stream", "background"} {
		delete(fields, name)
	}
	return providers.ChatRequest{Model: upstreamModel, RawMessages: messages, Extra: fields}, nil
}

// buildPrompt assembles the system prompt and the conversation so far, up to
// and including the run's user message. When the limits cut the history, the
// oldest messages go first; the user message itself always stays.
func (a *Chat) buildPrompt(ctx context.Context, run *models.ChatRun) ([]providers.Message, error) {
	if run.ConversationID == nil || run.UserMessageID == nil {
		return nil, temporal.NewNonRetryableApplicationError("run "+run.ID+" has no conversation", workflows.ErrorInvalidInput, nil)
	}
	userMessage, err := a.Store.Message(ctx, *run.UserMessageID)
	if err != nil {
		return nil, fmt.Errorf("load user message: %w", err)
	}
	conv, err := a.Store.Conversation(ctx, run.UserID, *run.ConversationID)
	if err != nil {
		return nil, fmt.Errorf("load conversation: %w", err)
	}
	assistant, err := a.Store.Assistant(ctx, run.UserID, conv.AssistantID)
	if err != nil {
		return nil, fmt.Errorf("load assistant: %w", err)
	}
	history, err := a.Store.History(ctx, conv.ID, userMessage.Seq, max(a.Limits.HistoryMaxMessages, 1))
	if err != nil {
		return nil, err
	}

	turns := make([]providers.Message, 0, len(history))
	for _, m := range history {
		text := m.Text()
		if text == "" {
			continue // failed or pending assistant replies
		}
		turns = append(turns, providers.Message{Role: m.Role, Content: text})
	}
	turns = trimHistory(turns, a.Limits.HistoryMaxChars)

	messages := make([]providers.Message, 0, len(turns)+1)
	if assistant.SystemPrompt != "" {
		messages = append(messages, providers.Message{Role: "system", Content: assistant.SystemPrompt})
	}
	return append(messages, turns...), nil
}

// trimHistory drops the oldest turns until the total length is within
// maxChars; the last turn is always kept. maxChars <= 0 disables the limit.
func trimHistory(turns []providers.Message, maxChars int) []providers.Message {
	if maxChars <= 0 || len(turns) == 0 {
		return turns
	}
	first := len(turns) - 1
	total := utf8.RuneCountInString(turns[first].Content)
	for first > 0 && total+utf8.RuneCountInString(turns[first-1].Content) <= maxChars {
		first--
		total += utf8.RuneCountInString(turns[first].Content)
	}
	return turns[first:]
}

// FinalizeRun ends the run and publishes its terminal events. The store
// changes a run only while it is not terminal, so a retry changes nothing.
func (a *Chat) FinalizeRun(ctx context.Context, in workflows.FinalizeInput) (workflows.FinalizeResult, error) {
	logger := a.Logger.With("run_id", in.RunID, "workflow_id", activity.GetInfo(ctx).WorkflowExecution.ID)

	outcome := store.Outcome{Status: in.Status, ErrorCode: in.ErrorCode, ErrorMessage: in.ErrorMessage, ImageURL: a.ImageURL}
	run, lastSeq, err := a.finalize(ctx, in.RunID, outcome, logger)
	if errors.Is(err, store.ErrNotFound) {
		// The conversation was deleted while the run was active.
		logger.Info("run deleted before it was finalized")
		return workflows.FinalizeResult{Status: in.Status}, nil
	}
	if err != nil {
		return workflows.FinalizeResult{}, err
	}
	return workflows.FinalizeResult{Status: run.Status, LastSeq: lastSeq}, nil
}

// FinalizeImages ends an image run as succeeded and stores its images in
// the same transaction, and returns the run's last event number. It is a
// plain method, not an activity: the GenerateImages activity calls it once
// the images are stored. A run that has already ended keeps its outcome,
// and its images stay unsaved.
func (a *Chat) FinalizeImages(ctx context.Context, runID string, out store.ImageOutput, logger *slog.Logger) (int64, error) {
	outcome := store.Outcome{Status: models.RunSucceeded, ImageURL: a.ImageURL, Images: &out}
	_, lastSeq, err := a.finalize(ctx, runID, outcome, logger)
	return lastSeq, err
}

// finalize stores the run's outcome and publishes its terminal events when
// the run had not ended yet. It returns the run and its last event number.
func (a *Chat) finalize(ctx context.Context, runID string, outcome store.Outcome, logger *slog.Logger) (models.ChatRun, int64, error) {
	run, terminal, changed, err := a.Store.FinalizeRun(ctx, runID, outcome)
	if err != nil {
		return run, 0, err
	}
	if changed {
		if err := a.Bus.Publish(ctx, terminal); err != nil {
			logger.Warn("publish terminal events failed", "error", err)
		}
		logger.Info("run finalized", "user_id", run.UserID, "status", run.Status, "error_code", run.ErrorCode)
		recordRunFinished(a.Metrics, run)
	}

	if n := len(terminal); n > 0 {
		return run, terminal[n-1].Seq, nil
	}
	lastSeq, err := a.Store.LastSeq(ctx, runID)
	return run, lastSeq, err
}
