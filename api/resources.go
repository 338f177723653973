package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/models"
)

const maxNameChars = 200

type assistantView struct {
	ID                  string          `json:"id"`
	Name                string          `json:"name"`
	SystemPrompt        string          `json:"system_prompt"`
	DefaultLogicalModel string          `json:"default_logical_model"`
	ModelPreset         json.RawMessage `json:"model_preset"`
	CreatedAt           time.Time       `json:"created_at"`
	UpdatedAt           time.Time       `json:"updated_at"`
}

func viewAssistant(a *models.Assistant) assistantView {
	preset := json.RawMessage(a.ModelPreset)
	if len(preset) == 0 {
		preset = json.RawMessage("null")
	}
	return assistantView{
		ID: a.ID, Name: a.Name, SystemPrompt: a.SystemPrompt, DefaultLogicalModel: a.DefaultLogicalModel,
		ModelPreset: preset, CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt,
	}
}

type assistantRequest struct {
	Name                string          `json:"name"`
	SystemPrompt        string          `json:"system_prompt"`
	DefaultLogicalModel string          `json:"default_logical_model"`
	ModelPreset         json.RawMessage `json:"model_preset"`
}

// validate checks the request and fills a; on failure it writes a 400.
func (s *Server) validateAssistant(c *gin.Context, req assistantRequest, a *models.Assistant) bool {
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" || len([]rune(req.Name)) > maxNameChars {
		abortError(c, http.StatusBadRequest, "invalid_name", fmt.Sprintf("name must be 1 to %d characters", maxNameChars))
		return false
	}
	if len([]rune(req.SystemPrompt)) > s.Limits.MaxContentChars {
		abortError(c, http.StatusBadRequest, "system_prompt_too_long", fmt.Sprintf("system_prompt exceeds %d characters", s.Limits.MaxContentChars))
		return false
	}
	if !s.checkChatModel(c, "default_logical_model", req.DefaultLogicalModel) {
		return false
	}
	preset, ok := validPreset(c, req.ModelPreset)
	if !ok {
		return false
	}
	a.Name, a.SystemPrompt, a.DefaultLogicalModel, a.ModelPreset = req.Name, req.SystemPrompt, req.DefaultLogicalModel, preset
	return true
}

// checkChatModel writes a 400 unless name is a logical model that can chat.
func (s *Server) checkChatModel(c *gin.Context, field, name string) bool {
	if strings.TrimSpace(name) == "" {
		abortParamError(c, http.StatusBadRequest, "invalid_model", field, field+" is required")
		return false
	}
	if _, err := s.Catalog.Candidates(name, providers.CapabilityChat); err != nil {
		if errors.Is(err, providers.ErrCapability) {
			abortParamError(c, http.StatusBadRequest, "model_does_not_support_chat", field, fmt.Sprintf("%s %q does not support chat", field, name))
			return false
		}
		abortParamError(c, http.StatusBadRequest, "unknown_model", field, fmt.Sprintf("%s %q is not a known logical model; GET /v1/models lists them", field, name))
		return false
	}
	return true
}

// validPreset accepts a JSON object or null as model_preset.
func validPreset(c *gin.Context, raw json.RawMessage) (models.JSON, bool) {
	trimmed := strings.TrimSpace(string(raw))
	if trimmed == "" || trimmed == "null" {
		return nil, true
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		abortParamError(c, http.StatusBadRequest, "invalid_field", "model_preset", `field "model_preset" must be a JSON object`)
		return nil, false
	}
	for _, reserved := range []string{"model", "messages", "stream", "stream_options"} {
		if _, ok := obj[reserved]; ok {
			abortParamError(c, http.StatusBadRequest, "invalid_field", "model_preset."+reserved, fmt.Sprintf("model_preset must not set %q", reserved))
			return nil, false
		}
	}
	return models.JSON(raw), true
}

func (s *Server) createAssistant(c *gin.Context) {
	var req assistantRequest
	if !decodeJSON(c, &req) {
		return
	}
	a := models.Assistant{UserID: currentUser(c).ID}
	if !s.validateAssistant(c, req, &a) {
		return
	}
	if err := s.Store.CreateAssistant(c, &a); err != nil {
		s.internalError(c, "create assistant failed", err)
		return
	}
	c.JSON(http.StatusCreated, viewAssistant(&a))
}

func (s *Server) listAssistants(c *gin.Context) {
	page, ok := pageParams(c)
	if !ok {
		return
	}
	items, next, err := s.Store.ListAssistants(c, currentUser(c).ID, page)
	if s.pageError(c, err) {
		return
	}
	views := make([]assistantView, len(items))
	for i := range items {
		views[i] = viewAssistant(&items[i])
	}
	c.JSON(http.StatusOK, gin.H{"items": views, "next_cursor": nullable(next)})
}

