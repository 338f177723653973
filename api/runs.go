package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"go.temporal.io/api/serviceerror"

	"github.com/aihigress/aihigress/internal/events"
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

func (s *Server) getRun(c *gin.Context) {
	detail, err := s.runDetail(c, currentUser(c).ID, c.Param("id"), true)
	if s.lookupError(c, "run", err) {
		return
	}
	c.JSON(http.StatusOK, detail)
}

func (s *Server) cancelRun(c *gin.Context) {
	user := currentUser(c)
	run, err := s.Store.Run(c, user.ID, c.Param("id"))
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
		s.Logger.Info("run cancel requested", "run_id", run.ID, "workflow_id", run.WorkflowID, "user_id", user.ID)

		ctx, cancel := context.WithTimeout(c, cancelWait)
		var result workflows.FinalizeResult
		_ = s.Temporal.GetWorkflow(ctx, run.WorkflowID, "").Get(ctx, &result)
		cancel()
	}
	detail, err := s.runDetail(c, user.ID, run.ID, true)
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
	run, err := s.Store.Run(c, currentUser(c).ID, c.Param("id"))
	if s.lookupError(c, "run", err) {
		return
	}
	s.streamEvents(c, run.ID, after)
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
	send := func(f events.Frame) error {
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
		return nil
	}

	err := s.Follower.Follow(c, runID, after, send)
	if err != nil && c.Request.Context().Err() == nil {
		s.Logger.Warn("event stream ended with an error", "run_id", runID, "user_id", c.GetString("user_id"), "error", err)
		// The stream is already open, so the error goes out as an event. It
		// carries no id, so the client's reconnect cursor stays where it was.
		_ = send(events.Frame{ID: -1, Event: "error", Data: []byte(`{"error":{"code":"stream_failed","message":"the event stream failed; reconnect with Last-Event-ID"}}`)})
	}
}
