package integration

import (
	"net/http"
	"strings"
	"testing"

	"github.com/aihigress/aihigress/internal/apikeys"
)

// TestImageBadInputReturns4xx sends invalid image generations to both
// routes. Each must get a 4xx JSON error with a code and a message, and
// none may start a run. The api package checks every field rule without
// Temporal. This test checks them through the configured service, including
// the prompt limit from IMAGE_MAX_PROMPT_CHARS.
func TestImageBadInputReturns4xx(t *testing.T) {
	s := newStack(t, stackOptions{env: map[string]string{"IMAGE_MAX_PROMPT_CHARS": "40"}})
	alice := s.newUser()
	bob := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})
	restricted := s.newAPIKey(alice, apikeys.NewKey{AllowedModels: []string{"image-openai"}})
	convID := alice.conversation("mock-gpt")
	conversationPath := "/v1/conversations/" + convID + "/image-generations"

	// generation returns a valid request body with the given fields
	// replaced; a nil value removes the field.
	generation := func(changes map[string]any) map[string]any {
		body := map[string]any{"model": "image-openai", "prompt": "a small red boat"}
		for name, value := range changes {
			if value == nil {
				delete(body, name)
				continue
			}
			body[name] = value
		}
		return body
	}
	const gatewayPath = "/v1/images/generations"
	longPrompt := strings.Repeat("é", 41)

	tests := []badInputCase{
		{name: "n zero", as: key, path: gatewayPath, body: generation(map[string]any{"n": 0}), wantStatus: 400, wantCode: "invalid_n"},
		{name: "n eleven", as: key, path: gatewayPath, body: generation(map[string]any{"n": 11}), wantStatus: 400, wantCode: "invalid_n"},
		{name: "n fractional", as: key, path: gatewayPath, body: generation(map[string]any{"n": 1.5}), wantStatus: 400, wantCode: "invalid_n"},
		{name: "n string", as: key, path: gatewayPath, body: generation(map[string]any{"n": "2"}), wantStatus: 400, wantCode: "invalid_n"},
		{name: "size word", as: key, path: gatewayPath, body: generation(map[string]any{"size": "big"}), wantStatus: 400, wantCode: "invalid_size"},
		{name: "size one number", as: key, path: gatewayPath, body: generation(map[string]any{"size": "1024"}), wantStatus: 400, wantCode: "invalid_size"},
		{name: "size zero width", as: key, path: gatewayPath, body: generation(map[string]any{"size": "0x10"}), wantStatus: 400, wantCode: "invalid_size"},
		{name: "size too wide", as: key, path: gatewayPath, body: generation(map[string]any{"size": "99999x1"}), wantStatus: 400, wantCode: "invalid_size"},
		{name: "empty prompt", as: key, path: gatewayPath, body: generation(map[string]any{"prompt": ""}), wantStatus: 400, wantCode: "empty_prompt"},
		{name: "blank prompt", as: key, path: gatewayPath, body: generation(map[string]any{"prompt": " \n\t"}), wantStatus: 400, wantCode: "empty_prompt"},
		{name: "no prompt", as: key, path: gatewayPath, body: generation(map[string]any{"prompt": nil}), wantStatus: 400, wantCode: "empty_prompt"},
		{name: "prompt over the limit", as: key, path: gatewayPath, body: generation(map[string]any{"prompt": longPrompt}), wantStatus: 400, wantCode: "prompt_too_long"},
		{name: "chat-only model", as: key, path: gatewayPath, body: generation(map[string]any{"model": "mock-gpt"}), wantStatus: 400, wantCode: "model_does_not_support_images"},
		{name: "unknown response_format", as: key, path: gatewayPath, body: generation(map[string]any{"response_format": "png"}), wantStatus: 400, wantCode: "invalid_response_format"},
		{name: "output_compression over 100", as: key, path: gatewayPath, body: generation(map[string]any{"output_compression": 101}), wantStatus: 400, wantCode: "invalid_output_compression"},
		{name: "extra_body not an object", as: key, path: gatewayPath, body: generation(map[string]any{"extra_body": "openai"}), wantStatus: 400, wantCode: "invalid_field"},
		{name: "stream true", as: key, path: gatewayPath, body: generation(map[string]any{"stream": true}), wantStatus: 400, wantCode: "stream_not_supported"},
		{name: "no model", as: key, path: gatewayPath, body: generation(map[string]any{"model": nil}), wantStatus: 400, wantCode: "missing_field"},
		{name: "unknown model", as: key, path: gatewayPath, body: generation(map[string]any{"model": "no-such-model"}), wantStatus: 404, wantCode: "model_not_found"},
		{name: "model outside the key's list", as: restricted, path: gatewayPath, body: generation(map[string]any{"model": "image-gemini"}), wantStatus: 403, wantCode: "model_not_allowed"},
		{name: "access token on the gateway", as: alice, path: gatewayPath, body: generation(nil), wantStatus: 401, wantCode: "missing_api_key"},

		{name: "conversation unknown field", as: alice, path: conversationPath, body: generation(map[string]any{"response_format": "b64_json"}), wantStatus: 400, wantCode: "unknown_field"},
		{name: "conversation background", as: alice, path: conversationPath, body: generation(map[string]any{"background": true}), wantStatus: 400, wantCode: "unknown_field"},
		{name: "conversation n eleven", as: alice, path: conversationPath, body: generation(map[string]any{"n": 11}), wantStatus: 400, wantCode: "invalid_n"},
		{name: "conversation bad size", as: alice, path: conversationPath, body: generation(map[string]any{"size": "big"}), wantStatus: 400, wantCode: "invalid_size"},
		{name: "conversation empty prompt", as: alice, path: conversationPath, body: generation(map[string]any{"prompt": ""}), wantStatus: 400, wantCode: "empty_prompt"},
		{name: "conversation prompt over the limit", as: alice, path: conversationPath, body: generation(map[string]any{"prompt": longPrompt}), wantStatus: 400, wantCode: "prompt_too_long"},
		{name: "conversation no model", as: alice, path: conversationPath, body: generation(map[string]any{"model": nil}), wantStatus: 400, wantCode: "missing_field"},
		{name: "conversation chat-only model", as: alice, path: conversationPath, body: generation(map[string]any{"model": "mock-gpt"}), wantStatus: 400, wantCode: "model_does_not_support_images"},
		{name: "conversation unknown model", as: alice, path: conversationPath, body: generation(map[string]any{"model": "no-such-model"}), wantStatus: 404, wantCode: "model_not_found"},
		{name: "conversation extra_body array", as: alice, path: conversationPath, body: generation(map[string]any{"extra_body": []any{}}), wantStatus: 400, wantCode: "invalid_field"},
		{name: "conversation generationConfig array", as: alice, path: conversationPath,
			body: generation(map[string]any{"extra_body": map[string]any{"google": map[string]any{"generationConfig": []int{1}}}}), wantStatus: 400, wantCode: "invalid_field"},
		{name: "conversation not JSON", as: alice, path: conversationPath, body: `{"prompt":`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "other user's conversation", as: bob, path: conversationPath, body: generation(nil), wantStatus: 404, wantCode: "conversation_not_found"},
		{name: "API key on the conversation", as: key, path: conversationPath, body: generation(nil), wantStatus: 401, wantCode: "access_token_required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, header, raw := exchange(t, tt.as, http.MethodPost, tt.path, tt.body, tt.header)
			checkError(t, status, header, raw, tt.wantStatus, tt.wantCode)
		})
	}

	if runs := s.imageRuns(alice); len(runs) != 0 {
		t.Errorf("rejected requests started %d image runs, want 0", len(runs))
	}
	if got := s.mock.Stats().Images; got != 0 {
		t.Errorf("rejected requests reached the upstream %d times, want 0", got)
	}
	if history := listImageHistory(t, alice, convID); len(history) != 0 {
		t.Errorf("rejected requests left %d messages in the conversation, want 0", len(history))
	}
}
