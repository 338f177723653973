package providers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image/png"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/mockupstream"
)

func startMock(t *testing.T, opts mockupstream.Options) *mockupstream.Server {
	t.Helper()

	srv, err := mockupstream.Start("", opts)
	if err != nil {
		t.Fatalf("start mock upstream: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close mock upstream: %v", err)
		}
	})
	return srv
}

// mockProvider returns a provider of the given kind for the mock upstream.
// Its headers reach the mock, which reads X-Mock-* headers from them.
func mockProvider(srv *mockupstream.Server, kind string, headers map[string]string) Provider {
	baseURL := srv.URL() + "/v1"
	if kind == "gemini" {
		baseURL = srv.URL()
	}
	return Provider{ID: "mock-" + kind, Kind: kind, BaseURL: baseURL, APIKey: testAPIKey, Headers: headers}
}

func imageOptions() ClientOptions {
	opts := fastOptions()
	opts.ImageFirstByteTimeout = 3 * time.Second
	opts.ImageDownloadTimeout = 3 * time.Second
	return opts
}

func checkPNG(t *testing.T, label string, image GeneratedImage, wantBytes int) {
	t.Helper()

	if image.ContentType != "image/png" {
		t.Errorf("%s: ContentType = %q, want image/png", label, image.ContentType)
	}
	if wantBytes > 0 && len(image.Data) != wantBytes {
		t.Errorf("%s: %d bytes, want %d", label, len(image.Data), wantBytes)
	}
	if _, err := png.Decode(bytes.NewReader(image.Data)); err != nil {
		t.Errorf("%s: decode PNG: %v", label, err)
	}
}

func TestGenerateImagesAgainstMock(t *testing.T) {
	tests := []struct {
		name       string
		kind       string
		req        ImageRequest
		headers    map[string]string
		wantImages int
		wantBytes  int
		wantUsage  ImageUsage
		wantFiles  int64
	}{
		{
			name:       "openai b64_json",
			kind:       "openai",
			req:        ImageRequest{Model: "gpt-image-1", Prompt: "a red fox", N: 3, Size: "1024x1024"},
			headers:    map[string]string{"X-Mock-Image-Bytes": "40000"},
			wantImages: 3,
			wantBytes:  40000,
			wantUsage:  ImageUsage{InputTokens: 3, OutputTokens: 3 * 1056, TotalTokens: 3 + 3*1056},
		},
		{
			name:       "openai url",
			kind:       "openai",
			req:        ImageRequest{Model: "dall-e-3", Prompt: "a red fox", N: 2, ResponseFormat: "url"},
			headers:    map[string]string{"X-Mock-Image-Bytes": "40000"},
			wantImages: 2,
			wantBytes:  40000,
			wantUsage:  ImageUsage{InputTokens: 3, OutputTokens: 2 * 1056, TotalTokens: 3 + 2*1056},
			wantFiles:  2,
		},
		{
			name:       "openai default size",
			kind:       "openai",
			req:        ImageRequest{Model: "gpt-image-1", Prompt: "a red fox"},
			wantImages: 1,
			wantUsage:  ImageUsage{InputTokens: 3, OutputTokens: 1056, TotalTokens: 3 + 1056},
		},
		{
			name:       "gemini",
			kind:       "gemini",
			req:        ImageRequest{Model: "gemini-2.5-flash-image", Prompt: "a red fox", N: 2},
			headers:    map[string]string{"X-Mock-Image-Bytes": "40000"},
			wantImages: 2,
			wantBytes:  40000,
			// Each of the two calls counts the prompt's 3 words.
			wantUsage: ImageUsage{InputTokens: 2 * 3},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startMock(t, mockupstream.Options{APIKey: testAPIKey})
			client := newTestClient(t, imageOptions())

			result, err := client.GenerateImages(context.Background(), mockProvider(srv, tt.kind, tt.headers), tt.req)
			if err != nil {
				t.Fatalf("GenerateImages() error = %v", err)
			}

			if len(result.Images) != tt.wantImages {
				t.Fatalf("got %d images, want %d", len(result.Images), tt.wantImages)
			}
			for i, image := range result.Images {
				checkPNG(t, "image "+string(rune('0'+i)), image, tt.wantBytes)
				if tt.kind == "openai" && !strings.HasPrefix(image.RevisedPrompt, "Mock image ") {
					t.Errorf("image %d RevisedPrompt = %q, want the mock's revised prompt", i, image.RevisedPrompt)
				}
			}
			if len(result.Images) > 1 && bytes.Equal(result.Images[0].Data, result.Images[1].Data) {
				t.Error("images 0 and 1 are identical")
			}

			if result.Usage == nil {
				t.Fatal("Usage is nil")
			}
			if tt.kind == "gemini" {
				// The mock counts the words of its text parts as well.
				if result.Usage.InputTokens != tt.wantUsage.InputTokens || result.Usage.OutputTokens < 2*1290 ||
					result.Usage.TotalTokens != result.Usage.InputTokens+result.Usage.OutputTokens {
					t.Errorf("Usage = %+v, want %d input tokens, at least %d output tokens and their sum", *result.Usage, tt.wantUsage.InputTokens, 2*1290)
				}
			} else if *result.Usage != tt.wantUsage {
				t.Errorf("Usage = %+v, want %+v", *result.Usage, tt.wantUsage)
			}

			if got := srv.Stats().ImageFiles; got != tt.wantFiles {
				t.Errorf("mock served %d downloads, want %d", got, tt.wantFiles)
			}
		})
	}
}

