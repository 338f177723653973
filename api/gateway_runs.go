package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/aihigress/aihigress/internal/apikeys"
	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/models"
)

// backgroundRunObject is the "object" of the 202 response to a background
// chat completion.
const backgroundRunObject = "chat.completion.run"

// startBackgroundChat starts a gateway chat completion as a ChatRunWorkflow
// and responds 202 with the run id. body is the client's request with
// "background" removed; logicalModel is its "model".
//
// The stored request drops "stream" as well: the run always streams from
// the upstream into run events, and the client reads them from
// /v1/runs/{id}/events or fetches the final object from /v1/runs/{id}/result.
func (s *Server) startBackgroundChat(c *gin.Context, key *apikeys.Principal, body map[string]json.RawMessage, logicalModel string) {
	if key == nil {
		abortError(c, http.StatusUnauthorized, "missing_api_key", "background chat completions need an API key")
		return
	}
	if !s.checkGatewayChatModel(c, logicalModel) || !checkBackgroundFields(c, body) {
		return
	}
	idempotencyKey, ok := readIdempotencyKey(c)
	if !ok {
		return
	}

	fields := maps.Clone(body)
	delete(fields, "stream")
	delete(fields, "background")
	requestBody := models.MustJSON(fields)

	run, existing, err := s.Store.CreateGatewayRun(c, store.NewGatewayRun{
		UserID: key.UserID, APIKeyID: key.KeyID, LogicalModel: logicalModel,
		RequestBody: requestBody, IdempotencyKey: idempotencyKey,
	})
	if err != nil {
		s.internalError(c, "create background run failed", err)
		return
	}
	if existing && !sameGatewayRequest(run, key.KeyID, logicalModel, requestBody) {
		abortError(c, http.StatusConflict, "idempotency_key_reused",
			"Idempotency-Key was already used for a different request with this API key; send a new key")
		return
	}

	// A replayed request whose run has ended needs no workflow start, and a
	// run that failed to start must not be revived by a retry.
	if !existing || !models.IsTerminalRunStatus(run.Status) {
		if !s.startRun(c, run, lastUserText(fields["messages"])) {
			return
		}
	}
	s.Logger.Info("background chat completion accepted", "run_id", run.ID, "workflow_id", run.WorkflowID,
		"user_id", run.UserID, "api_key_id", key.KeyID, "model", logicalModel, "replayed", existing)

	// observeGateway logs this request with status 202.
	// TODO: the run's upstream attempts and tokens reach the run row, not
	// the request log.
	c.Header("Location", "/v1/runs/"+run.ID)
	c.JSON(http.StatusAccepted, gin.H{
		"id":     run.ID,
		"run_id": run.ID,
		"object": backgroundRunObject,
		"status": run.Status,
		"model":  run.RequestedLogicalModel,
	})
}

// checkGatewayChatModel writes a 404 when the logical model does not exist
// and a 400 when it cannot chat.
func (s *Server) checkGatewayChatModel(c *gin.Context, name string) bool {
	_, err := s.Catalog.Candidates(name, providers.CapabilityChat)
	switch {
	case err == nil:
		return true
	case errors.Is(err, providers.ErrCapability):
		abortParamError(c, http.StatusBadRequest, "model_does_not_support_chat", "model",
			fmt.Sprintf("model %q does not support chat completions", name))
	default:
		abortParamError(c, http.StatusNotFound, "model_not_found", "model",
			fmt.Sprintf("model %q does not exist; GET /v1/models lists the available models", name))
	}
	return false
}

// checkBackgroundFields checks what a run needs beyond the checks shared
// with the synchronous path: every message is an object with a role, and at
// most one choice is requested, because a run keeps only the first choice.
// A bad request fails here with a 400 instead of later as a failed run.
func checkBackgroundFields(c *gin.Context, body map[string]json.RawMessage) bool {
	var messages []json.RawMessage
	if err := json.Unmarshal(body["messages"], &messages); err != nil {
		abortParamError(c, http.StatusBadRequest, "invalid_field", "messages", "messages must be a non-empty array of chat messages")
		return false
	}
	for i, raw := range messages {
		var message struct {
			Role json.RawMessage `json:"role"`
		}
		var role string
		trimmed := bytes.TrimSpace(raw)
		if len(trimmed) == 0 || trimmed[0] != '{' || json.Unmarshal(trimmed, &message) != nil ||
			json.Unmarshal(message.Role, &role) != nil || strings.TrimSpace(role) == "" {
			param := fmt.Sprintf("messages[%d]", i)
			abortParamError(c, http.StatusBadRequest, "invalid_field", param, param+" must be an object with a non-empty string role")
			return false
		}
	}

	if raw, ok := body["n"]; ok && string(raw) != "null" {
		var n int
		if err := json.Unmarshal(raw, &n); err != nil || n != 1 {
			abortParamError(c, http.StatusBadRequest, "invalid_field", "n",
				fmt.Sprintf("background chat completions return one choice, so n must be 1 or absent, got %s", raw))
			return false
		}
	}
	return true
}

// readIdempotencyKey returns the Idempotency-Key header, which may be empty.
func readIdempotencyKey(c *gin.Context) (string, bool) {
	key := c.GetHeader("Idempotency-Key")
	if len(key) > maxIdempotencyKey || !utf8.ValidString(key) {
		abortError(c, http.StatusBadRequest, "invalid_idempotency_key", fmt.Sprintf("Idempotency-Key must be valid UTF-8 of at most %d bytes", maxIdempotencyKey))
		return "", false
	}
	return key, true
}

// sameGatewayRequest reports whether an earlier run that used the same
// Idempotency-Key came from the same API key with the same request. The
// documents are compared decoded, because PostgreSQL's JSONB reorders keys
// and drops whitespace.
func sameGatewayRequest(run *models.ChatRun, apiKeyID, logicalModel string, requestBody models.JSON) bool {
	if run.ConversationID != nil || run.APIKeyID == nil || *run.APIKeyID != apiKeyID || run.RequestedLogicalModel != logicalModel {
		return false
	}
	var stored, sent any
	if json.Unmarshal(run.RequestBody, &stored) != nil || json.Unmarshal(requestBody, &sent) != nil {
		return false
	}
	return reflect.DeepEqual(stored, sent)
}

// lastUserText returns the text of the last user message, for the
// workflow's summary. It returns "" when messages has no such text.
func lastUserText(messages json.RawMessage) string {
	var list []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	}
	if json.Unmarshal(messages, &list) != nil {
		return ""
	}
	for i := len(list) - 1; i >= 0; i-- {
		if list[i].Role != "user" {
			continue
		}
		var text string
		if json.Unmarshal(list[i].Content, &text) == nil {
			return text
		}
		var parts []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}
		if json.Unmarshal(list[i].Content, &parts) == nil {
			texts := make([]string, 0, len(parts))
			for _, part := range parts {
				if part.Type == "text" {
					texts = append(texts, part.Text)
				}
			}
			return strings.Join(texts, " ")
		}
		return ""
	}
	return ""
}
