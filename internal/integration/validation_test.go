package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/aihigress/aihigress/internal/testenv"
)

// errorResponse is the documented body of every error response.
type errorResponse struct {
	Error *struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Code    string  `json:"code"`
		Param   *string `json:"param"`
	} `json:"error"`
}

// exchange sends a request as c, reporting failures to t, and returns the
// status, the response header and the body.
func exchange(t *testing.T, c *client, method, path string, body any, header http.Header) (int, http.Header, []byte) {
	t.Helper()
	bound := *c
	bound.t = t
	resp := bound.request(method, path, body, header)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, raw
}

// checkError fails t unless the response has wantStatus and a JSON body of
// OpenAI's form {"error":{"message","type","code","param"}} with wantCode,
// a message and a type.
func checkError(t *testing.T, status int, header http.Header, raw []byte, wantStatus int, wantCode string) {
	t.Helper()
	if status != wantStatus {
		t.Errorf("status = %d, want %d; body: %.300s", status, wantStatus, raw)
	}
	if ct := header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var body errorResponse
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		t.Errorf("body does not match {\"error\":{\"message\",\"type\",\"code\",\"param\"}}: %v; body: %.300s", err, raw)
		return
	}
	if body.Error == nil {
		t.Errorf("body has no \"error\" object: %.300s", raw)
		return
	}
	if body.Error.Code != wantCode {
		t.Errorf("error code = %q, want %q; message: %s", body.Error.Code, wantCode, body.Error.Message)
	}
	if strings.TrimSpace(body.Error.Message) == "" {
		t.Errorf("error message is empty; body: %s", raw)
	}
	if body.Error.Type == "" {
		t.Errorf("error type is empty; body: %s", raw)
	}
}

func registration(username, email, password string) map[string]any {
	return map[string]any{"username": username, "email": email, "password": password}
}

type badInputCase struct {
	name       string
	as         *client
	method     string
	path       string
	body       any
	header     http.Header
	wantStatus int
	wantCode   string
	// wantParam, when set, is the error's param: the request field at
	// fault.
	wantParam string
}

