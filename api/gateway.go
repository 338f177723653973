package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

// chatCompletionRequest is a parsed POST /v1/chat/completions body. Fields
// holds every top-level field, "background" excluded, so that unknown
// fields can be forwarded unchanged.
type chatCompletionRequest struct {
	Model      string
	Stream     bool
	Background bool
	Fields     map[string]json.RawMessage
}

// chatCompletions serves POST /v1/chat/completions. A background request
// becomes a chat run; any other request is proxied to an upstream at once.
func (s *Server) chatCompletions(c *gin.Context) {
	key := currentAPIKey(c)
	req, ok := s.readChatCompletion(c)
	if !ok {
		return
	}
	call := gatewayCallOf(c)
	call.logicalModel, call.stream = req.Model, req.Stream

	if !key.AllowsModel(req.Model) {
		abortParamError(c, http.StatusForbidden, "model_not_allowed", "model",
			fmt.Sprintf("this API key may not use model %q", req.Model))
		return
	}

	background, ok := backgroundRequested(c, req.Background)
	if !ok {
		return
	}
	if background {
		s.startBackgroundChat(c, key, req.Fields, req.Model)
		return
	}
	s.proxyChatCompletion(c, key, req)
}

// backgroundRequested reports whether a gateway request selects the
// background path: inBody, the request's "background" field, or the header
// X-Aihigress-Background set to 1 or true. The header may also be 0 or
// false. Any other header value gets a 400 and ok is false.
func backgroundRequested(c *gin.Context, inBody bool) (background, ok bool) {
	switch strings.ToLower(strings.TrimSpace(c.GetHeader("X-Aihigress-Background"))) {
	case "", "0", "false":
		return inBody, true
	case "1", "true":
		return true, true
	}
	abortError(c, http.StatusBadRequest, "invalid_header", "X-Aihigress-Background must be 1, true, 0 or false")
	return false, false
}

// readChatCompletion reads and checks the request body. On failure it
// writes a 4xx error and returns false.
func (s *Server) readChatCompletion(c *gin.Context) (chatCompletionRequest, bool) {
	var req chatCompletionRequest
	fields, ok := readJSONObject(c)
	if !ok {
		return req, false
	}
	req.Fields = fields

	if !decodeField(c, req.Fields, "model", &req.Model) || !decodeField(c, req.Fields, "stream", &req.Stream) ||
		!decodeField(c, req.Fields, "background", &req.Background) {
		return req, false
	}
	delete(req.Fields, "background")
	if strings.TrimSpace(req.Model) == "" {
		abortParamError(c, http.StatusBadRequest, "missing_field", "model", "model is required")
		return req, false
	}

	if !isNonEmptyArray(req.Fields["messages"]) {
		abortParamError(c, http.StatusBadRequest, "invalid_field", "messages", "messages must be a non-empty array of chat messages")
		return req, false
	}
	return req, true
}

// isNonEmptyArray reports whether raw, a valid JSON value, is an array with
// at least one element. Checking the bytes saves decoding the messages a
// second time on every request.
func isNonEmptyArray(raw json.RawMessage) bool {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) < 2 || trimmed[0] != '[' {
		return false
	}
	return bytes.TrimSpace(trimmed[1:])[0] != ']'
}

// decodeField decodes fields[name], when present and not null, into dst.
// On a type mismatch it writes a 400 error and returns false.
func decodeField(c *gin.Context, fields map[string]json.RawMessage, name string, dst any) bool {
	raw, ok := fields[name]
	if !ok || string(raw) == "null" {
		return true
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		abortParamError(c, http.StatusBadRequest, "invalid_field", name, fmt.Sprintf("field %q has the wrong type: %s", name, raw))
		return false
	}
	return true
}
