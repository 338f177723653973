package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/aihigress/aihigress/models"
)

// WorkflowIDPrefix is prepended to a chat run's ID to form its workflow ID.
const WorkflowIDPrefix = "chat-run-"

// NewTurn describes a user message that starts a chat run.
type NewTurn struct {
	UserID         string
	ConversationID string
	Content        string
	LogicalModel   string
	ModelPreset    models.JSON
	IdempotencyKey string

	// Kind is models.RunKindChat when empty, or models.RunKindImage, whose
	// run reads its parameters from RequestBody and whose assistant message
	// starts with AssistantContent.
	Kind             string
	RequestBody      models.JSON
	AssistantContent models.JSON
}

// Turn is the result of CreateTurn. Existing is set when an earlier request
// with the same idempotency key had already created it.
type Turn struct {
	UserMessage      models.Message
	AssistantMessage models.Message
	Run              models.ChatRun
	Existing         bool
}

// CreateTurn writes, in one transaction, the user message, an empty assistant
// message, a queued run and the run's first event (message.created).
func (s *Store) CreateTurn(ctx context.Context, in NewTurn) (*Turn, error) {
	if in.IdempotencyKey != "" {
		if turn, err := s.turnByIdempotencyKey(ctx, in.UserID, in.IdempotencyKey); err == nil {
			return turn, nil
		} else if !errors.Is(err, ErrNotFound) {
			return nil, err
		}
	}

	var turn Turn
	err := s.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		seq, err := reserveSeqs(tx, in.UserID, in.ConversationID, 2)
		if err != nil {
			return err
		}
		now := s.DB.NowFunc()
		runID := newID()

		turn.UserMessage = models.Message{
			ID: newID(), ConversationID: in.ConversationID, UserID: in.UserID, Seq: seq,
			Role: models.RoleUser, Content: models.NewTextContent(in.Content), RunID: &runID,
			CreatedAt: now, UpdatedAt: now,
		}
		assistantContent := in.AssistantContent
		if assistantContent == nil {
			assistantContent = models.NewTextContent("")
		}
		turn.AssistantMessage = models.Message{
			ID: newID(), ConversationID: in.ConversationID, UserID: in.UserID, Seq: seq + 1,
			Role: models.RoleAssistant, Content: assistantContent, RunID: &runID,
			CreatedAt: now, UpdatedAt: now,
		}
		if err := tx.Create([]*models.Message{&turn.UserMessage, &turn.AssistantMessage}).Error; err != nil {
			return fmt.Errorf("create messages: %w", err)
		}

		turn.Run = newRun(runID, in.UserID, in.LogicalModel, in.ModelPreset, now)
		setKind(&turn.Run, in.Kind)
		turn.Run.RequestBody = in.RequestBody
		turn.Run.ConversationID = &in.ConversationID
		turn.Run.UserMessageID = &turn.UserMessage.ID
		turn.Run.AssistantMessageID = &turn.AssistantMessage.ID
		if in.IdempotencyKey != "" {
			turn.Run.IdempotencyKey = &in.IdempotencyKey
		}
		return createRunWithFirstEvent(tx, &turn.Run)
	})
	if err != nil {
		if in.IdempotencyKey != "" && isUniqueViolation(err) {
			// A concurrent request with the same key won the race.
			return s.turnByIdempotencyKey(ctx, in.UserID, in.IdempotencyKey)
		}
		return nil, err
	}
	return &turn, nil
}

