package store

import (
	"context"
	"fmt"
	"strconv"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/aihigress/aihigress/models"
)

func newID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// CreateAssistant inserts a.
func (s *Store) CreateAssistant(ctx context.Context, a *models.Assistant) error {
	a.ID = newID()
	if err := s.DB.WithContext(ctx).Create(a).Error; err != nil {
		return fmt.Errorf("create assistant: %w", err)
	}
	return nil
}

// ListAssistants returns one page of the user's assistants, newest first,
// and the cursor of the next page ("" on the last page).
func (s *Store) ListAssistants(ctx context.Context, userID string, page Page) ([]models.Assistant, string, error) {
	q := s.DB.WithContext(ctx).Where("user_id = ?", userID)
	return pageByID(q, page, func(a models.Assistant) string { return a.ID }, "assistants")
}

// Assistant returns the user's assistant id.
func (s *Store) Assistant(ctx context.Context, userID, id string) (*models.Assistant, error) {
	if !validUUID(id) {
		return nil, ErrNotFound
	}
	var a models.Assistant
	if err := s.DB.WithContext(ctx).Where("id = ? AND user_id = ?", id, userID).First(&a).Error; err != nil {
		return nil, notFound(err)
	}
	return &a, nil
}

// UpdateAssistant saves every field of a, which must belong to its UserID.
func (s *Store) UpdateAssistant(ctx context.Context, a *models.Assistant) error {
	res := s.DB.WithContext(ctx).Model(&models.Assistant{}).
		Where("id = ? AND user_id = ?", a.ID, a.UserID).
		Updates(map[string]any{
			"name":                  a.Name,
			"system_prompt":         a.SystemPrompt,
			"default_logical_model": a.DefaultLogicalModel,
			"model_preset":          a.ModelPreset,
			"updated_at":            s.DB.NowFunc(),
		})
	if res.Error != nil {
		return fmt.Errorf("update assistant: %w", res.Error)
	}
	if res.RowsAffected == 0 {
		return ErrNotFound
	}
	return nil
}

// DeleteAssistant removes the assistant and, by cascade, its conversations.
func (s *Store) DeleteAssistant(ctx context.Context, userID, id string) error {
	return s.deleteOwned(ctx, &models.Assistant{}, userID, id)
}

// CreateConversation inserts c; its assistant must belong to the same user.
func (s *Store) CreateConversation(ctx context.Context, c *models.Conversation) error {
	if _, err := s.Assistant(ctx, c.UserID, c.AssistantID); err != nil {
		return fmt.Errorf("assistant %s: %w", c.AssistantID, err)
	}
	c.ID = newID()
	c.NextSeq = 1
	if err := s.DB.WithContext(ctx).Create(c).Error; err != nil {
		return fmt.Errorf("create conversation: %w", err)
	}
	return nil
}

// ConversationFilter narrows ListConversations.
type ConversationFilter struct {
	AssistantID string
	Archived    *bool
}

// ListConversations returns one page of the user's conversations, newest first.
func (s *Store) ListConversations(ctx context.Context, userID string, filter ConversationFilter, page Page) ([]models.Conversation, string, error) {
	after, err := page.idCursor()
	if err != nil {
		return nil, "", err
	}
	q := s.DB.WithContext(ctx).Where("user_id = ?", userID)
	if filter.AssistantID != "" {
		q = q.Where("assistant_id = ?", filter.AssistantID)
	}
	if filter.Archived != nil {
		q = q.Where("archived = ?", *filter.Archived)
	}
	if after != "" {
		q = q.Where("id < ?", after)
	}
	var items []models.Conversation
	if err := q.Order("id DESC").Limit(page.limit() + 1).Find(&items).Error; err != nil {
		return nil, "", fmt.Errorf("list conversations: %w", err)
	}
	items, next := trimPage(items, page.limit(), func(c models.Conversation) string { return c.ID })
	return items, next, nil
}

// Conversation returns the user's conversation id.
func (s *Store) Conversation(ctx context.Context, userID, id string) (*models.Conversation, error) {
	if !validUUID(id) {
		return nil, ErrNotFound
	}
	var c models.Conversation
	if err := s.DB.WithContext(ctx).Where("id = ? AND user_id = ?", id, userID).First(&c).Error; err != nil {
		return nil, notFound(err)
	}
	return &c, nil
}