func TestGenerateImagesDeterministic(t *testing.T) {
	srv := startMock(t, mockupstream.Options{})
	client := newTestClient(t, imageOptions())

	for _, kind := range []string{"openai", "gemini"} {
		t.Run(kind, func(t *testing.T) {
			provider := mockProvider(srv, kind, nil)
			generate := func(prompt string) []byte {
				t.Helper()
				result, err := client.GenerateImages(context.Background(), provider, ImageRequest{Model: "m", Prompt: prompt})
				if err != nil {
					t.Fatalf("GenerateImages(%q) error = %v", prompt, err)
				}
				return result.Images[0].Data
			}

			first, second, other := generate("a red fox"), generate("a red fox"), generate("a grey wolf")
			if !bytes.Equal(first, second) {
				t.Error("equal requests returned different bytes")
			}
			if bytes.Equal(first, other) {
				t.Error("different prompts returned the same bytes")
			}
		})
	}
}

func TestGenerateImagesMockFaults(t *testing.T) {
	tests := []struct {
		name           string
		kinds          []string
		model          string
		headers        map[string]string
		providerTime   int
		opts           func(*ClientOptions)
		wantKind       ErrorKind
		wantStatus     int
		wantRetryAfter time.Duration
		wantMessage    string
	}{
		{name: "429", model: "fault-429", wantKind: ErrorRateLimited, wantStatus: 429, wantRetryAfter: time.Second},
		{name: "500", model: "fault-500", wantKind: ErrorServer, wantStatus: 500},
		{name: "401", model: "fault-401", wantKind: ErrorAuth, wantStatus: 401},
		{name: "403", model: "fault-403", wantKind: ErrorAuth, wantStatus: 403},
		{name: "400", model: "fault-400", wantKind: ErrorBadRequest, wantStatus: 400},
		{name: "429 by header", headers: map[string]string{"X-Mock-Fault": "429"}, wantKind: ErrorRateLimited, wantStatus: 429, wantRetryAfter: time.Second},
		{name: "malformed", model: "fault-malformed", wantKind: ErrorMalformed, wantStatus: 0, wantMessage: "invalid JSON"},
		{name: "cut", model: "fault-cut", wantKind: ErrorStreamCut},
		{name: "cut-before-first", model: "fault-cut-before-first", wantKind: ErrorStreamCut},
		{
			name: "stall hits the idle timeout", model: "fault-stall", wantKind: ErrorTimeout,
			opts: func(o *ClientOptions) { o.IdleTimeout = 300 * time.Millisecond }, wantMessage: "more of the response body",
		},
		{
			name: "stall hits timeout_seconds", model: "fault-stall", providerTime: 1, wantKind: ErrorTimeout,
			opts: func(o *ClientOptions) { o.IdleTimeout = 10 * time.Second }, wantMessage: "timeout_seconds",
		},
		{
			name: "slow-start hits the image first-byte timeout", model: "fault-slow-start", headers: map[string]string{"X-Mock-Slow-Ms": "3000"},
			opts: func(o *ClientOptions) { o.ImageFirstByteTimeout = 300 * time.Millisecond }, wantKind: ErrorTimeout, wantMessage: "response headers",
		},
		{name: "safety on openai", kinds: []string{"openai"}, model: "fault-safety", wantKind: ErrorBadRequest, wantStatus: 400, wantMessage: "safety"},
		{name: "safety on gemini", kinds: []string{"gemini"}, model: "fault-safety", wantKind: ErrorNoImage, wantStatus: 200, wantMessage: "finishReason SAFETY"},
		{name: "prompt-blocked on gemini", kinds: []string{"gemini"}, model: "fault-prompt-blocked", wantKind: ErrorNoImage, wantStatus: 200, wantMessage: "blockReason SAFETY"},
	}

	srv := startMock(t, mockupstream.Options{})

	for _, tt := range tests {
		kinds := tt.kinds
		if kinds == nil {
			kinds = []string{"openai", "gemini"}
		}
		for _, kind := range kinds {
			t.Run(tt.name+" on "+kind, func(t *testing.T) {
				opts := imageOptions()
				if tt.opts != nil {
					tt.opts(&opts)
				}
				client := newTestClient(t, opts)
				provider := mockProvider(srv, kind, tt.headers)
				provider.TimeoutSeconds = tt.providerTime
				model := tt.model
				if model == "" {
					model = "mock-image"
				}

				_, err := client.GenerateImages(context.Background(), provider, ImageRequest{Model: model, Prompt: "a fox"})

				upstreamErr := asUpstreamError(t, err)
				if upstreamErr.Kind != tt.wantKind {
					t.Errorf("Kind = %s, want %s (error: %v)", upstreamErr.Kind, tt.wantKind, err)
				}
				if tt.wantStatus != 0 && upstreamErr.StatusCode != tt.wantStatus {
					t.Errorf("StatusCode = %d, want %d", upstreamErr.StatusCode, tt.wantStatus)
				}
				if upstreamErr.RetryAfter != tt.wantRetryAfter {
					t.Errorf("RetryAfter = %v, want %v", upstreamErr.RetryAfter, tt.wantRetryAfter)
				}
				if !strings.Contains(upstreamErr.Message, tt.wantMessage) {
					t.Errorf("Message = %q, want it to contain %q", upstreamErr.Message, tt.wantMessage)
				}
				if strings.Contains(err.Error(), testAPIKey) {
					t.Errorf("error %q contains the API key", err)
				}
			})
		}
	}
}