func TestBadInputReturns4xx(t *testing.T) {
	s := newStack(t, stackOptions{maxContent: 50})
	alice := s.newUser()
	bob := s.newUser()
	anonymous := &client{t: t, baseURL: s.baseURL}

	var assistant, conv struct {
		ID string `json:"id"`
	}
	alice.mustDo("POST", "/v1/assistants", map[string]any{"name": "Validator", "system_prompt": "Be brief.", "default_logical_model": "mock-gpt"}, 201, &assistant)
	alice.mustDo("POST", "/v1/conversations", map[string]any{"assistant_id": assistant.ID}, 201, &conv)
	messages := "/v1/conversations/" + conv.ID + "/messages"
	var turn turnResponse
	alice.mustDo("POST", messages, map[string]any{"content": "hello"}, 200, &turn)
	runPath := "/v1/runs/" + turn.Run.RunID
	bobConv := bob.conversation("mock-gpt")

	// A registered user whose name and email later registrations reuse, and
	// whose refresh token must not pass as an access token.
	takenName := "taken_" + testenv.Suffix()
	anonymous.mustDo("POST", "/auth/register", registration(takenName, takenName+"@example.com", "password123"), 201, nil)
	var tokens struct {
		RefreshToken string `json:"refresh_token"`
	}
	anonymous.mustDo("POST", "/auth/login", map[string]any{"username": takenName, "password": "password123"}, 200, &tokens)
	refreshAsAccess := &client{t: t, baseURL: s.baseURL, token: tokens.RefreshToken}
	garbageToken := &client{t: t, baseURL: s.baseURL, token: "not-a-jwt"}

	unknownID := uuid.NewString()
	oversized := []byte(`{"content":"` + strings.Repeat("a", 1<<20) + `"}`)
	newAssistant := func(fields map[string]any) map[string]any {
		body := map[string]any{"name": "New", "default_logical_model": "mock-gpt"}
		for k, v := range fields {
			body[k] = v
		}
		return body
	}

	cases := []badInputCase{
		// Request bodies.
		{name: "json malformed", body: `{"content": hi}`, wantCode: "invalid_json"},
		{name: "json truncated", body: `{"content": "hi"`, wantCode: "invalid_json"},
		{name: "json empty", body: "", wantCode: "invalid_json"},
		{name: "json array", body: `[{"content": "hi"}]`, wantCode: "invalid_json"},
		{name: "json trailing object", body: `{"content": "hi"} {}`, wantCode: "invalid_json"},
		{name: "field unknown", body: map[string]any{"content": "hi", "temperature": 1}, wantCode: "unknown_field", wantParam: "temperature"},
		{name: "content number", body: map[string]any{"content": 123}, wantCode: "invalid_field", wantParam: "content"},
		{name: "streaming string", body: map[string]any{"content": "hi", "streaming": "yes"}, wantCode: "invalid_field"},
		{name: "background number", body: map[string]any{"content": "hi", "background": 1}, wantCode: "invalid_field"},
		{name: "content empty", body: map[string]any{"content": ""}, wantCode: "empty_content", wantParam: "content"},
		{name: "content whitespace", body: map[string]any{"content": " \n\t "}, wantCode: "empty_content"},
		{name: "content missing", body: map[string]any{}, wantCode: "empty_content"},
		{name: "content null", body: map[string]any{"content": nil}, wantCode: "empty_content"},
		{name: "content over limit", body: map[string]any{"content": strings.Repeat("a", 51)}, wantCode: "content_too_long", wantParam: "content"},
		{name: "content over limit multibyte", body: map[string]any{"content": strings.Repeat("é", 51)}, wantCode: "content_too_long"},
		{name: "content NUL", body: map[string]any{"content": "nul \u0000 byte"}, wantCode: "invalid_field"},
		{name: "override model unknown", body: map[string]any{"content": "hi", "override_logical_model": "no-such-model"}, wantCode: "unknown_model", wantParam: "override_logical_model"},
		{name: "message preset string", body: map[string]any{"content": "hi", "model_preset": "hot"}, wantCode: "invalid_field", wantParam: "model_preset"},
		{name: "message preset sets model", body: map[string]any{"content": "hi", "model_preset": map[string]any{"model": "gpt-4o"}}, wantCode: "invalid_field", wantParam: "model_preset.model"},
		{name: "message preset sets stream", body: map[string]any{"content": "hi", "model_preset": map[string]any{"stream": false}}, wantCode: "invalid_field"},
		{name: "idempotency key too long", body: map[string]any{"content": "hi"}, header: http.Header{"Idempotency-Key": {strings.Repeat("k", 256)}}, wantCode: "invalid_idempotency_key"},
		{name: "idempotency key not UTF-8", body: map[string]any{"content": "hi"}, header: http.Header{"Idempotency-Key": {"key-\xff\xfe"}}, wantCode: "invalid_idempotency_key"},
		{name: "body over 1 MiB", body: oversized, wantStatus: http.StatusRequestEntityTooLarge, wantCode: "body_too_large"},

		// Assistants.
		{name: "assistant model unknown", method: "POST", path: "/v1/assistants", body: newAssistant(map[string]any{"default_logical_model": "no-such-model"}), wantCode: "unknown_model", wantParam: "default_logical_model"},
		{name: "assistant model missing", method: "POST", path: "/v1/assistants", body: map[string]any{"name": "New"}, wantCode: "invalid_model", wantParam: "default_logical_model"},
		{name: "assistant name empty", method: "POST", path: "/v1/assistants", body: newAssistant(map[string]any{"name": "  "}), wantCode: "invalid_name"},
		{name: "assistant name over 200", method: "POST", path: "/v1/assistants", body: newAssistant(map[string]any{"name": strings.Repeat("n", 201)}), wantCode: "invalid_name"},
		{name: "assistant name number", method: "POST", path: "/v1/assistants", body: newAssistant(map[string]any{"name": 7}), wantCode: "invalid_field"},
		{name: "assistant name NUL", method: "POST", path: "/v1/assistants", body: newAssistant(map[string]any{"name": "a\u0000b"}), wantCode: "invalid_field"},
		{name: "assistant prompt over limit", method: "POST", path: "/v1/assistants", body: newAssistant(map[string]any{"system_prompt": strings.Repeat("p", 51)}), wantCode: "system_prompt_too_long"},
		{name: "assistant preset array", method: "POST", path: "/v1/assistants", body: newAssistant(map[string]any{"model_preset": []int{1}}), wantCode: "invalid_field"},
		{name: "assistant preset string", method: "POST", path: "/v1/assistants", body: newAssistant(map[string]any{"model_preset": "hot"}), wantCode: "invalid_field"},
		{name: "assistant preset sets model", method: "POST", path: "/v1/assistants", body: newAssistant(map[string]any{"model_preset": map[string]any{"model": "gpt-4o"}}), wantCode: "invalid_field"},
		{name: "assistant preset NUL", method: "POST", path: "/v1/assistants", body: newAssistant(map[string]any{"model_preset": map[string]any{"stop": "\u0000"}}), wantCode: "invalid_field"},
		{name: "assistant update model unknown", method: "PUT", path: "/v1/assistants/" + assistant.ID, body: newAssistant(map[string]any{"default_logical_model": "no-such-model"}), wantCode: "unknown_model"},
		{name: "assistant id not UUID", method: "GET", path: "/v1/assistants/abc", wantStatus: 404, wantCode: "assistant_not_found"},
		{name: "assistant id unknown", method: "GET", path: "/v1/assistants/" + unknownID, wantStatus: 404, wantCode: "assistant_not_found"},

		// Conversations.
		{name: "conversation assistant missing", method: "POST", path: "/v1/conversations", body: map[string]any{"title": "x"}, wantCode: "invalid_request"},
		{name: "conversation assistant unknown", method: "POST", path: "/v1/conversations", body: map[string]any{"assistant_id": unknownID}, wantStatus: 404, wantCode: "assistant_not_found"},
		{name: "conversation assistant not UUID", method: "POST", path: "/v1/conversations", body: map[string]any{"assistant_id": "abc"}, wantStatus: 404, wantCode: "assistant_not_found"},
		{name: "conversation title over 200", method: "POST", path: "/v1/conversations", body: map[string]any{"assistant_id": assistant.ID, "title": strings.Repeat("t", 201)}, wantCode: "invalid_title"},
		{name: "conversation archived string", method: "PUT", path: "/v1/conversations/" + conv.ID, body: map[string]any{"archived": "x"}, wantCode: "invalid_field"},
		{name: "conversation title number", method: "PUT", path: "/v1/conversations/" + conv.ID, body: map[string]any{"title": 5}, wantCode: "invalid_field"},
		{name: "conversation title NUL", method: "PUT", path: "/v1/conversations/" + conv.ID, body: map[string]any{"title": "t\u0000"}, wantCode: "invalid_field"},
		{name: "conversation id not UUID", method: "GET", path: "/v1/conversations/not-a-uuid", wantStatus: 404, wantCode: "conversation_not_found"},
		{name: "conversation id unknown", method: "GET", path: "/v1/conversations/" + unknownID, wantStatus: 404, wantCode: "conversation_not_found"},
		{name: "message to unknown conversation", method: "POST", path: "/v1/conversations/" + unknownID + "/messages", body: map[string]any{"content": "hi"}, wantStatus: 404, wantCode: "conversation_not_found"},
		{name: "message to other user", method: "POST", path: "/v1/conversations/" + bobConv + "/messages", body: map[string]any{"content": "hi"}, wantStatus: 404, wantCode: "conversation_not_found"},
		{name: "conversations archived maybe", method: "GET", path: "/v1/conversations?archived=maybe", wantCode: "invalid_parameter"},
		{name: "conversations assistant_id not UUID", method: "GET", path: "/v1/conversations?assistant_id=abc", wantCode: "invalid_parameter"},

		// Runs and regeneration.
		{name: "run unknown", method: "GET", path: "/v1/runs/" + unknownID, wantStatus: 404, wantCode: "run_not_found"},
		{name: "run id not UUID", method: "GET", path: "/v1/runs/abc", wantStatus: 404, wantCode: "run_not_found"},
		{name: "run cancel unknown", method: "POST", path: "/v1/runs/" + unknownID + "/cancel", wantStatus: 404, wantCode: "run_not_found"},
		{name: "run events unknown", method: "GET", path: "/v1/runs/" + unknownID + "/events", wantStatus: 404, wantCode: "run_not_found"},
		{name: "Last-Event-ID text", method: "GET", path: runPath + "/events", header: http.Header{"Last-Event-ID": {"abc"}}, wantCode: "invalid_cursor"},
		{name: "Last-Event-ID negative", method: "GET", path: runPath + "/events", header: http.Header{"Last-Event-ID": {"-1"}}, wantCode: "invalid_cursor"},
		{name: "regenerate unknown", method: "POST", path: "/v1/messages/" + unknownID + "/regenerate", wantStatus: 404, wantCode: "message_not_found"},
		{name: "regenerate user message", method: "POST", path: "/v1/messages/" + turn.UserMessageID + "/regenerate", wantStatus: 404, wantCode: "message_not_found"},
		{name: "regenerate field unknown", method: "POST", path: "/v1/messages/" + turn.AssistantMessageID + "/regenerate", body: map[string]any{"model": "mock-gpt"}, wantCode: "unknown_field"},
		{name: "regenerate background string", method: "POST", path: "/v1/messages/" + turn.AssistantMessageID + "/regenerate", body: map[string]any{"background": "yes"}, wantCode: "invalid_field"},

		// Authentication and routing.
		{name: "authorization missing", as: anonymous, method: "GET", path: "/v1/assistants", wantStatus: 401, wantCode: "missing_token"},
		{name: "authorization basic", as: anonymous, method: "GET", path: "/v1/assistants", header: http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}, wantStatus: 401, wantCode: "missing_token"},
		{name: "bearer garbage", as: garbageToken, method: "GET", path: "/v1/assistants", wantStatus: 401, wantCode: "invalid_token"},
		{name: "bearer refresh token", as: refreshAsAccess, method: "GET", path: "/v1/assistants", wantStatus: 401, wantCode: "wrong_token_type"},
		{name: "register password short", as: anonymous, method: "POST", path: "/auth/register", body: registration("shortpw_"+testenv.Suffix(), "shortpw@example.com", "1234567"), wantCode: "invalid_password"},
		{name: "register password over 72", as: anonymous, method: "POST", path: "/auth/register", body: registration("longpw_"+testenv.Suffix(), "longpw@example.com", strings.Repeat("p", 73)), wantCode: "invalid_password"},
		{name: "register email invalid", as: anonymous, method: "POST", path: "/auth/register", body: registration("bademail_"+testenv.Suffix(), "not-an-email", "password123"), wantCode: "invalid_email"},
		{name: "register email with name", as: anonymous, method: "POST", path: "/auth/register", body: registration("named_"+testenv.Suffix(), "Named <named@example.com>", "password123"), wantCode: "invalid_email"},
		{name: "register username space", as: anonymous, method: "POST", path: "/auth/register", body: registration("bad name", "badname@example.com", "password123"), wantCode: "invalid_username"},
		{name: "register username short", as: anonymous, method: "POST", path: "/auth/register", body: registration("ab", "ab@example.com", "password123"), wantCode: "invalid_username"},
		{name: "register username taken", as: anonymous, method: "POST", path: "/auth/register", body: registration(takenName, "other_"+takenName+"@example.com", "password123"), wantStatus: 409, wantCode: "user_exists"},
		{name: "register username taken uppercase", as: anonymous, method: "POST", path: "/auth/register", body: registration(strings.ToUpper(takenName), "upper_"+takenName+"@example.com", "password123"), wantStatus: 409, wantCode: "user_exists"},
		{name: "register email taken uppercase", as: anonymous, method: "POST", path: "/auth/register", body: registration("other_"+takenName, strings.ToUpper(takenName)+"@EXAMPLE.COM", "password123"), wantStatus: 409, wantCode: "user_exists"},
		{name: "login password wrong", as: anonymous, method: "POST", path: "/auth/login", body: map[string]any{"username": takenName, "password": "password124"}, wantStatus: 401, wantCode: "invalid_credentials"},
		{name: "login user unknown", as: anonymous, method: "POST", path: "/auth/login", body: map[string]any{"username": "nobody_" + testenv.Suffix(), "password": "password123"}, wantStatus: 401, wantCode: "invalid_credentials"},
		{name: "login password missing", as: anonymous, method: "POST", path: "/auth/login", body: map[string]any{"username": takenName}, wantCode: "invalid_request"},
		{name: "login username NUL", as: anonymous, method: "POST", path: "/auth/login", body: map[string]any{"username": "nul\u0000user", "password": "password123"}, wantCode: "invalid_field"},
		{name: "route unknown", method: "GET", path: "/v1/nothing-here", wantStatus: 404, wantCode: "not_found"},
		{name: "route unknown anonymous", as: anonymous, method: "GET", path: "/nothing-here", wantStatus: 404, wantCode: "not_found"},
		{name: "media without a key", as: anonymous, method: "GET", path: "/media/images", wantStatus: 404, wantCode: "not_found"},
		{name: "route with a trailing slash", method: "GET", path: "/v1/assistants/", wantStatus: 404, wantCode: "not_found"},
		{name: "method not allowed", method: "PATCH", path: "/v1/assistants", body: map[string]any{}, wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "method not allowed on login", as: anonymous, method: "GET", path: "/auth/login", wantStatus: 405, wantCode: "method_not_allowed"},
	}

	// Every list rejects bad limits and cursors that it did not issue.
	lists := []struct{ name, path string }{
		{"assistants", "/v1/assistants"},
		{"conversations", "/v1/conversations"},
		{"messages", messages},
	}
	for _, list := range lists {
		for _, limit := range []string{"0", "101", "-1", "x", "1.5"} {
			cases = append(cases, badInputCase{name: list.name + " limit=" + limit, method: "GET", path: list.path + "?limit=" + limit, wantCode: "invalid_parameter"})
		}
		for _, cursor := range []string{"abc", "-1"} {
			cases = append(cases, badInputCase{name: list.name + " cursor=" + cursor, method: "GET", path: list.path + "?cursor=" + cursor, wantCode: "invalid_cursor"})
		}
	}
	cases = append(cases, badInputCase{name: "messages cursor=1.5", method: "GET", path: messages + "?cursor=1.5", wantCode: "invalid_cursor"})
	for _, after := range []string{"-1", "abc", "1.5"} {
		cases = append(cases, badInputCase{name: "events after_seq=" + after, method: "GET", path: runPath + "/events?after_seq=" + after, wantCode: "invalid_cursor"})
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			as, method, path := tc.as, tc.method, tc.path
			if as == nil {
				as = alice
			}
			if method == "" {
				method, path = "POST", messages
			}
			wantStatus := tc.wantStatus
			if wantStatus == 0 {
				wantStatus = http.StatusBadRequest
			}
			status, header, raw := exchange(t, as, method, path, tc.body, tc.header)
			checkError(t, status, header, raw, wantStatus, tc.wantCode)
			if tc.wantParam != "" {
				var body struct {
					Error struct {
						Param *string `json:"param"`
					} `json:"error"`
				}
				if err := json.Unmarshal(raw, &body); err != nil || body.Error.Param == nil || *body.Error.Param != tc.wantParam {
					t.Errorf("error param in %s, want %q", raw, tc.wantParam)
				}
			}
		})
	}

	// None of the rejected posts may have added a message, and 50 two-byte
	// characters are still within the limit of 50 characters.
	var history struct {
		Items []json.RawMessage `json:"items"`
	}
	alice.mustDo("GET", messages, nil, 200, &history)
	if len(history.Items) != 2 {
		t.Errorf("conversation has %d messages after the rejected posts, want 2", len(history.Items))
	}
	alice.mustDo("POST", messages, map[string]any{"content": strings.Repeat("é", 50)}, 200, nil)
}

