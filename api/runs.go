package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"go.temporal.io/api/serviceerror"

	"github.com/aihigress/aihigress/internal/events"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/models"
	"github.com/aihigress/aihigress/workflows"
)

type serviceErrorAlreadyStarted = serviceerror.WorkflowExecutionAlreadyStarted

// cancelWait bounds how long POST /cancel waits for the run to finalize
// before it returns the run in its current state.
const cancelWait = 5 * time.Second

func (s *Server) runDetail(ctx context.Context, userID, runID string, withText bool) (*models.RunDetail, error) {
	run, err := s.Store.Run(ctx, userID, runID)
	if err != nil {
		return nil, err
	}
	lastSeq, err := s.Store.LastSeq(ctx, run.ID)
	if err != nil {
		return nil, err
	}
	detail := run.Detail(lastSeq, withText)
	return &detail, nil
}

// runScope returns the runs that the request's principal may access. An API
// key reaches only the runs it created. An access token reaches every run of
// its user, including those that the user's API keys created.
func runScope(c *gin.Context) store.RunScope {
	if key := currentAPIKey(c); key != nil {
		return store.RunScope{UserID: key.UserID, APIKeyID: key.KeyID}
	}
	return store.RunScope{UserID: c.GetString("user_id")}
}

// scopedRunDetail loads run id within scope and builds its public
// representation with the output text.
func (s *Server) scopedRunDetail(ctx context.Context, scope store.RunScope, id string) (*models.RunDetail, error) {
	run, err := s.Store.RunInScope(ctx, scope, id)
	if err != nil {
		return nil, err
	}
	lastSeq, err := s.Store.LastSeq(ctx, run.ID)
	if err != nil {
		return nil, err
	}
	detail := run.Detail(lastSeq, true)
	return &detail, nil
}

func (s *Server) getRun(c *gin.Context) {
	detail, err := s.scopedRunDetail(c, runScope(c), c.Param("id"))
	if s.lookupError(c, "run", err) {
		return
	}
	c.JSON(http.StatusOK, detail)
}

func (s *Server) cancelRun(c *gin.Context) {
	scope := runScope(c)
	run, err := s.Store.RunInScope(c, scope, c.Param("id"))
	if s.lookupError(c, "run", err) {
		return
	}
	if !models.IsTerminalRunStatus(run.Status) {
		err := s.Temporal.CancelWorkflow(c, run.WorkflowID, "")
		var notFound *serviceerror.NotFound
		if err != nil && !errors.As(err, &notFound) {
			s.unavailable(c, "cancel run failed", err)
			return
		}
		s.Logger.Info("run cancel requested", "run_id", run.ID, "workflow_id", run.WorkflowID,
			"user_id", scope.UserID, "api_key_id", scope.APIKeyID)

		ctx, cancel := context.WithTimeout(c, cancelWait)
		var result workflows.FinalizeResult
		_ = s.Temporal.GetWorkflow(ctx, run.WorkflowID, "").Get(ctx, &result)
		cancel()
	}
	detail, err := s.scopedRunDetail(c, scope, run.ID)
	if s.lookupError(c, "run", err) {
		return
	}
	c.JSON(http.StatusOK, detail)
}

func (s *Server) streamRunEvents(c *gin.Context) {
	after, ok := eventCursor(c)
	if !ok {
		return
	}
	run, err := s.Store.RunInScope(c, runScope(c), c.Param("id"))
	if s.lookupError(c, "run", err) {
		return
	}
	s.streamEvents(c, run.ID, after)
}

// chatCompletion is OpenAI's chat.completion object, which
// GET /v1/runs/{id}/result builds from a succeeded run.
type chatCompletion struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []completionChoice `json:"choices"`
	Usage   completionUsage    `json:"usage"`
}

type completionChoice struct {
	Index   int               `json:"index"`
	Message completionMessage `json:"message"`
	// FinishReason is null when the upstream sent none, and for runs that
	// ended before finish reasons were stored.
	FinishReason *string `json:"finish_reason"`
}

type completionMessage struct {
	Role string `json:"role"`
	// Content is null when the reply consists of tool calls only, as in
	// OpenAI's responses.
	Content   *string         `json:"content"`
	ToolCalls json.RawMessage `json:"tool_calls,omitempty"`
}

type completionUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// getRunResult returns the chat completion of a succeeded chat run, or the
// images response of a succeeded image run. A run that
// has not ended, or ended without success, gets a 409 whose "status" field
// is the run's status.
func (s *Server) getRunResult(c *gin.Context) {
	run, err := s.Store.RunInScope(c, runScope(c), c.Param("id"))
	if s.lookupError(c, "run", err) {
		return
	}

	switch {
	case run.Status == models.RunSucceeded && run.Kind == models.RunKindImage:
		s.writeImagesResponse(c, run)
	case run.Status == models.RunSucceeded:
		c.JSON(http.StatusOK, completionOf(run))
	case run.Status == models.RunFailed || run.Status == models.RunCanceled:
		code, message := run.ErrorCode, run.ErrorMessage
		if code == "" {
			code = "run_" + run.Status
		}
		if message == "" {
			message = "the run " + run.Status
		}
		abortRunConflict(c, run.Status, code, message)
	default:
		abortRunConflict(c, run.Status, "run_not_finished",
			fmt.Sprintf("run %s is %s; poll GET /v1/runs/%s or follow its events until it ends", run.ID, run.Status, run.ID))
	}
}