func TestGenerateImagesNoImageNotRetryable(t *testing.T) {
	srv := startMock(t, mockupstream.Options{})
	client := newTestClient(t, imageOptions())

	_, err := client.GenerateImages(context.Background(), mockProvider(srv, "gemini", nil), ImageRequest{Model: "fault-safety", Prompt: "a fox"})

	if upstreamErr := asUpstreamError(t, err); upstreamErr.Retryable() {
		t.Errorf("Retryable() = true for %s, want false", upstreamErr.Kind)
	}
}

func TestGenerateImagesKeyRules(t *testing.T) {
	tests := []struct {
		name     string
		key      string
		wantKind ErrorKind
	}{
		{name: "bad key", key: "bad-" + testAPIKey, wantKind: ErrorAuth},
		{name: "forbidden key", key: "forbidden-" + testAPIKey, wantKind: ErrorAuth},
		{name: "wrong key", key: "sk-wrong-key-0123456789", wantKind: ErrorAuth},
	}

	srv := startMock(t, mockupstream.Options{APIKey: testAPIKey})
	client := newTestClient(t, imageOptions())

	for _, tt := range tests {
		for _, kind := range []string{"openai", "gemini"} {
			t.Run(tt.name+" on "+kind, func(t *testing.T) {
				provider := mockProvider(srv, kind, nil)
				provider.APIKey = tt.key

				_, err := client.GenerateImages(context.Background(), provider, ImageRequest{Model: "m", Prompt: "a fox"})

				upstreamErr := asUpstreamError(t, err)
				if upstreamErr.Kind != tt.wantKind {
					t.Errorf("Kind = %s, want %s (error: %v)", upstreamErr.Kind, tt.wantKind, err)
				}
				if strings.Contains(err.Error(), tt.key) || bytes.Contains(upstreamErr.Body, []byte(tt.key)) {
					t.Errorf("error or body contains the key: %v", err)
				}
			})
		}
	}
}

