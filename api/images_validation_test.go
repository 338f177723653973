package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aihigress/aihigress/models"
)

// TestImageGenerationRejectsBadInput sends invalid bodies to
// POST /v1/images/generations. Each must get a 4xx JSON error that names the
// field, before any run exists or any upstream is called.
func TestImageGenerationRejectsBadInput(t *testing.T) {
	env := newGatewayEnv(t)
	key := env.newKey(nil)
	restricted := env.newKey([]string{"mock-gpt"})

	// body returns a valid request with extra JSON members appended, such
	// as `"n":0`.
	body := func(members string) string {
		if members == "" {
			return `{"model":"image-only","prompt":"a red kite"}`
		}
		return `{"model":"image-only","prompt":"a red kite",` + members + `}`
	}
	longPrompt := strings.Repeat("é", gatewayImagePromptChars+1)

	tests := []struct {
		name       string
		key        string
		body       string
		header     http.Header
		wantStatus int
		wantCode   string
		// wantParam is the error's param; empty means null.
		wantParam string
	}{
		{name: "not JSON", body: `{"model":`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "array body", body: `[{"model":"image-only"}]`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "NUL in prompt", body: `{"model":"image-only","prompt":"a\u0000b"}`, wantStatus: 400, wantCode: "invalid_field"},

		{name: "no model", body: `{"prompt":"a red kite"}`, wantStatus: 400, wantCode: "missing_field", wantParam: "model"},
		{name: "blank model", body: `{"model":"  ","prompt":"a red kite"}`, wantStatus: 400, wantCode: "missing_field", wantParam: "model"},
		{name: "model not a string", body: `{"model":7,"prompt":"a red kite"}`, wantStatus: 400, wantCode: "invalid_field", wantParam: "model"},
		{name: "chat-only model", body: `{"model":"mock-gpt","prompt":"a red kite"}`, wantStatus: 400, wantCode: "model_does_not_support_images", wantParam: "model"},
		{name: "unknown model", body: `{"model":"no-such-model","prompt":"a red kite"}`, wantStatus: 404, wantCode: "model_not_found", wantParam: "model"},
		{name: "model outside the key's list", key: restricted, body: body(""), wantStatus: 403, wantCode: "model_not_allowed", wantParam: "model"},

		{name: "no prompt", body: `{"model":"image-only"}`, wantStatus: 400, wantCode: "empty_prompt", wantParam: "prompt"},
		{name: "empty prompt", body: `{"model":"image-only","prompt":""}`, wantStatus: 400, wantCode: "empty_prompt", wantParam: "prompt"},
		{name: "blank prompt", body: `{"model":"image-only","prompt":" \n "}`, wantStatus: 400, wantCode: "empty_prompt", wantParam: "prompt"},
		{name: "prompt not a string", body: `{"model":"image-only","prompt":["a"]}`, wantStatus: 400, wantCode: "invalid_field", wantParam: "prompt"},
		{name: "prompt over the limit", body: `{"model":"image-only","prompt":"` + longPrompt + `"}`, wantStatus: 400, wantCode: "prompt_too_long", wantParam: "prompt"},

		{name: "n zero", body: body(`"n":0`), wantStatus: 400, wantCode: "invalid_n", wantParam: "n"},
		{name: "n eleven", body: body(`"n":11`), wantStatus: 400, wantCode: "invalid_n", wantParam: "n"},
		{name: "n negative", body: body(`"n":-1`), wantStatus: 400, wantCode: "invalid_n", wantParam: "n"},
		{name: "n fractional", body: body(`"n":1.5`), wantStatus: 400, wantCode: "invalid_n", wantParam: "n"},
		{name: "n string", body: body(`"n":"2"`), wantStatus: 400, wantCode: "invalid_n", wantParam: "n"},
		{name: "n boolean", body: body(`"n":true`), wantStatus: 400, wantCode: "invalid_n", wantParam: "n"},
		{name: "n exponent", body: body(`"n":1e1`), wantStatus: 400, wantCode: "invalid_n", wantParam: "n"},

		{name: "size word", body: body(`"size":"big"`), wantStatus: 400, wantCode: "invalid_size", wantParam: "size"},
		{name: "size one number", body: body(`"size":"1024"`), wantStatus: 400, wantCode: "invalid_size", wantParam: "size"},
		{name: "size zero width", body: body(`"size":"0x10"`), wantStatus: 400, wantCode: "invalid_size", wantParam: "size"},
		{name: "size zero height", body: body(`"size":"1024x0"`), wantStatus: 400, wantCode: "invalid_size", wantParam: "size"},
		{name: "size too wide", body: body(`"size":"99999x1"`), wantStatus: 400, wantCode: "invalid_size", wantParam: "size"},
		{name: "size over 8192", body: body(`"size":"8193x1024"`), wantStatus: 400, wantCode: "invalid_size", wantParam: "size"},
		{name: "size three sides", body: body(`"size":"16x16x16"`), wantStatus: 400, wantCode: "invalid_size", wantParam: "size"},
		{name: "size with space", body: body(`"size":"1024x1024 "`), wantStatus: 400, wantCode: "invalid_size", wantParam: "size"},
		{name: "size number", body: body(`"size":1024`), wantStatus: 400, wantCode: "invalid_field", wantParam: "size"},

		{name: "unknown response_format", body: body(`"response_format":"png"`), wantStatus: 400, wantCode: "invalid_response_format", wantParam: "response_format"},
		{name: "response_format upper case", body: body(`"response_format":"URL"`), wantStatus: 400, wantCode: "invalid_response_format", wantParam: "response_format"},
		{name: "response_format number", body: body(`"response_format":1`), wantStatus: 400, wantCode: "invalid_field", wantParam: "response_format"},
		{name: "unknown output_format", body: body(`"output_format":"gif"`), wantStatus: 400, wantCode: "invalid_output_format", wantParam: "output_format"},

		{name: "output_compression over 100", body: body(`"output_compression":101`), wantStatus: 400, wantCode: "invalid_output_compression", wantParam: "output_compression"},
		{name: "output_compression negative", body: body(`"output_compression":-1`), wantStatus: 400, wantCode: "invalid_output_compression", wantParam: "output_compression"},
		{name: "output_compression string", body: body(`"output_compression":"50"`), wantStatus: 400, wantCode: "invalid_output_compression", wantParam: "output_compression"},
		{name: "output_compression fractional", body: body(`"output_compression":50.5`), wantStatus: 400, wantCode: "invalid_output_compression", wantParam: "output_compression"},

		{name: "background word", body: body(`"background":"maybe"`), wantStatus: 400, wantCode: "invalid_field", wantParam: "background"},
		{name: "background number", body: body(`"background":1`), wantStatus: 400, wantCode: "invalid_field", wantParam: "background"},
		{name: "quality too long", body: body(`"quality":"` + strings.Repeat("q", 257) + `"`), wantStatus: 400, wantCode: "invalid_field", wantParam: "quality"},
		{name: "style not a string", body: body(`"style":{}`), wantStatus: 400, wantCode: "invalid_field", wantParam: "style"},

		{name: "extra_body string", body: body(`"extra_body":"openai"`), wantStatus: 400, wantCode: "invalid_field", wantParam: "extra_body"},
		{name: "extra_body array", body: body(`"extra_body":[]`), wantStatus: 400, wantCode: "invalid_field", wantParam: "extra_body"},
		{name: "extra_body unknown lane", body: body(`"extra_body":{"azure":{}}`), wantStatus: 400, wantCode: "invalid_field", wantParam: "extra_body.azure"},
		{name: "extra_body openai not an object", body: body(`"extra_body":{"openai":1}`), wantStatus: 400, wantCode: "invalid_field", wantParam: "extra_body.openai"},
		{name: "extra_body google not an object", body: body(`"extra_body":{"google":"x"}`), wantStatus: 400, wantCode: "invalid_field", wantParam: "extra_body.google"},
		{name: "generationConfig array", body: body(`"extra_body":{"google":{"generationConfig":[1,2]}}`), wantStatus: 400, wantCode: "invalid_field", wantParam: "extra_body.google.generationConfig"},
		{name: "generation_config string", body: body(`"extra_body":{"google":{"generation_config":"abc"}}`), wantStatus: 400, wantCode: "invalid_field", wantParam: "extra_body.google.generation_config"},

		{name: "stream true", body: body(`"stream":true`), wantStatus: 400, wantCode: "stream_not_supported", wantParam: "stream"},
		{name: "stream string", body: body(`"stream":"yes"`), wantStatus: 400, wantCode: "invalid_field", wantParam: "stream"},

		{name: "Idempotency-Key too long", body: body(""), header: http.Header{"Idempotency-Key": {strings.Repeat("k", 1000)}}, wantStatus: 400, wantCode: "invalid_idempotency_key"},
		{name: "background header maybe", body: body(""), header: http.Header{"X-Aihigress-Background": {"maybe"}}, wantStatus: 400, wantCode: "invalid_header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			credential := tt.key
			if credential == "" {
				credential = key
			}
			req, err := http.NewRequest(http.MethodPost, env.baseURL+"/v1/images/generations", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+credential)
			req.Header.Set("Content-Type", "application/json")
			for name, values := range tt.header {
				req.Header[name] = values
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			data, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}

			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d; body %s", resp.StatusCode, tt.wantStatus, data)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			var got struct {
				Error struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Code    string  `json:"code"`
					Param   *string `json:"param"`
				} `json:"error"`
			}
			if err := json.Unmarshal(data, &got); err != nil {
				t.Fatalf("body is not JSON: %v: %s", err, data)
			}
			if got.Error.Code != tt.wantCode {
				t.Errorf("code = %q, want %q; message: %s", got.Error.Code, tt.wantCode, got.Error.Message)
			}
			if got.Error.Message == "" || got.Error.Type == "" {
				t.Errorf("error = %+v, want a message and a type", got.Error)
			}
			param := ""
			if got.Error.Param != nil {
				param = *got.Error.Param
			}
			if tt.wantParam != "" && param != tt.wantParam {
				t.Errorf("param = %q, want %q", param, tt.wantParam)
			}
		})
	}

	var runs int64
	if err := env.store.DB.Model(&models.ChatRun{}).Count(&runs).Error; err != nil {
		t.Fatal(err)
	}
	if runs != 0 {
		t.Errorf("rejected requests created %d runs, want 0", runs)
	}
	if got := env.mocks["main"].Stats().Images; got != 0 {
		t.Errorf("rejected requests reached the upstream %d times, want 0", got)
	}
}