func (s *Server) getAssistant(c *gin.Context) {
	a, err := s.Store.Assistant(c, currentUser(c).ID, c.Param("id"))
	if s.lookupError(c, "assistant", err) {
		return
	}
	c.JSON(http.StatusOK, viewAssistant(a))
}

func (s *Server) updateAssistant(c *gin.Context) {
	a, err := s.Store.Assistant(c, currentUser(c).ID, c.Param("id"))
	if s.lookupError(c, "assistant", err) {
		return
	}
	var req assistantRequest
	if !decodeJSON(c, &req) {
		return
	}
	if !s.validateAssistant(c, req, a) {
		return
	}
	if err := s.Store.UpdateAssistant(c, a); s.lookupError(c, "assistant", err) {
		return
	}
	a, err = s.Store.Assistant(c, currentUser(c).ID, a.ID)
	if s.lookupError(c, "assistant", err) {
		return
	}
	c.JSON(http.StatusOK, viewAssistant(a))
}

func (s *Server) deleteAssistant(c *gin.Context) {
	user := currentUser(c)
	id := c.Param("id")
	if _, err := s.Store.Assistant(c, user.ID, id); s.lookupError(c, "assistant", err) {
		return
	}
	ids, err := s.Store.ActiveRunWorkflowIDsOfAssistant(c, id)
	if err != nil {
		s.internalError(c, "list active runs failed", err)
		return
	}
	s.cancelRuns(c, ids)
	if err := s.Store.DeleteAssistant(c, user.ID, id); s.lookupError(c, "assistant", err) {
		return
	}
	c.Status(http.StatusNoContent)
}