func TestGenerateImagesDownloadFaults(t *testing.T) {
	tests := []struct {
		name        string
		urlFault    string
		opts        func(*ClientOptions)
		wantKind    ErrorKind
		wantStatus  int
		wantMessage string
	}{
		{name: "404", urlFault: "404", wantKind: ErrorServer, wantStatus: 404, wantMessage: "HTTP 404"},
		{
			name: "over the cap with Content-Length", opts: func(o *ClientOptions) { o.ImageDownloadMaxBytes = 10000 },
			wantKind: ErrorMalformed, wantStatus: 200, wantMessage: "download cap",
		},
		{
			name: "over the cap without Content-Length", urlFault: "oversized", opts: func(o *ClientOptions) { o.ImageDownloadMaxBytes = 1 << 20 },
			wantKind: ErrorMalformed, wantStatus: 200, wantMessage: "download cap",
		},
		{
			name: "timeout", urlFault: "stall", opts: func(o *ClientOptions) { o.ImageDownloadTimeout = 300 * time.Millisecond },
			wantKind: ErrorTimeout, wantStatus: 200, wantMessage: "timed out after 300ms",
		},
	}

	srv := startMock(t, mockupstream.Options{})

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := imageOptions()
			if tt.opts != nil {
				tt.opts(&opts)
			}
			client := newTestClient(t, opts)

			headers := map[string]string{"X-Mock-Image-Bytes": "50000"}
			if tt.urlFault != "" {
				headers["X-Mock-Image-URL-Fault"] = tt.urlFault
			}
			req := ImageRequest{Model: "dall-e-3", Prompt: "a fox", ResponseFormat: "url"}

			start := time.Now()
			_, err := client.GenerateImages(context.Background(), mockProvider(srv, "openai", headers), req)
			elapsed := time.Since(start)

			upstreamErr := asUpstreamError(t, err)
			if upstreamErr.Kind != tt.wantKind {
				t.Errorf("Kind = %s, want %s (error: %v)", upstreamErr.Kind, tt.wantKind, err)
			}
			if upstreamErr.StatusCode != tt.wantStatus {
				t.Errorf("StatusCode = %d, want %d", upstreamErr.StatusCode, tt.wantStatus)
			}
			if !strings.Contains(upstreamErr.Message, tt.wantMessage) {
				t.Errorf("Message = %q, want it to contain %q", upstreamErr.Message, tt.wantMessage)
			}
			if elapsed > 2*time.Second {
				t.Errorf("GenerateImages took %v, want the failure within 2s", elapsed)
			}
		})
	}
}