// TestOwnershipIsolation checks that another user gets 404, and none of the
// owner's data, from every route that takes the owner's IDs.
func TestOwnershipIsolation(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	bob := s.newUser()

	var me struct {
		ID string `json:"id"`
	}
	alice.mustDo("GET", "/auth/me", nil, 200, &me)
	const (
		assistantName = "Alice private assistant"
		systemPrompt  = "Alice private system prompt."
		title         = "Alice private title"
		question      = "alice secret question"
	)
	var assistant, conv struct {
		ID string `json:"id"`
	}
	alice.mustDo("POST", "/v1/assistants", map[string]any{"name": assistantName, "system_prompt": systemPrompt, "default_logical_model": "mock-gpt"}, 201, &assistant)
	alice.mustDo("POST", "/v1/conversations", map[string]any{"assistant_id": assistant.ID, "title": title}, 201, &conv)
	messages := "/v1/conversations/" + conv.ID + "/messages"
	var turn turnResponse
	alice.mustDo("POST", messages, map[string]any{"content": question, "override_logical_model": "mock-gpt"}, 200, &turn)
	if turn.Run.Status != "succeeded" || turn.Run.OutputText == "" {
		t.Fatalf("alice's run = status %s, output %q; want succeeded with output", turn.Run.Status, turn.Run.OutputText)
	}
	runID := turn.Run.RunID

	secrets := []string{assistantName, systemPrompt, title, question, turn.Run.OutputText}
	aliceIDs := []string{me.ID, assistant.ID, conv.ID, turn.UserMessageID, turn.AssistantMessageID, runID}

	tests := []struct {
		name     string
		method   string
		path     string
		body     any
		targetID string
		wantCode string
	}{
		{"get assistant", "GET", "/v1/assistants/" + assistant.ID, nil, assistant.ID, "assistant_not_found"},
		{"update assistant", "PUT", "/v1/assistants/" + assistant.ID, map[string]any{"name": "Stolen", "default_logical_model": "mock-gpt"}, assistant.ID, "assistant_not_found"},
		{"delete assistant", "DELETE", "/v1/assistants/" + assistant.ID, nil, assistant.ID, "assistant_not_found"},
		{"get conversation", "GET", "/v1/conversations/" + conv.ID, nil, conv.ID, "conversation_not_found"},
		{"update conversation", "PUT", "/v1/conversations/" + conv.ID, map[string]any{"title": "Stolen", "archived": true}, conv.ID, "conversation_not_found"},
		{"delete conversation", "DELETE", "/v1/conversations/" + conv.ID, nil, conv.ID, "conversation_not_found"},
		{"post message", "POST", messages, map[string]any{"content": "from bob"}, conv.ID, "conversation_not_found"},
		{"list messages", "GET", messages, nil, conv.ID, "conversation_not_found"},
		{"clear messages", "DELETE", messages, nil, conv.ID, "conversation_not_found"},
		{"regenerate", "POST", "/v1/messages/" + turn.AssistantMessageID + "/regenerate", nil, turn.AssistantMessageID, "message_not_found"},
		{"regenerate background", "POST", "/v1/messages/" + turn.AssistantMessageID + "/regenerate", map[string]any{"background": true}, turn.AssistantMessageID, "message_not_found"},
		{"get run", "GET", "/v1/runs/" + runID, nil, runID, "run_not_found"},
		{"cancel run", "POST", "/v1/runs/" + runID + "/cancel", nil, runID, "run_not_found"},
		{"run events", "GET", "/v1/runs/" + runID + "/events", nil, runID, "run_not_found"},
		{"run events after_seq", "GET", "/v1/runs/" + runID + "/events?after_seq=0", nil, runID, "run_not_found"},
		{"create conversation", "POST", "/v1/conversations", map[string]any{"assistant_id": assistant.ID}, assistant.ID, "assistant_not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, header, raw := exchange(t, bob, tt.method, tt.path, tt.body, nil)
			checkError(t, status, header, raw, http.StatusNotFound, tt.wantCode)
			for _, secret := range secrets {
				if bytes.Contains(raw, []byte(secret)) {
					t.Errorf("response leaks alice's text %q: %s", secret, raw)
				}
			}
			for _, id := range aliceIDs {
				if id != tt.targetID && bytes.Contains(raw, []byte(id)) {
					t.Errorf("response leaks alice's ID %s: %s", id, raw)
				}
			}
		})
	}

	// Bob's own lists are empty, even when filtered by alice's assistant.
	for _, path := range []string{"/v1/assistants", "/v1/conversations", "/v1/conversations?assistant_id=" + assistant.ID} {
		var list struct {
			Items []json.RawMessage `json:"items"`
		}
		raw := bob.mustDo("GET", path, nil, 200, &list)
		if len(list.Items) != 0 {
			t.Errorf("bob's GET %s lists %d items, want 0: %s", path, len(list.Items), raw)
		}
	}

	// Alice's data survived every attempt.
	var gotAssistant assistantItem
	alice.mustDo("GET", "/v1/assistants/"+assistant.ID, nil, 200, &gotAssistant)
	if gotAssistant.Name != assistantName {
		t.Errorf("assistant name = %q, want %q", gotAssistant.Name, assistantName)
	}
	var gotConv conversationItem
	alice.mustDo("GET", "/v1/conversations/"+conv.ID, nil, 200, &gotConv)
	if gotConv.Title != title {
		t.Errorf("conversation title = %q, want %q", gotConv.Title, title)
	}
	if gotConv.Archived {
		t.Error("conversation is archived after bob's update attempt")
	}
	items := listMessages(t, alice, conv.ID)
	if len(items) != 2 {
		t.Fatalf("conversation has %d messages, want 2", len(items))
	}
	if items[0].Content.Text != question {
		t.Errorf("user message = %q, want %q", items[0].Content.Text, question)
	}
	if items[1].RunID == nil || *items[1].RunID != runID {
		t.Errorf("assistant message run_id = %v, want %s", items[1].RunID, runID)
	}
	if items[1].Content.Text != turn.Run.OutputText {
		t.Errorf("assistant message = %q, want %q", items[1].Content.Text, turn.Run.OutputText)
	}
	var run runDetail
	alice.mustDo("GET", "/v1/runs/"+runID, nil, 200, &run)
	if run.Status != "succeeded" {
		t.Errorf("run status = %s, want succeeded", run.Status)
	}
	if got := s.mock.Stats().ChatCompletions; got != 1 {
		t.Errorf("upstream calls = %d, want 1 (only alice's message)", got)
	}
}