// abortRunConflict writes a 409 in the usual error shape with the run's
// status next to the error.
func abortRunConflict(c *gin.Context, status, code, message string) {
	c.AbortWithStatusJSON(http.StatusConflict, gin.H{
		"error":  errorDetail{Message: message, Type: errorType(http.StatusConflict), Code: code},
		"status": status,
	})
}

func completionOf(run *models.ChatRun) chatCompletion {
	message := completionMessage{Role: models.RoleAssistant}
	hasToolCalls := len(run.OutputToolCalls) > 0 && string(run.OutputToolCalls) != "null"
	if hasToolCalls {
		message.ToolCalls = json.RawMessage(run.OutputToolCalls)
	}
	if run.OutputText != "" || !hasToolCalls {
		text := run.OutputText
		message.Content = &text
	}

	return chatCompletion{
		ID:      "chatcmpl-" + run.ID,
		Object:  "chat.completion",
		Created: run.CreatedAt.Unix(),
		Model:   run.RequestedLogicalModel,
		Choices: []completionChoice{{Index: 0, Message: message, FinishReason: nullable(run.FinishReason)}},
		Usage: completionUsage{
			PromptTokens:     run.PromptTokens,
			CompletionTokens: run.CompletionTokens,
			TotalTokens:      run.PromptTokens + run.CompletionTokens,
		},
	}
}

// eventCursor reads after_seq, or the Last-Event-ID header that browsers
// send when they reconnect.
func eventCursor(c *gin.Context) (int64, bool) {
	raw, name := c.Query("after_seq"), "after_seq"
	if raw == "" {
		raw, name = c.GetHeader("Last-Event-ID"), "Last-Event-ID"
	}
	if raw == "" {
		return 0, true
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || n < 0 {
		abortError(c, http.StatusBadRequest, "invalid_cursor", fmt.Sprintf("%s must be a non-negative integer, got %q", name, raw))
		return 0, false
	}
	return n, true
}

// streamEvents writes the run's events after the cursor as SSE until the run
// ends or the client goes away.
func (s *Server) streamEvents(c *gin.Context, runID string, after int64) {
	if s.Metrics != nil {
		s.Metrics.streamsOpen.Inc()
		defer s.Metrics.streamsOpen.Dec()
	}
	w := c.Writer
	header := w.Header()
	header.Set("Content-Type", "text/event-stream")
	header.Set("Cache-Control", "no-cache")
	header.Set("Connection", "keep-alive")
	header.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	w.Flush()

	buf := make([]byte, 0, 1024)
	// lastID is the id of the last frame written, the cursor that the
	// client reconnects with.
	lastID := after
	send := func(f events.Frame) error {
		f, err := s.resignEventImages(c, f)
		if err != nil {
			// The frame goes out with the links it was stored with.
			s.Logger.Warn("re-signing the image links of an event failed", "run_id", runID, "user_id", c.GetString("user_id"), "error", err)
		}
		buf = buf[:0]
		if f.ID >= 0 {
			buf = append(buf, "id: "...)
			buf = strconv.AppendInt(buf, f.ID, 10)
			buf = append(buf, '\n')
		}
		buf = append(buf, "event: "...)
		buf = append(buf, f.Event...)
		buf = append(buf, "\ndata: "...)
		buf = append(buf, f.Data...)
		buf = append(buf, "\n\n"...)
		if _, err := w.Write(buf); err != nil {
			return err
		}
		w.Flush()
		if f.ID >= 0 {
			lastID = f.ID
		}
		return nil
	}

	ctx, stop := s.untilStreamsEnd(c.Request.Context())
	defer stop()
	err := s.Follower.Follow(ctx, runID, after, send)
	switch {
	case err == nil || c.Request.Context().Err() != nil:
	case s.streamsEnding():
		// The server is shutting down. The client resumes on another
		// server from lastID and misses nothing.
		s.drain.reconnects.Add(1)
		if _, err := w.Write(reconnectFrame(runID, lastID, reconnectDelay())); err == nil {
			w.Flush()
		}
	default:
		s.Logger.Warn("event stream ended with an error", "run_id", runID, "user_id", c.GetString("user_id"), "error", err)
		// The stream is already open, so the error goes out as an event. It
		// carries no id, so the client's reconnect cursor stays where it was.
		_ = send(events.Frame{ID: -1, Event: "error", Data: []byte(`{"error":{"code":"stream_failed","message":"the event stream failed; reconnect with Last-Event-ID"}}`)})
	}
}