// Regenerate starts a new queued run for the user message that preceded the
// assistant message. The assistant message points at the new run at once and
// receives its content when the run succeeds.
func (s *Store) Regenerate(ctx context.Context, userID, assistantMessageID string) (*Turn, error) {
	if !validUUID(assistantMessageID) {
		return nil, ErrNotFound
	}
	var turn Turn
	err := s.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Where("id = ? AND user_id = ? AND role = ?", assistantMessageID, userID, models.RoleAssistant).
			First(&turn.AssistantMessage).Error; err != nil {
			return notFound(err)
		}
		if err := tx.Where("conversation_id = ? AND seq < ? AND role = ?", turn.AssistantMessage.ConversationID, turn.AssistantMessage.Seq, models.RoleUser).
			Order("seq DESC").First(&turn.UserMessage).Error; err != nil {
			return fmt.Errorf("find the user message before %s: %w", assistantMessageID, notFound(err))
		}

		var previous models.ChatRun
		if turn.AssistantMessage.RunID != nil {
			if err := tx.Where("id = ?", *turn.AssistantMessage.RunID).First(&previous).Error; err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
				return fmt.Errorf("load previous run: %w", err)
			}
			if previous.ID != "" && !models.IsTerminalRunStatus(previous.Status) {
				return fmt.Errorf("run %s is still %s: %w", previous.ID, previous.Status, ErrConflict)
			}
		}
		logicalModel := previous.RequestedLogicalModel
		if logicalModel == "" {
			var conv models.Conversation
			if err := tx.Where("id = ?", turn.AssistantMessage.ConversationID).First(&conv).Error; err != nil {
				return notFound(err)
			}
			var assistant models.Assistant
			if err := tx.Where("id = ?", conv.AssistantID).First(&assistant).Error; err != nil {
				return notFound(err)
			}
			logicalModel = assistant.DefaultLogicalModel
		}

		now := s.DB.NowFunc()
		turn.Run = newRun(newID(), userID, logicalModel, previous.ModelPreset, now)
		turn.Run.ConversationID = &turn.AssistantMessage.ConversationID
		turn.Run.UserMessageID = &turn.UserMessage.ID
		turn.Run.AssistantMessageID = &turn.AssistantMessage.ID
		updates := map[string]any{"run_id": turn.Run.ID, "updated_at": now}
		// An image generation is generated again with the same parameters,
		// and its message shows the new run as pending until it ends.
		if content, ok := turn.AssistantMessage.ImageContent(); ok && previous.Kind == models.RunKindImage {
			setKind(&turn.Run, models.RunKindImage)
			turn.Run.RequestBody = previous.RequestBody
			turn.AssistantMessage.Content = models.PendingImageContent(content.Prompt, content.Params)
			updates["content"] = turn.AssistantMessage.Content
		}
		if err := createRunWithFirstEvent(tx, &turn.Run); err != nil {
			return err
		}
		turn.AssistantMessage.RunID = &turn.Run.ID
		return tx.Model(&models.Message{}).Where("id = ?", assistantMessageID).Updates(updates).Error
	})
	if err != nil {
		return nil, err
	}
	return &turn, nil
}

func newRun(id, userID, logicalModel string, preset models.JSON, now time.Time) models.ChatRun {
	return models.ChatRun{
		ID:                    id,
		UserID:                userID,
		Kind:                  models.RunKindChat,
		Status:                models.RunQueued,
		RequestedLogicalModel: logicalModel,
		ModelPreset:           preset,
		WorkflowID:            WorkflowIDPrefix + id,
		CreatedAt:             now,
		UpdatedAt:             now,
	}
}

func createRunWithFirstEvent(tx *gorm.DB, run *models.ChatRun) error {
	if err := tx.Create(run).Error; err != nil {
		return fmt.Errorf("create run: %w", err)
	}
	event := models.ChatRunEvent{
		RunID:     run.ID,
		Seq:       1,
		EventType: models.EventMessageCreated,
		Payload: models.MustJSON(map[string]any{
			"conversation_id":         run.ConversationID,
			"user_message_id":         run.UserMessageID,
			"assistant_message_id":    run.AssistantMessageID,
			"requested_logical_model": run.RequestedLogicalModel,
		}),
		CreatedAt: run.CreatedAt,
	}
	if err := tx.Create(&event).Error; err != nil {
		return fmt.Errorf("create first event: %w", err)
	}
	return nil
}

// reserveSeqs takes n message sequence numbers from the conversation and
// returns the first. The conversation must belong to userID.
func reserveSeqs(tx *gorm.DB, userID, conversationID string, n int64) (int64, error) {
	var next []int64
	err := tx.Raw("UPDATE conversations SET next_seq = next_seq + ?, updated_at = ? WHERE id = ? AND user_id = ? RETURNING next_seq",
		n, tx.NowFunc(), conversationID, userID).Scan(&next).Error
	if err != nil {
		return 0, fmt.Errorf("reserve message numbers: %w", err)
	}
	if len(next) == 0 {
		return 0, ErrNotFound
	}
	return next[0] - n, nil
}

func (s *Store) turnByIdempotencyKey(ctx context.Context, userID, key string) (*Turn, error) {
	var turn Turn
	db := s.DB.WithContext(ctx)
	if err := db.Where("user_id = ? AND idempotency_key = ?", userID, key).First(&turn.Run).Error; err != nil {
		return nil, notFound(err)
	}
	if turn.Run.UserMessageID != nil {
		if err := db.Where("id = ?", *turn.Run.UserMessageID).First(&turn.UserMessage).Error; err != nil {
			return nil, notFound(err)
		}
	}
	if turn.Run.AssistantMessageID != nil {
		if err := db.Where("id = ?", *turn.Run.AssistantMessageID).First(&turn.AssistantMessage).Error; err != nil {
			return nil, notFound(err)
		}
	}
	turn.Existing = true
	return &turn, nil
}