type conversationView struct {
	ID          string    `json:"id"`
	AssistantID string    `json:"assistant_id"`
	Title       string    `json:"title"`
	Archived    bool      `json:"archived"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

func viewConversation(conv *models.Conversation) conversationView {
	return conversationView{ID: conv.ID, AssistantID: conv.AssistantID, Title: conv.Title, Archived: conv.Archived, CreatedAt: conv.CreatedAt, UpdatedAt: conv.UpdatedAt}
}

func (s *Server) createConversation(c *gin.Context) {
	var req struct {
		AssistantID string `json:"assistant_id"`
		Title       string `json:"title"`
	}
	if !decodeJSON(c, &req) {
		return
	}
	if len([]rune(req.Title)) > maxNameChars {
		abortError(c, http.StatusBadRequest, "invalid_title", fmt.Sprintf("title must be at most %d characters", maxNameChars))
		return
	}
	if req.AssistantID == "" {
		abortError(c, http.StatusBadRequest, "invalid_request", "assistant_id is required")
		return
	}
	conv := models.Conversation{UserID: currentUser(c).ID, AssistantID: req.AssistantID, Title: strings.TrimSpace(req.Title)}
	if err := s.Store.CreateConversation(c, &conv); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			abortError(c, http.StatusNotFound, "assistant_not_found", "assistant "+req.AssistantID+" not found")
			return
		}
		s.internalError(c, "create conversation failed", err)
		return
	}
	c.JSON(http.StatusCreated, viewConversation(&conv))
}

func (s *Server) listConversations(c *gin.Context) {
	page, ok := pageParams(c)
	if !ok {
		return
	}
	filter := store.ConversationFilter{AssistantID: c.Query("assistant_id")}
	if filter.AssistantID != "" && uuid.Validate(filter.AssistantID) != nil {
		abortError(c, http.StatusBadRequest, "invalid_parameter", "assistant_id must be a UUID")
		return
	}
	if raw := c.Query("archived"); raw != "" {
		archived, err := strconv.ParseBool(raw)
		if err != nil {
			abortError(c, http.StatusBadRequest, "invalid_parameter", "archived must be true or false")
			return
		}
		filter.Archived = &archived
	}
	items, next, err := s.Store.ListConversations(c, currentUser(c).ID, filter, page)
	if s.pageError(c, err) {
		return
	}
	views := make([]conversationView, len(items))
	for i := range items {
		views[i] = viewConversation(&items[i])
	}
	c.JSON(http.StatusOK, gin.H{"items": views, "next_cursor": nullable(next)})
}

func (s *Server) getConversation(c *gin.Context) {
	conv, err := s.Store.Conversation(c, currentUser(c).ID, c.Param("id"))
	if s.lookupError(c, "conversation", err) {
		return
	}
	c.JSON(http.StatusOK, viewConversation(conv))
}

func (s *Server) updateConversation(c *gin.Context) {
	conv, err := s.Store.Conversation(c, currentUser(c).ID, c.Param("id"))
	if s.lookupError(c, "conversation", err) {
		return
	}
	var req struct {
		Title    *string `json:"title"`
		Archived *bool   `json:"archived"`
	}
	if !decodeJSON(c, &req) {
		return
	}
	if req.Title != nil {
		if len([]rune(*req.Title)) > maxNameChars {
			abortError(c, http.StatusBadRequest, "invalid_title", fmt.Sprintf("title must be at most %d characters", maxNameChars))
			return
		}
		conv.Title = strings.TrimSpace(*req.Title)
	}
	if req.Archived != nil {
		conv.Archived = *req.Archived
	}
	if err := s.Store.UpdateConversation(c, conv); errors.Is(err, store.ErrNotFound) {
		abortError(c, http.StatusNotFound, "conversation_not_found", "conversation "+conv.ID+" not found")
		return
	} else if err != nil {
		s.internalError(c, "update conversation failed", err)
		return
	}
	conv, err = s.Store.Conversation(c, conv.UserID, conv.ID)
	if s.lookupError(c, "conversation", err) {
		return
	}
	c.JSON(http.StatusOK, viewConversation(conv))
}

func (s *Server) deleteConversation(c *gin.Context) {
	user := currentUser(c)
	conv, err := s.Store.Conversation(c, user.ID, c.Param("id"))
	if s.lookupError(c, "conversation", err) {
		return
	}
	s.cancelConversationRuns(c, conv.ID)
	if err := s.Store.DeleteConversation(c, user.ID, conv.ID); s.lookupError(c, "conversation", err) {
		return
	}
	c.Status(http.StatusNoContent)
}

// cancelConversationRuns requests cancellation of the conversation's active
// runs before their rows are deleted.
func (s *Server) cancelConversationRuns(c *gin.Context, conversationID string) {
	ids, err := s.Store.ActiveRunWorkflowIDs(c, conversationID)
	if err != nil {
		s.Logger.Warn("list active runs failed", "conversation_id", conversationID, "error", err)
		return
	}
	s.cancelRuns(c, ids)
}

// cancelRuns requests cancellation of the workflows. Failures are only
// logged, because a workflow whose run row is gone ends on its own.
func (s *Server) cancelRuns(c *gin.Context, workflowIDs []string) {
	for _, id := range workflowIDs {
		if err := s.Temporal.CancelWorkflow(c, id, ""); err != nil {
			s.Logger.Warn("cancel run failed", "workflow_id", id, "error", err)
		}
	}
}

// modelView is one entry of GET /v1/models in OpenAI's model object shape,
// with the logical model's capabilities as an extra field.
type modelView struct {
	ID     string `json:"id"`
	Object string `json:"object"`
	// Created is 0, because logical models carry no creation time.
	Created      int64                  `json:"created"`
	OwnedBy      string                 `json:"owned_by"`
	Capabilities []providers.Capability `json:"capabilities"`
}

// listModels serves GET /v1/models: the logical models that the request's
// API key may use, or every model for a user's access token.
func (s *Server) listModels(c *gin.Context) {
	key := currentAPIKey(c)
	list := s.Catalog.Models()
	data := make([]modelView, 0, len(list))
	for _, m := range list {
		if key != nil && !key.AllowsModel(m.Name) {
			continue
		}
		data = append(data, modelView{ID: m.Name, Object: "model", OwnedBy: "aihigress", Capabilities: m.Capabilities})
	}
	c.JSON(http.StatusOK, gin.H{"object": "list", "data": data})
}

func pageParams(c *gin.Context) (store.Page, bool) {
	page := store.Page{Cursor: c.Query("cursor")}
	if raw := c.Query("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > 100 {
			abortError(c, http.StatusBadRequest, "invalid_parameter", "limit must be an integer from 1 to 100")
			return page, false
		}
		page.Limit = n
	}
	return page, true
}

func (s *Server) pageError(c *gin.Context, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, store.ErrBadCursor):
		abortError(c, http.StatusBadRequest, "invalid_cursor", "cursor is invalid; pass the next_cursor of a previous page")
	default:
		s.internalError(c, "list failed", err)
	}
	return true
}

// lookupError writes 404 for ErrNotFound (which also covers rows of other
// users) and 500 for anything else. It returns true when it wrote.
func (s *Server) lookupError(c *gin.Context, resource string, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, store.ErrNotFound):
		abortError(c, http.StatusNotFound, resource+"_not_found", resource+" not found")
	default:
		s.internalError(c, "load "+resource+" failed", err)
	}
	return true
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
