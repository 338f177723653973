package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"github.com/gin-gonic/gin"

	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/models"
)

// conversationImageFields are the fields that
// POST /v1/conversations/{id}/image-generations accepts.
var conversationImageFields = []string{"prompt", "model", "n", "size", "extra_body", "streaming"}

// postImageGeneration serves POST /v1/conversations/{id}/image-generations.
// It writes the prompt as a user message and a pending image_generation
// assistant message, then runs an ImageGenerationWorkflow and answers like
// a chat message: an SSE stream of the run's events with "streaming", or
// the finished messages. Links are always URLs, so that history never
// holds base64.
func (s *Server) postImageGeneration(c *gin.Context) {
	user := currentUser(c)
	conv, err := s.Store.Conversation(c, user.ID, c.Param("id"))
	if s.lookupError(c, "conversation", err) {
		return
	}

	fields, ok := readJSONObject(c)
	if !ok {
		return
	}
	for name := range fields {
		if !slices.Contains(conversationImageFields, name) {
			abortParamError(c, http.StatusBadRequest, "unknown_field", name,
				"unknown field "+name+"; this route accepts prompt, model, n, size, extra_body and streaming")
			return
		}
	}
	var model string
	var streaming bool
	if !decodeField(c, fields, "model", &model) || !decodeField(c, fields, "streaming", &streaming) {
		return
	}
	delete(fields, "model")
	delete(fields, "streaming")
	if model == "" {
		abortParamError(c, http.StatusBadRequest, "missing_field", "model", "model is required: a logical model with the image_generation capability")
		return
	}
	var params models.ImageParams
	var background bool
	if !s.checkImageParams(c, fields, &params, &background) {
		return
	}
	params.ResponseFormat = "url"
	if !s.checkImageModel(c, "model", model) {
		return
	}
	idempotencyKey, ok := readIdempotencyKey(c)
	if !ok {
		return
	}

	shown := map[string]any{"model": model, "n": params.N}
	if params.Size != "" {
		shown["size"] = params.Size
	}
	turn, err := s.Store.CreateTurn(c, store.NewTurn{
		UserID: user.ID, ConversationID: conv.ID, Content: params.Prompt, LogicalModel: model,
		IdempotencyKey: idempotencyKey, Kind: models.RunKindImage, RequestBody: models.MustJSON(params),
		AssistantContent: models.PendingImageContent(params.Prompt, json.RawMessage(models.MustJSON(shown))),
	})
	if errors.Is(err, store.ErrNotFound) {
		abortError(c, http.StatusNotFound, "conversation_not_found", "conversation "+conv.ID+" not found")
		return
	}
	if err != nil {
		s.internalError(c, "create image generation failed", err)
		return
	}
	if turn.Existing && (turn.Run.Kind != models.RunKindImage || turn.Run.ConversationID == nil || *turn.Run.ConversationID != conv.ID) {
		abortError(c, http.StatusConflict, "idempotency_key_reused", "Idempotency-Key was already used for another request; send a new key")
		return
	}
	if !s.startRun(c, &turn.Run, params.Prompt) {
		return
	}
	s.respondRun(c, turn, streaming || wantsEventStream(c), false)
}

// signedContent returns the content of m for a client. Image generation
// content gets fresh signed links, because stored content keeps object keys
// only.
func (s *Server) signedContent(c *gin.Context, m *models.Message) json.RawMessage {
	content, ok := m.ImageContent()
	if !ok || len(content.Images) == 0 {
		return json.RawMessage(m.Content)
	}
	for i := range content.Images {
		content.Images[i].URL = s.imageLink(c, content.Images[i].ObjectKey)
	}
	return json.RawMessage(models.MustJSON(content))
}