type assistantItem struct {
	ID                  string          `json:"id"`
	Name                string          `json:"name"`
	SystemPrompt        string          `json:"system_prompt"`
	DefaultLogicalModel string          `json:"default_logical_model"`
	ModelPreset         json.RawMessage `json:"model_preset"`
}

type conversationItem struct {
	ID          string `json:"id"`
	AssistantID string `json:"assistant_id"`
	Title       string `json:"title"`
	Archived    bool   `json:"archived"`
}

type historyMessage struct {
	ID      string  `json:"id"`
	Seq     int64   `json:"seq"`
	Role    string  `json:"role"`
	RunID   *string `json:"run_id"`
	Content struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
	Run *runDetail `json:"run"`
}

// listMessages returns the first 100 messages of a conversation.
func listMessages(t *testing.T, c *client, conversationID string) []historyMessage {
	t.Helper()
	var page struct {
		Items      []historyMessage `json:"items"`
		NextCursor *string          `json:"next_cursor"`
	}
	c.mustDo("GET", "/v1/conversations/"+conversationID+"/messages?limit=100", nil, 200, &page)
	if page.NextCursor != nil {
		t.Fatalf("conversation %s has more than 100 messages", conversationID)
	}
	return page.Items
}

// listAllIDs follows next_cursor with limit=1 until it is null and returns
// the IDs in the order listed. It fails t when a page has more than one
// item or an ID appears twice.
func listAllIDs(t *testing.T, c *client, path string) []string {
	t.Helper()
	separator := "?"
	if strings.Contains(path, "?") {
		separator = "&"
	}
	var ids []string
	seen := map[string]bool{}
	cursor := ""
	for pages := 1; ; pages++ {
		if pages > 50 {
			t.Fatalf("GET %s: next_cursor is still set after 50 pages", path)
		}
		pagePath := path + separator + "limit=1"
		if cursor != "" {
			pagePath += "&cursor=" + url.QueryEscape(cursor)
		}
		var page struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
			NextCursor *string `json:"next_cursor"`
		}
		c.mustDo("GET", pagePath, nil, 200, &page)
		if len(page.Items) > 1 {
			t.Errorf("GET %s returned %d items, want at most 1", pagePath, len(page.Items))
		}
		for _, item := range page.Items {
			if seen[item.ID] {
				t.Errorf("GET %s: %s was already listed on an earlier page", pagePath, item.ID)
			}
			seen[item.ID] = true
			ids = append(ids, item.ID)
		}
		if page.NextCursor == nil {
			return ids
		}
		if *page.NextCursor == "" {
			t.Fatalf("GET %s: next_cursor is an empty string, want null on the last page", pagePath)
		}
		cursor = *page.NextCursor
	}
}