// Run returns the user's run id.
func (s *Store) Run(ctx context.Context, userID, id string) (*models.ChatRun, error) {
	if !validUUID(id) {
		return nil, ErrNotFound
	}
	var r models.ChatRun
	if err := s.DB.WithContext(ctx).Where("id = ? AND user_id = ?", id, userID).First(&r).Error; err != nil {
		return nil, notFound(err)
	}
	return &r, nil
}

// RunByID returns run id regardless of its owner; for workers only.
func (s *Store) RunByID(ctx context.Context, id string) (*models.ChatRun, error) {
	var r models.ChatRun
	if err := s.DB.WithContext(ctx).Where("id = ?", id).First(&r).Error; err != nil {
		return nil, notFound(err)
	}
	return &r, nil
}

// MarkRunning moves a queued run to running and records its start time. It
// leaves a run in any other status unchanged.
func (s *Store) MarkRunning(ctx context.Context, runID string) error {
	now := s.DB.NowFunc()
	return s.DB.WithContext(ctx).Model(&models.ChatRun{}).
		Where("id = ? AND status = ?", runID, models.RunQueued).
		Updates(map[string]any{"status": models.RunRunning, "started_at": now, "updated_at": now}).Error
}

// RecordAttempt stores which candidate the current upstream attempt uses.
func (s *Store) RecordAttempt(ctx context.Context, runID string, attempt int, providerID, model string) error {
	return s.DB.WithContext(ctx).Model(&models.ChatRun{}).
		Where("id = ? AND status = ?", runID, models.RunRunning).
		Updates(map[string]any{
			"attempt": attempt, "selected_provider_id": providerID, "selected_provider_model": model,
			"updated_at": s.DB.NowFunc(),
		}).Error
}

// StartAttempt marks a queued run running, keeping the start time of a run
// that is already running, and stores which candidate the current upstream
// attempt uses. It leaves a run in a terminal status unchanged. Image runs
// whose workflow skipped StartRun reach the running status here.
func (s *Store) StartAttempt(ctx context.Context, runID string, attempt int, providerID, model string) error {
	now := s.DB.NowFunc()
	return s.DB.WithContext(ctx).Model(&models.ChatRun{}).
		Where("id = ? AND status IN ?", runID, []string{models.RunQueued, models.RunRunning}).
		Updates(map[string]any{
			"status": models.RunRunning, "started_at": gorm.Expr("COALESCE(started_at, ?)", now),
			"attempt": attempt, "selected_provider_id": providerID, "selected_provider_model": model,
			"updated_at": now,
		}).Error
}

// Output is the reply of a successful upstream attempt.
type Output struct {
	Text         string
	FinishReason string
	// ToolCalls is a JSON array of tool calls, or nil when there are none.
	ToolCalls models.JSON
	Usage     models.Usage
}

// SaveOutput stores the reply of a successful upstream attempt.
func (s *Store) SaveOutput(ctx context.Context, runID string, out Output) error {
	return s.DB.WithContext(ctx).Model(&models.ChatRun{}).
		Where("id = ? AND status = ?", runID, models.RunRunning).
		Updates(map[string]any{
			"output_text": out.Text, "output_preview": models.Preview(out.Text),
			"finish_reason": out.FinishReason, "output_tool_calls": out.ToolCalls,
			"prompt_tokens": out.Usage.PromptTokens, "completion_tokens": out.Usage.CompletionTokens,
			"updated_at": s.DB.NowFunc(),
		}).Error
}

// Outcome is the terminal status of a run and its error, if any.
type Outcome struct {
	Status       string
	ErrorCode    string
	ErrorMessage string
	// ImageURL, when set, signs the image links of an image run's terminal
	// event. The stored message keeps object keys only.
	ImageURL func(objectKey string) string
	// Images, when set, stores a succeeded image run's output in the same
	// transaction, which saves the image attempt a write of its own.
	Images *ImageOutput
}

