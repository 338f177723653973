package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/models"
	"github.com/aihigress/aihigress/workflows"
)

const maxIdempotencyKey = 255

type messageView struct {
	ID             string            `json:"id"`
	ConversationID string            `json:"conversation_id"`
	Seq            int64             `json:"seq"`
	Role           string            `json:"role"`
	Content        json.RawMessage   `json:"content"`
	RunID          *string           `json:"run_id"`
	Run            *models.RunDetail `json:"run"`
	CreatedAt      time.Time         `json:"created_at"`
	UpdatedAt      time.Time         `json:"updated_at"`
}

func viewMessage(m *models.Message) messageView {
	return messageView{
		ID: m.ID, ConversationID: m.ConversationID, Seq: m.Seq, Role: m.Role, Content: json.RawMessage(m.Content),
		RunID: m.RunID, CreatedAt: m.CreatedAt, UpdatedAt: m.UpdatedAt,
	}
}

type postMessageRequest struct {
	Content              *string         `json:"content"`
	OverrideLogicalModel string          `json:"override_logical_model"`
	ModelPreset          json.RawMessage `json:"model_preset"`
	Streaming            bool            `json:"streaming"`
	Background           bool            `json:"background"`
}

func (s *Server) postMessage(c *gin.Context) {
	user := currentUser(c)
	conv, err := s.Store.Conversation(c, user.ID, c.Param("id"))
	if s.lookupError(c, "conversation", err) {
		return
	}

	var req postMessageRequest
	if !decodeJSON(c, &req) {
		return
	}
	if req.Content == nil || strings.TrimSpace(*req.Content) == "" {
		abortParamError(c, http.StatusBadRequest, "empty_content", "content", "content must be a non-empty string")
		return
	}
	if n := utf8.RuneCountInString(*req.Content); n > s.Limits.MaxContentChars {
		abortParamError(c, http.StatusBadRequest, "content_too_long", "content", fmt.Sprintf("content has %d characters; the limit is %d", n, s.Limits.MaxContentChars))
		return
	}
	idempotencyKey := c.GetHeader("Idempotency-Key")
	if len(idempotencyKey) > maxIdempotencyKey || !utf8.ValidString(idempotencyKey) {
		abortError(c, http.StatusBadRequest, "invalid_idempotency_key", fmt.Sprintf("Idempotency-Key must be valid UTF-8 of at most %d bytes", maxIdempotencyKey))
		return
	}

	assistant, err := s.Store.Assistant(c, user.ID, conv.AssistantID)
	if s.lookupError(c, "assistant", err) {
		return
	}
	logicalModel := assistant.DefaultLogicalModel
	field := "the assistant's default_logical_model"
	if req.OverrideLogicalModel != "" {
		logicalModel, field = req.OverrideLogicalModel, "override_logical_model"
	}
	if !s.checkChatModel(c, field, logicalModel) {
		return
	}
	preset, ok := validPreset(c, req.ModelPreset)
	if !ok {
		return
	}
	if preset == nil {
		preset = assistant.ModelPreset
	}

	turn, err := s.Store.CreateTurn(c, store.NewTurn{
		UserID: user.ID, ConversationID: conv.ID, Content: *req.Content, LogicalModel: logicalModel,
		ModelPreset: preset, IdempotencyKey: idempotencyKey,
	})
	if errors.Is(err, store.ErrNotFound) {
		abortError(c, http.StatusNotFound, "conversation_not_found", "conversation "+conv.ID+" not found")
		return
	}
	if err != nil {
		s.internalError(c, "create message failed", err)
		return
	}
	if turn.Existing && (turn.Run.ConversationID == nil || *turn.Run.ConversationID != conv.ID) {
		abortError(c, http.StatusConflict, "idempotency_key_reused", "Idempotency-Key was already used for a message in another conversation; send a new key")
		return
	}
	if !s.startRun(c, &turn.Run, *req.Content) {
		return
	}
	s.respondRun(c, turn, req.Streaming || wantsEventStream(c), req.Background)
}

func (s *Server) regenerate(c *gin.Context) {
	var req struct {
		Streaming  bool `json:"streaming"`
		Background bool `json:"background"`
	}
	if c.Request.ContentLength != 0 && !decodeJSON(c, &req) {
		return
	}
	turn, err := s.Store.Regenerate(c, currentUser(c).ID, c.Param("id"))
	if errors.Is(err, store.ErrConflict) {
		abortError(c, http.StatusConflict, "run_active", "the message's current run has not ended; cancel it or wait")
		return
	}
	if s.lookupError(c, "message", err) {
		return
	}
	if !s.startRun(c, &turn.Run, turn.UserMessage.Text()) {
		return
	}
	s.respondRun(c, turn, req.Streaming || wantsEventStream(c), req.Background)
}