// UpdateConversation sets the title and the archived flag.
func (s *Store) UpdateConversation(ctx context.Context, c *models.Conversation) error {
	res := s.DB.WithContext(ctx).Model(&models.Conversation{}).
		Where("id = ? AND user_id = ?", c.ID, c.UserID).
		Updates(map[string]any{"title": c.Title, "archived": c.Archived, "updated_at": s.DB.NowFunc()})
	if res.Error != nil {
		return fmt.Errorf("update conversation: %w", res.Error)
	}
	if res.RowsAffected == 0 {
		return ErrNotFound
	}
	return nil
}

// DeleteConversation removes the conversation; messages, runs and events go
// with it by cascade.
func (s *Store) DeleteConversation(ctx context.Context, userID, id string) error {
	return s.deleteOwned(ctx, &models.Conversation{}, userID, id)
}

// ActiveRunWorkflowIDs lists the workflow IDs of a conversation's runs that
// have not ended, chat and image runs alike, so that their workflows can be
// canceled before the rows go.
func (s *Store) ActiveRunWorkflowIDs(ctx context.Context, conversationID string) ([]string, error) {
	var ids []string
	err := s.DB.WithContext(ctx).Model(&models.ChatRun{}).
		Where("conversation_id = ? AND status IN ?", conversationID, []string{models.RunQueued, models.RunRunning}).
		Pluck("workflow_id", &ids).Error
	return ids, err
}

// ActiveRunWorkflowIDsOfAssistant lists the workflow IDs of the active runs
// in all of an assistant's conversations.
func (s *Store) ActiveRunWorkflowIDsOfAssistant(ctx context.Context, assistantID string) ([]string, error) {
	var ids []string
	err := s.DB.WithContext(ctx).Model(&models.ChatRun{}).
		Where("conversation_id IN (?) AND status IN ?",
			s.DB.Model(&models.Conversation{}).Select("id").Where("assistant_id = ?", assistantID),
			[]string{models.RunQueued, models.RunRunning}).
		Pluck("workflow_id", &ids).Error
	return ids, err
}

// ListMessages returns one page of a conversation's messages in sequence
// order, starting after the cursor's sequence number.
func (s *Store) ListMessages(ctx context.Context, conversationID string, page Page) ([]models.Message, string, error) {
	after, err := page.seqCursor()
	if err != nil {
		return nil, "", err
	}
	var items []models.Message
	err = s.DB.WithContext(ctx).
		Where("conversation_id = ? AND seq > ?", conversationID, after).
		Order("seq ASC").Limit(page.limit() + 1).Find(&items).Error
	if err != nil {
		return nil, "", fmt.Errorf("list messages: %w", err)
	}
	items, next := trimPage(items, page.limit(), func(m models.Message) string { return strconv.FormatInt(m.Seq, 10) })
	return items, next, nil
}

// ClearMessages deletes every message of a conversation; runs and events go
// with them by cascade.
func (s *Store) ClearMessages(ctx context.Context, conversationID string) error {
	return s.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Where("conversation_id = ?", conversationID).Delete(&models.ChatRun{}).Error; err != nil {
			return fmt.Errorf("clear runs: %w", err)
		}
		if err := tx.Where("conversation_id = ?", conversationID).Delete(&models.Message{}).Error; err != nil {
			return fmt.Errorf("clear messages: %w", err)
		}
		return nil
	})
}

// RunsByID loads the runs with the given IDs, keyed by ID.
func (s *Store) RunsByID(ctx context.Context, ids []string) (map[string]models.ChatRun, error) {
	out := make(map[string]models.ChatRun, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	var runs []models.ChatRun
	if err := s.DB.WithContext(ctx).Omit("output_text").Where("id IN ?", ids).Find(&runs).Error; err != nil {
		return nil, fmt.Errorf("load runs: %w", err)
	}
	for _, r := range runs {
		out[r.ID] = r
	}
	return out, nil
}

func (s *Store) deleteOwned(ctx context.Context, model any, userID, id string) error {
	if !validUUID(id) {
		return ErrNotFound
	}
	res := s.DB.WithContext(ctx).Where("id = ? AND user_id = ?", id, userID).Delete(model)
	if res.Error != nil {
		return fmt.Errorf("delete: %w", res.Error)
	}
	if res.RowsAffected == 0 {
		return ErrNotFound
	}
	return nil
}

// trimPage cuts a result fetched with limit+1 rows down to limit and returns
// the cursor of the next page when the extra row was there.
func trimPage[T any](items []T, limit int, key func(T) string) ([]T, string) {
	if len(items) <= limit {
		return items, ""
	}
	items = items[:limit]
	return items, key(items[limit-1])
}
