package integration

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/aihigress/aihigress/internal/apikeys"
)

// TestImageOpenAISDK calls images.generate of the official OpenAI Go SDK
// against the service, so the request and response shapes are the ones
// that OpenAI's clients send and parse.
func TestImageOpenAISDK(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})
	sdk := openai.NewClient(option.WithBaseURL(s.baseURL+"/v1/"), option.WithAPIKey(key.token), option.WithMaxRetries(0))
	ctx := context.Background()

	params := openai.ImageGenerateParams{
		Model:          "image-openai",
		Prompt:         "a glass of water on a table",
		N:              openai.Int(2),
		Size:           openai.ImageGenerateParamsSize1024x1024,
		ResponseFormat: openai.ImageGenerateParamsResponseFormatURL,
	}
	linked, err := sdk.Images.Generate(ctx, params)
	if err != nil {
		t.Fatalf("generate with url: %v", err)
	}
	if len(linked.Data) != 2 || linked.Created == 0 {
		t.Fatalf("url response: %d images, created %d; want 2 images and a time", len(linked.Data), linked.Created)
	}
	if linked.Usage.OutputTokens != 2*1056 || linked.Usage.TotalTokens != linked.Usage.InputTokens+linked.Usage.OutputTokens {
		t.Errorf("usage = %+v, want 2112 output tokens and a matching total", linked.Usage)
	}
	fetched := make([][]byte, len(linked.Data))
	for i, image := range linked.Data {
		fetched[i] = s.fetchImageLink(t, image.URL)
	}

	params.ResponseFormat = openai.ImageGenerateParamsResponseFormatB64JSON
	inline, err := sdk.Images.Generate(ctx, params)
	if err != nil {
		t.Fatalf("generate with b64_json: %v", err)
	}
	if len(inline.Data) != 2 {
		t.Fatalf("b64_json response has %d images, want 2", len(inline.Data))
	}
	for i, image := range inline.Data {
		data := decodeB64PNG(t, "b64_json image "+strconv.Itoa(i), image.B64JSON)
		if !bytes.Equal(data, fetched[i]) {
			t.Errorf("b64_json image %d differs from the linked image of the same request", i)
		}
	}

	errorCases := []struct {
		name       string
		model      string
		wantStatus int
		wantCode   string
	}{
		{"unknown model", "no-such-model", 404, "model_not_found"},
		{"chat-only model", "mock-gpt", 400, "model_does_not_support_images"},
		{"upstream rejects the request", "image-bad-request", 400, "upstream_bad_request"},
	}
	for _, tt := range errorCases {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sdk.Images.Generate(ctx, openai.ImageGenerateParams{Model: tt.model, Prompt: "a cup"})
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("error = %v, want an *openai.Error", err)
			}
			if apiErr.StatusCode != tt.wantStatus || apiErr.Code != tt.wantCode || apiErr.Message == "" {
				t.Errorf("error: status %d, code %q, message %q; want %d %s with a message", apiErr.StatusCode, apiErr.Code, apiErr.Message, tt.wantStatus, tt.wantCode)
			}
		})
	}
}