// startRun starts the run's workflow. Starting is idempotent on the workflow
// ID, so a retried request with the same Idempotency-Key reaches the same
// workflow. When Temporal cannot be reached the run is failed, so that it
// does not stay queued forever, and the client gets a 503.
func (s *Server) startRun(c *gin.Context, run *models.ChatRun, prompt string) bool {
	if err := s.startWorkflow(c, run, prompt); err != nil {
		s.failUnstartedRun(c, run, err)
		return false
	}
	return true
}

// startWorkflow starts the run's workflow, or finds it already started.
func (s *Server) startWorkflow(c *gin.Context, run *models.ChatRun, prompt string) error {
	taskQueue, workflowName := workflows.ChatTaskQueue, workflows.ChatRunWorkflowName
	var input any = workflows.ChatRunInput{RunID: run.ID, MaxAttempts: s.Limits.UpstreamMaxAttempts}
	attrs := runSearchAttributes(run, models.RunQueued, "")
	if run.Kind == models.RunKindImage {
		taskQueue, workflowName = workflows.ImageTaskQueue, workflows.ImageGenerationWorkflowName
		imageInput := workflows.ImageRunInput{RunID: run.ID, MaxAttempts: s.Images.MaxAttempts, Candidates: s.planImageRun(c, run)}
		// A planned run's first workflow task schedules the first attempt
		// and nothing else, so the run counts as running from its start.
		if len(imageInput.Candidates) > 0 {
			imageInput.RunningAtStart = true
			attrs = runSearchAttributes(run, models.RunRunning, imageInput.Candidates[0].ProviderID)
		}
		input = imageInput
	}
	opts := client.StartWorkflowOptions{
		ID:                       run.WorkflowID,
		TaskQueue:                taskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		StaticSummary:            runSummary(run.Kind, run.RequestedLogicalModel, prompt),
		TypedSearchAttributes:    attrs,
		// The SDK requests eager start only when a worker of the task
		// queue shares this client, as in `dev` and in `serve` with
		// IMAGE_WORKER_IN_API. The server then returns the first workflow
		// task with the start response, and the local worker runs it.
		EnableEagerStart: run.Kind == models.RunKindImage,
	}
	// The start must not be abandoned when the client disconnects, or the
	// committed run would be failed although Temporal may have it.
	startCtx, cancelStart := context.WithTimeout(context.WithoutCancel(c.Request.Context()), 15*time.Second)
	defer cancelStart()
	_, err := s.Temporal.ExecuteWorkflow(startCtx, opts, workflowName, input)
	var alreadyStarted *serviceErrorAlreadyStarted
	if err != nil && !errors.As(err, &alreadyStarted) {
		return err
	}
	if s.Metrics != nil {
		s.Metrics.runsStarted.WithLabelValues(run.Kind).Inc()
	}
	return nil
}