func checkIDs(t *testing.T, label string, got, want []string) {
	t.Helper()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("%s = %v, want %v", label, got, want)
	}
}

func TestConversationCRUD(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()

	var assistants []string
	for i := range 3 {
		name := fmt.Sprintf("Assistant %d", i)
		var created assistantItem
		alice.mustDo("POST", "/v1/assistants", map[string]any{"name": name, "system_prompt": "Be brief.", "default_logical_model": "mock-gpt"}, 201, &created)
		if created.Name != name {
			t.Errorf("created assistant name = %q, want %q", created.Name, name)
		}
		if created.DefaultLogicalModel != "mock-gpt" {
			t.Errorf("created assistant model = %q, want mock-gpt", created.DefaultLogicalModel)
		}
		assistants = append(assistants, created.ID)
	}
	checkIDs(t, "assistants, newest first", listAllIDs(t, alice, "/v1/assistants"), []string{assistants[2], assistants[1], assistants[0]})

	// PUT replaces every field of an assistant.
	update := map[string]any{"name": "Renamed", "system_prompt": "Be thorough.", "default_logical_model": "failover-429", "model_preset": map[string]any{"temperature": 0.5}}
	alice.mustDo("PUT", "/v1/assistants/"+assistants[0], update, 200, nil)
	var updated assistantItem
	alice.mustDo("GET", "/v1/assistants/"+assistants[0], nil, 200, &updated)
	if updated.Name != "Renamed" {
		t.Errorf("updated name = %q, want Renamed", updated.Name)
	}
	if updated.SystemPrompt != "Be thorough." {
		t.Errorf("updated system_prompt = %q, want %q", updated.SystemPrompt, "Be thorough.")
	}
	if updated.DefaultLogicalModel != "failover-429" {
		t.Errorf("updated default_logical_model = %q, want failover-429", updated.DefaultLogicalModel)
	}
	var preset map[string]float64
	if err := json.Unmarshal(updated.ModelPreset, &preset); err != nil {
		t.Errorf("updated model_preset %s is not an object of numbers: %v", updated.ModelPreset, err)
	} else if preset["temperature"] != 0.5 || len(preset) != 1 {
		t.Errorf("updated model_preset = %v, want temperature 0.5 only", preset)
	}

	var convs []string
	for i, assistantID := range []string{assistants[0], assistants[0], assistants[1]} {
		var created conversationItem
		alice.mustDo("POST", "/v1/conversations", map[string]any{"assistant_id": assistantID, "title": fmt.Sprintf("  Chat %d  ", i)}, 201, &created)
		if want := fmt.Sprintf("Chat %d", i); created.Title != want {
			t.Errorf("created title = %q, want %q with spaces trimmed", created.Title, want)
		}
		if created.AssistantID != assistantID {
			t.Errorf("created assistant_id = %s, want %s", created.AssistantID, assistantID)
		}
		if created.Archived {
			t.Errorf("conversation %d starts archived", i)
		}
		convs = append(convs, created.ID)
	}
	checkIDs(t, "conversations, newest first", listAllIDs(t, alice, "/v1/conversations"), []string{convs[2], convs[1], convs[0]})
	checkIDs(t, "conversations of assistant 0", listAllIDs(t, alice, "/v1/conversations?assistant_id="+assistants[0]), []string{convs[1], convs[0]})

	// PUT changes only the fields it sends.
	var renamed conversationItem
	alice.mustDo("PUT", "/v1/conversations/"+convs[1], map[string]any{"title": "Renamed chat"}, 200, &renamed)
	if renamed.Title != "Renamed chat" {
		t.Errorf("PUT title response = %q, want %q", renamed.Title, "Renamed chat")
	}
	alice.mustDo("PUT", "/v1/conversations/"+convs[1], map[string]any{"archived": true}, 200, nil)
	var archived conversationItem
	alice.mustDo("GET", "/v1/conversations/"+convs[1], nil, 200, &archived)
	if !archived.Archived {
		t.Error("conversation is not archived after PUT archived=true")
	}
	if archived.Title != "Renamed chat" {
		t.Errorf("title after PUT archived only = %q, want %q", archived.Title, "Renamed chat")
	}
	checkIDs(t, "archived=true", listAllIDs(t, alice, "/v1/conversations?archived=true"), []string{convs[1]})
	checkIDs(t, "archived=false", listAllIDs(t, alice, "/v1/conversations?archived=false"), []string{convs[2], convs[0]})

	// Deleting a conversation deletes its messages, runs and events.
	var turn turnResponse
	alice.mustDo("POST", "/v1/conversations/"+convs[0]+"/messages", map[string]any{"content": "delete me"}, 200, &turn)
	if status, raw := alice.do("DELETE", "/v1/conversations/"+convs[0], nil, nil); status != http.StatusNoContent || len(raw) != 0 {
		t.Fatalf("DELETE conversation: status %d, body %q; want 204 and no body", status, raw)
	}
	deletedRoutes := []struct {
		method, path, code string
	}{
		{"GET", "/v1/conversations/" + convs[0], "conversation_not_found"},
		{"GET", "/v1/conversations/" + convs[0] + "/messages", "conversation_not_found"},
		{"DELETE", "/v1/conversations/" + convs[0], "conversation_not_found"},
		{"GET", "/v1/runs/" + turn.Run.RunID, "run_not_found"},
		{"GET", "/v1/runs/" + turn.Run.RunID + "/events", "run_not_found"},
		{"POST", "/v1/messages/" + turn.AssistantMessageID + "/regenerate", "message_not_found"},
	}
	for _, g := range deletedRoutes {
		status, header, raw := exchange(t, alice, g.method, g.path, nil, nil)
		if status != http.StatusNotFound {
			t.Errorf("%s %s after deleting the conversation: status %d, want 404: %.300s", g.method, g.path, status, raw)
			continue
		}
		checkError(t, status, header, raw, http.StatusNotFound, g.code)
	}
	checkIDs(t, "conversations after delete", listAllIDs(t, alice, "/v1/conversations"), []string{convs[2], convs[1]})

	// Deleting an assistant deletes its conversations.
	if status, raw := alice.do("DELETE", "/v1/assistants/"+assistants[1], nil, nil); status != http.StatusNoContent {
		t.Fatalf("DELETE assistant: status %d, want 204: %s", status, raw)
	}
	if status, raw := alice.do("GET", "/v1/conversations/"+convs[2], nil, nil); status != http.StatusNotFound {
		t.Errorf("conversation of the deleted assistant: status %d, want 404: %s", status, raw)
	}
	if status, raw := alice.do("GET", "/v1/assistants/"+assistants[1], nil, nil); status != http.StatusNotFound {
		t.Errorf("deleted assistant: status %d, want 404: %s", status, raw)
	}
	checkIDs(t, "assistants after delete", listAllIDs(t, alice, "/v1/assistants"), []string{assistants[2], assistants[0]})
	checkIDs(t, "conversations after assistant delete", listAllIDs(t, alice, "/v1/conversations"), []string{convs[1]})
}