func TestGenerateImagesResponseCap(t *testing.T) {
	srv := startMock(t, mockupstream.Options{ImageBytes: 50000})

	for _, kind := range []string{"openai", "gemini"} {
		t.Run(kind, func(t *testing.T) {
			opts := imageOptions()
			opts.ImageMaxResponseBytes = 20000
			client := newTestClient(t, opts)

			_, err := client.GenerateImages(context.Background(), mockProvider(srv, kind, nil), ImageRequest{Model: "m", Prompt: "a fox"})

			upstreamErr := asUpstreamError(t, err)
			if upstreamErr.Kind != ErrorMalformed {
				t.Errorf("Kind = %s, want %s (error: %v)", upstreamErr.Kind, ErrorMalformed, err)
			}
			if !strings.Contains(upstreamErr.Message, "ImageMaxResponseBytes") {
				t.Errorf("Message = %q, want it to name ImageMaxResponseBytes", upstreamErr.Message)
			}
		})
	}
}

func TestGenerateImagesConnectionRefused(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	address := listener.Addr().String()
	listener.Close()
	client := newTestClient(t, imageOptions())

	for _, kind := range []string{"openai", "gemini"} {
		t.Run(kind, func(t *testing.T) {
			provider := Provider{ID: "down", Kind: kind, BaseURL: "http://" + address, APIKey: testAPIKey}

			_, err := client.GenerateImages(context.Background(), provider, ImageRequest{Model: "m", Prompt: "a fox"})

			if upstreamErr := asUpstreamError(t, err); upstreamErr.Kind != ErrorConnect {
				t.Errorf("Kind = %s, want %s (error: %v)", upstreamErr.Kind, ErrorConnect, err)
			}
		})
	}
}

func TestGenerateImagesContextCancel(t *testing.T) {
	srv := startMock(t, mockupstream.Options{})
	client := newTestClient(t, imageOptions())

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := client.GenerateImages(ctx, mockProvider(srv, "openai", nil), ImageRequest{Model: "fault-stall", Prompt: "a fox"})

	if err == nil || !strings.Contains(err.Error(), "image generation") {
		t.Fatalf("error = %v, want an image generation error", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
	}
}

func TestGenerateImagesUnknownKind(t *testing.T) {
	client := newTestClient(t, imageOptions())
	provider := Provider{ID: "x", Kind: "anthropic", BaseURL: "http://example.invalid", APIKey: testAPIKey}

	_, err := client.GenerateImages(context.Background(), provider, ImageRequest{Model: "m", Prompt: "a fox"})

	if err == nil || !strings.Contains(err.Error(), `kind "anthropic"`) {
		t.Errorf("error = %v, want one that names the kind", err)
	}
}

func TestImageRequestBodyRoundTrip(t *testing.T) {
	compression := 75
	req := ImageRequest{
		Model: "gpt-image-1", Prompt: "p", N: 2, Size: "1024x1536", Quality: "high", Style: "vivid",
		ResponseFormat: "b64_json", Background: "transparent", OutputFormat: "webp", User: "u", OutputCompression: &compression,
	}

	body, err := encodeOpenAIImageBody(req)
	if err != nil {
		t.Fatalf("encodeOpenAIImageBody: %v", err)
	}

	var decoded map[string]any
	if err := json.Unmarshal(body, &decoded); err != nil {
		t.Fatalf("decode body %s: %v", body, err)
	}
	want := map[string]any{
		"model": "gpt-image-1", "prompt": "p", "n": float64(2), "size": "1024x1536", "quality": "high", "style": "vivid",
		"response_format": "b64_json", "background": "transparent", "output_format": "webp", "user": "u", "output_compression": float64(75),
	}
	for name, value := range want {
		if decoded[name] != value {
			t.Errorf("%s = %v, want %v", name, decoded[name], value)
		}
	}
	if len(decoded) != len(want) {
		t.Errorf("body has %d fields, want %d: %s", len(decoded), len(want), body)
	}
}