// failUnstartedRun fails a stored run whose workflow could not be started
// and responds 503.
func (s *Server) failUnstartedRun(c *gin.Context, run *models.ChatRun, err error) {
	s.Logger.Error("start workflow failed", "run_id", run.ID, "workflow_id", run.WorkflowID, "user_id", run.UserID, "error", err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	outcome := store.Outcome{Status: models.RunFailed, ErrorCode: "workflow_start_failed", ErrorMessage: "the run could not be started"}
	if _, _, _, ferr := s.Store.FinalizeRun(ctx, run.ID, outcome); ferr != nil {
		s.Logger.Error("fail unstarted run", "run_id", run.ID, "error", ferr)
	}
	abortError(c, http.StatusServiceUnavailable, "workflow_start_failed", "the run could not be started on Temporal; the server log has the cause; try again shortly")
}

// planImageRun returns the router's plan for an image run, which spares
// the workflow its StartRun local activity. It returns nil when the server
// has no router or the plan fails or is empty, and the workflow then plans
// in StartRun, which also reports why no candidate can serve the run.
func (s *Server) planImageRun(ctx context.Context, run *models.ChatRun) []workflows.Candidate {
	if s.Router == nil {
		return nil
	}
	planned, err := s.Router.PlanRun(ctx, run.RequestedLogicalModel, providers.CapabilityImageGeneration)
	if err != nil {
		s.Logger.Info("image run not planned in the API; the workflow plans it", "run_id", run.ID, "workflow_id", run.WorkflowID,
			"user_id", run.UserID, "model", run.RequestedLogicalModel, "error", err)
		return nil
	}
	if len(planned) == 0 {
		return nil
	}
	candidates := make([]workflows.Candidate, 0, len(planned))
	for _, c := range planned {
		candidates = append(candidates, workflows.Candidate{ProviderID: c.ProviderID, Model: c.Model})
	}
	return candidates
}

// runSummary is the workflow's static summary: the kind, the model and the
// first 80 characters of the prompt.
func runSummary(kind, model, prompt string) string {
	prompt = strings.Join(strings.Fields(prompt), " ")
	if utf8.RuneCountInString(prompt) > 80 {
		prompt = string([]rune(prompt)[:80]) + "…"
	}
	return fmt.Sprintf("%s %s: %s", kind, model, prompt)
}

// runSearchAttributes returns the search attributes of the run's start,
// with AihProvider only when provider is set.
func runSearchAttributes(run *models.ChatRun, status, provider string) temporal.SearchAttributes {
	updates := []temporal.SearchAttributeUpdate{
		workflows.AttrUserID.ValueSet(run.UserID),
		workflows.AttrLogicalModel.ValueSet(run.RequestedLogicalModel),
		workflows.AttrRunKind.ValueSet(run.Kind),
		workflows.AttrRunStatus.ValueSet(status),
	}
	if provider != "" {
		updates = append(updates, workflows.AttrProvider.ValueSet(provider))
	}
	if run.ConversationID != nil {
		updates = append(updates, workflows.AttrConversationID.ValueSet(*run.ConversationID))
	}
	return temporal.NewSearchAttributes(updates...)
}

// respondRun writes the response to a request that started a run: an SSE
// stream, an immediate 202, or the run after it ends.
func (s *Server) respondRun(c *gin.Context, turn *store.Turn, streaming, background bool) {
	if streaming {
		s.streamEvents(c, turn.Run.ID, 0)
		return
	}
	if !background {
		wait := s.Limits.SyncWaitTimeout
		if turn.Run.Kind == models.RunKindImage {
			wait = s.Images.SyncWaitTimeout
		}
		// A server that shuts down stops waiting and responds with 202, so the
		// client learns the run ID and follows the run elsewhere.
		ctx, stop := s.untilStreamsEnd(c.Request.Context())
		ctx, cancel := context.WithTimeout(ctx, wait)
		var result workflows.FinalizeResult
		err := s.Temporal.GetWorkflow(ctx, turn.Run.WorkflowID, "").Get(ctx, &result)
		cancel()
		stop()
		if err == nil {
			s.writeTurn(c, http.StatusOK, turn)
			return
		}
		if c.Request.Context().Err() != nil {
			return
		}
		s.Logger.Info("run still active after the wait limit", "run_id", turn.Run.ID, "error", err)
	}
	c.Header("Location", "/v1/runs/"+turn.Run.ID)
	s.writeTurn(c, http.StatusAccepted, turn)
}

func (s *Server) writeTurn(c *gin.Context, status int, turn *store.Turn) {
	detail, err := s.runDetail(c, turn.Run.UserID, turn.Run.ID, true)
	if s.lookupError(c, "run", err) {
		return
	}
	response := gin.H{
		"user_message_id":      turn.UserMessage.ID,
		"assistant_message_id": turn.AssistantMessage.ID,
		"run":                  detail,
	}
	if turn.Run.Kind == models.RunKindImage {
		// The image links are in the assistant message, which the run
		// detail does not carry.
		message, err := s.Store.Message(c, turn.AssistantMessage.ID)
		if s.lookupError(c, "message", err) {
			return
		}
		view := viewMessage(message)
		view.Content = s.signedContent(c, message)
		view.Run = detail
		response["assistant_message"] = view
	}
	c.JSON(status, response)
}

func wantsEventStream(c *gin.Context) bool {
	return strings.Contains(c.GetHeader("Accept"), "text/event-stream")
}

func (s *Server) listMessages(c *gin.Context) {
	conv, err := s.Store.Conversation(c, currentUser(c).ID, c.Param("id"))
	if s.lookupError(c, "conversation", err) {
		return
	}
	page, ok := pageParams(c)
	if !ok {
		return
	}
	items, next, err := s.Store.ListMessages(c, conv.ID, page)
	if s.pageError(c, err) {
		return
	}

	runIDs := make([]string, 0, len(items))
	for _, m := range items {
		if m.RunID != nil && m.Role == models.RoleAssistant {
			runIDs = append(runIDs, *m.RunID)
		}
	}
	runs, err := s.Store.RunsByID(c, runIDs)
	if err != nil {
		s.internalError(c, "load runs failed", err)
		return
	}
	lastSeqs, err := s.Store.LastSeqs(c, runIDs)
	if err != nil {
		s.internalError(c, "load runs failed", err)
		return
	}

	views := make([]messageView, len(items))
	for i := range items {
		views[i] = viewMessage(&items[i])
		views[i].Content = s.signedContent(c, &items[i])
		if items[i].Role != models.RoleAssistant || items[i].RunID == nil {
			continue
		}
		if run, ok := runs[*items[i].RunID]; ok {
			detail := run.Detail(lastSeqs[run.ID], false)
			views[i].Run = &detail
		}
	}
	c.JSON(http.StatusOK, gin.H{"items": views, "next_cursor": nullable(next)})
}

func (s *Server) clearMessages(c *gin.Context) {
	conv, err := s.Store.Conversation(c, currentUser(c).ID, c.Param("id"))
	if s.lookupError(c, "conversation", err) {
		return
	}
	s.cancelConversationRuns(c, conv.ID)
	if err := s.Store.ClearMessages(c, conv.ID); err != nil {
		s.internalError(c, "clear messages failed", err)
		return
	}
	c.Status(http.StatusNoContent)
}