// checkAssistantMessage fails t unless the conversation contains two
// messages and its assistant message points at run runID and contains text.
func checkAssistantMessage(t *testing.T, c *client, conversationID, messageID, runID, text string) {
	t.Helper()
	items := listMessages(t, c, conversationID)
	if len(items) != 2 {
		t.Fatalf("conversation has %d messages, want 2", len(items))
	}
	reply := items[1]
	if reply.ID != messageID {
		t.Fatalf("second message is %s, want the assistant message %s", reply.ID, messageID)
	}
	if reply.RunID == nil || *reply.RunID != runID {
		t.Errorf("assistant message run_id = %v, want %s", reply.RunID, runID)
	}
	if reply.Run == nil || reply.Run.RunID != runID {
		t.Errorf("assistant message run summary = %+v, want run %s", reply.Run, runID)
	}
	if reply.Content.Text != text {
		t.Errorf("assistant message text = %q, want the run output %q", reply.Content.Text, text)
	}
}

func TestRegenerate(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	convID := alice.conversation("mock-gpt")

	var first turnResponse
	alice.mustDo("POST", "/v1/conversations/"+convID+"/messages", map[string]any{"content": "regenerate me"}, 200, &first)
	regeneratePath := "/v1/messages/" + first.AssistantMessageID + "/regenerate"

	// Without a body the request waits for the new run.
	var sync turnResponse
	alice.mustDo("POST", regeneratePath, nil, 200, &sync)
	if sync.Run.RunID == first.Run.RunID {
		t.Errorf("regenerate reused run %s, want a new run", sync.Run.RunID)
	}
	if sync.AssistantMessageID != first.AssistantMessageID {
		t.Errorf("assistant_message_id = %s, want %s", sync.AssistantMessageID, first.AssistantMessageID)
	}
	if sync.UserMessageID != first.UserMessageID {
		t.Errorf("user_message_id = %s, want %s", sync.UserMessageID, first.UserMessageID)
	}
	if sync.Run.Status != "succeeded" {
		t.Errorf("regenerated run status = %s, want succeeded", sync.Run.Status)
	}
	if sync.Run.OutputText == "" {
		t.Error("regenerated run has no output_text")
	}
	checkAssistantMessage(t, alice, convID, first.AssistantMessageID, sync.Run.RunID, sync.Run.OutputText)

	// With background set the request returns 202 at once.
	status, header, raw := exchange(t, alice, "POST", regeneratePath, map[string]any{"background": true}, nil)
	if status != http.StatusAccepted {
		t.Fatalf("background regenerate: status %d, want 202: %s", status, raw)
	}
	var background turnResponse
	if err := json.Unmarshal(raw, &background); err != nil {
		t.Fatalf("decode background regenerate %s: %v", raw, err)
	}
	if got, want := header.Get("Location"), "/v1/runs/"+background.Run.RunID; got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}
	if background.Run.RunID == first.Run.RunID || background.Run.RunID == sync.Run.RunID {
		t.Errorf("background regenerate reused run %s", background.Run.RunID)
	}
	if background.AssistantMessageID != first.AssistantMessageID {
		t.Errorf("background assistant_message_id = %s, want %s", background.AssistantMessageID, first.AssistantMessageID)
	}
	var run runDetail
	waitFor(t, 10*time.Second, "background regenerate to succeed", func() bool {
		alice.mustDo("GET", "/v1/runs/"+background.Run.RunID, nil, 200, &run)
		return run.Status == "succeeded"
	})
	checkAssistantMessage(t, alice, convID, first.AssistantMessageID, background.Run.RunID, run.OutputText)
	if got := s.mock.Stats().ChatCompletions; got != 3 {
		t.Errorf("upstream calls = %d, want 3 (one message, two regenerations)", got)
	}

	// A user message cannot be regenerated.
	status, header, raw = exchange(t, alice, "POST", "/v1/messages/"+first.UserMessageID+"/regenerate", nil, nil)
	checkError(t, status, header, raw, http.StatusNotFound, "message_not_found")

	// A message whose run has not ended cannot be regenerated.
	stallConv := alice.conversation("stall")
	var stalled turnResponse
	alice.mustDo("POST", "/v1/conversations/"+stallConv+"/messages", map[string]any{"content": "stall", "background": true}, 202, &stalled)
	status, header, raw = exchange(t, alice, "POST", "/v1/messages/"+stalled.AssistantMessageID+"/regenerate", nil, nil)
	checkError(t, status, header, raw, http.StatusConflict, "run_active")
	alice.mustDo("POST", "/v1/runs/"+stalled.Run.RunID+"/cancel", nil, 200, nil)
}