// FinalizeRun ends a run once: it sets the terminal status, copies the output
// into the assistant message on success, and appends the terminal events, all
// in one transaction. Calling it again for an ended run changes nothing and
// returns changed=false, so a retried activity cannot end a run twice.
func (s *Store) FinalizeRun(ctx context.Context, runID string, outcome Outcome) (run models.ChatRun, events []models.ChatRunEvent, changed bool, err error) {
	err = s.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		locked := tx
		if s.Dialect == Postgres {
			locked = tx.Clauses(clause.Locking{Strength: "UPDATE"})
		}
		if err := locked.Where("id = ?", runID).First(&run).Error; err != nil {
			return notFound(err)
		}
		if models.IsTerminalRunStatus(run.Status) {
			return nil
		}

		now := s.DB.NowFunc()
		run.Status = outcome.Status
		run.ErrorCode = outcome.ErrorCode
		run.ErrorMessage = outcome.ErrorMessage
		run.FinishedAt = &now
		latency := now.Sub(run.CreatedAt).Milliseconds()
		run.LatencyMS = &latency
		run.UpdatedAt = now
		updates := map[string]any{
			"status": run.Status, "error_code": run.ErrorCode, "error_message": run.ErrorMessage,
			"finished_at": now, "latency_ms": latency, "updated_at": now,
		}
		if outcome.Images != nil {
			maps.Copy(updates, setImageOutput(&run, outcome.Images.Images, outcome.Images.Usage))
		}
		if err := tx.Model(&models.ChatRun{}).Where("id = ?", runID).Updates(updates).Error; err != nil {
			return fmt.Errorf("finalize run: %w", err)
		}

		var imageContent *models.ImageGenerationContent
		if run.Kind == models.RunKindImage {
			content, err := finalImageContent(tx, run, outcome.ImageURL)
			if err != nil {
				return err
			}
			imageContent = &content
		}
		if err := writeAssistantMessage(tx, run, imageContent, now); err != nil {
			return err
		}

		lastSeq, err := maxSeq(tx, runID)
		if err != nil {
			return err
		}
		if outcome.Images != nil && outcome.Images.Note != "" {
			lastSeq++
			events = append(events, noteEvent(runID, lastSeq, outcome.Images.Note))
		}
		events = append(events, terminalEvents(run, imageContent, lastSeq+1)...)
		if len(events) > 0 {
			if err := tx.Create(&events).Error; err != nil {
				return fmt.Errorf("append terminal events: %w", err)
			}
		}
		changed = true
		return nil
	})
	return run, events, changed, err
}

// History returns the messages up to and including the user message at
// userSeq, oldest first, at most limit of them.
func (s *Store) History(ctx context.Context, conversationID string, userSeq int64, limit int) ([]models.Message, error) {
	var items []models.Message
	err := s.DB.WithContext(ctx).
		Where("conversation_id = ? AND seq <= ?", conversationID, userSeq).
		Order("seq DESC").Limit(limit).Find(&items).Error
	if err != nil {
		return nil, fmt.Errorf("load history: %w", err)
	}
	for i, j := 0, len(items)-1; i < j; i, j = i+1, j-1 {
		items[i], items[j] = items[j], items[i]
	}
	return items, nil
}

// Message returns message id regardless of its owner; for workers only.
func (s *Store) Message(ctx context.Context, id string) (*models.Message, error) {
	var m models.Message
	if err := s.DB.WithContext(ctx).Where("id = ?", id).First(&m).Error; err != nil {
		return nil, notFound(err)
	}
	return &m, nil
}

// noteEvent builds a message.delta event with text, as events.Writer
// stores one.
func noteEvent(runID string, seq int64, text string) models.ChatRunEvent {
	payload := models.MustJSON(struct {
		Delta string `json:"delta"`
	}{text})
	return models.ChatRunEvent{
		RunID: runID, Seq: seq, EventType: models.EventMessageDelta, Payload: payload,
		CreatedAt: time.Now().UTC().Truncate(time.Microsecond),
	}
}

// terminalEvents builds the events that close a run, given the run as
// finalized and the first free sequence number.
func terminalEvents(run models.ChatRun, imageContent *models.ImageGenerationContent, nextSeq int64) []models.ChatRunEvent {
	detail := run.Detail(nextSeq, false)
	// The time is truncated to microseconds, as PostgreSQL stores it, so
	// that the published events match their stored copies.
	now := time.Now().UTC().Truncate(time.Microsecond)
	event := func(seq int64, eventType string, payload any) models.ChatRunEvent {
		return models.ChatRunEvent{RunID: run.ID, Seq: seq, EventType: eventType, Payload: models.MustJSON(payload), CreatedAt: now}
	}

	switch run.Status {
	case models.RunSucceeded:
		payload := map[string]any{"output_text": run.OutputText, "run": detail}
		if imageContent != nil {
			payload["image_generation"] = imageContent
		}
		return []models.ChatRunEvent{event(nextSeq, models.EventMessageCompleted, payload)}
	case models.RunCanceled:
		detail.LastSeq = nextSeq + 1
		return []models.ChatRunEvent{
			event(nextSeq, models.EventRunCanceled, map[string]any{"run": detail}),
			event(nextSeq+1, models.EventMessageFailed, map[string]any{
				"error_code": "canceled", "error_message": "the run was canceled", "run": detail,
			}),
		}
	default:
		payload := map[string]any{"error_code": run.ErrorCode, "error_message": run.ErrorMessage, "run": detail}
		if imageContent != nil {
			payload["image_generation"] = imageContent
		}
		return []models.ChatRunEvent{event(nextSeq, models.EventMessageFailed, payload)}
	}
}