func TestClearMessages(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	convID := alice.conversation("mock-gpt")
	messages := "/v1/conversations/" + convID + "/messages"

	var turns [2]turnResponse
	for i, content := range []string{"first question", "second question"} {
		alice.mustDo("POST", messages, map[string]any{"content": content}, 200, &turns[i])
	}
	if got := len(listMessages(t, alice, convID)); got != 4 {
		t.Fatalf("conversation has %d messages before the clear, want 4", got)
	}

	status, raw := alice.do("DELETE", messages, nil, nil)
	if status != http.StatusNoContent {
		t.Fatalf("DELETE messages: status %d, want 204: %s", status, raw)
	}
	if len(raw) != 0 {
		t.Errorf("DELETE messages: body %q, want none", raw)
	}
	var page struct {
		Items      []json.RawMessage `json:"items"`
		NextCursor *string           `json:"next_cursor"`
	}
	alice.mustDo("GET", messages, nil, 200, &page)
	if len(page.Items) != 0 {
		t.Errorf("conversation lists %d messages after the clear, want 0", len(page.Items))
	}
	if page.NextCursor != nil {
		t.Errorf("next_cursor = %q after the clear, want null", *page.NextCursor)
	}
	for _, turn := range turns {
		for _, path := range []string{"/v1/runs/" + turn.Run.RunID, "/v1/runs/" + turn.Run.RunID + "/events"} {
			status, header, raw := exchange(t, alice, "GET", path, nil, nil)
			checkError(t, status, header, raw, http.StatusNotFound, "run_not_found")
		}
		status, header, raw := exchange(t, alice, "POST", "/v1/messages/"+turn.AssistantMessageID+"/regenerate", nil, nil)
		checkError(t, status, header, raw, http.StatusNotFound, "message_not_found")
	}
	alice.mustDo("GET", "/v1/conversations/"+convID, nil, 200, nil)

	// After the clear, the next message starts from an empty history. The
	// mock derives its reply from the request messages, so the reply equals
	// the one in a new conversation with the same assistant settings.
	var after, fresh turnResponse
	alice.mustDo("POST", messages, map[string]any{"content": "after clear"}, 200, &after)
	alice.mustDo("POST", "/v1/conversations/"+alice.conversation("mock-gpt")+"/messages", map[string]any{"content": "after clear"}, 200, &fresh)
	if after.Run.OutputText != fresh.Run.OutputText {
		t.Errorf("reply after the clear = %q, want %q as in a new conversation", after.Run.OutputText, fresh.Run.OutputText)
	}
	if after.Run.Usage.PromptTokens != fresh.Run.Usage.PromptTokens {
		t.Errorf("prompt_tokens after the clear = %d, want %d as in a new conversation", after.Run.Usage.PromptTokens, fresh.Run.Usage.PromptTokens)
	}
	items := listMessages(t, alice, convID)
	if len(items) != 2 {
		t.Fatalf("conversation has %d messages after the clear and one post, want 2", len(items))
	}
	if items[0].Content.Text != "after clear" {
		t.Errorf("user message after the clear = %q, want %q", items[0].Content.Text, "after clear")
	}
}
