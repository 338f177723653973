package providers

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakePNG is not a decodable image. The lanes pass bytes through without
// inspecting them, which these tests rely on.
var fakePNG = []byte("\x89PNG\r\n\x1a\nfake image bytes")

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func b64(data []byte) string {
	return base64.StdEncoding.EncodeToString(data)
}

// downloadServer is a loopback file server that records the headers of
// each request.
type downloadServer struct {
	server *httptest.Server

	mu      sync.Mutex
	headers []http.Header
}

func newDownloadServer(t *testing.T, handler http.HandlerFunc) *downloadServer {
	t.Helper()

	d := &downloadServer{}
	d.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.headers = append(d.headers, r.Header.Clone())
		d.mu.Unlock()
		handler(w, r)
	}))
	t.Cleanup(d.server.Close)
	return d
}

func (d *downloadServer) requests() []http.Header {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]http.Header(nil), d.headers...)
}

func TestOpenAIImageRequestShape(t *testing.T) {
	upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, `{"created":1,"data":[{"b64_json":"`+b64(fakePNG)+`"}]}`)
	})
	provider := upstream.provider()
	provider.Headers = map[string]string{"OpenAI-Organization": "org-1"}
	client := newTestClient(t, imageOptions())

	req := ImageRequest{
		Model: "gpt-image-1", Prompt: "a fox", N: 2, Size: "1024x1024",
		ExtraOpenAI: map[string]json.RawMessage{
			"moderation": json.RawMessage(`"low"`),
			"model":      json.RawMessage(`"ignored-model"`),
			"n":          json.RawMessage(`7`),
			"quality":    json.RawMessage(`"high"`),
		},
	}
	if _, err := client.GenerateImages(context.Background(), provider, req); err != nil {
		t.Fatalf("GenerateImages() error = %v", err)
	}

	recorded := upstream.lastRequest(t)
	if recorded.Method != http.MethodPost || recorded.Path != "/v1/images/generations" {
		t.Errorf("request = %s %s, want POST /v1/images/generations", recorded.Method, recorded.Path)
	}
	if got := recorded.Header.Get("Authorization"); got != "Bearer "+testAPIKey {
		t.Errorf("Authorization = %q, want the Bearer key", got)
	}
	if got := recorded.Header.Get("OpenAI-Organization"); got != "org-1" {
		t.Errorf("OpenAI-Organization = %q, want the provider header", got)
	}
	if got := recorded.Header.Get("Accept-Encoding"); got != "identity" {
		t.Errorf("Accept-Encoding = %q, want identity", got)
	}

	wantBody := map[string]string{
		"model":      `"gpt-image-1"`,
		"prompt":     `"a fox"`,
		"n":          `2`,
		"size":       `"1024x1024"`,
		"moderation": `"low"`,
		"quality":    `"high"`,
	}
	for name, want := range wantBody {
		if got := string(recorded.Body[name]); got != want {
			t.Errorf("body %s = %s, want %s", name, got, want)
		}
	}
	for _, absent := range []string{"response_format", "style", "background", "output_format", "output_compression", "user"} {
		if value, ok := recorded.Body[absent]; ok {
			t.Errorf("body has %s = %s, want it left out when unset", absent, value)
		}
	}
}

func TestGeminiImageRequestShape(t *testing.T) {
	tests := []struct {
		name       string
		basePath   string
		model      string
		req        ImageRequest
		wantPath   string
		wantConfig map[string]string
		wantExtra  map[string]string
	}{
		{
			name:     "defaults",
			model:    "gemini-2.5-flash-image",
			req:      ImageRequest{Prompt: "a fox"},
			wantPath: "/v1beta/models/gemini-2.5-flash-image:generateContent",
			wantConfig: map[string]string{
				"responseModalities": `["TEXT","IMAGE"]`,
			},
		},
		{
			name:     "N and extra fields",
			basePath: "/v1beta",
			model:    "models/gemini-2.5-flash-image",
			req: ImageRequest{
				Prompt: "a fox", N: 3,
				ExtraGoogle: map[string]json.RawMessage{
					"generationConfig": json.RawMessage(`{"temperature":0.5,"candidateCount":1,"responseModalities":["IMAGE"],"imageConfig":{"aspectRatio":"16:9"}}`),
					"safetySettings":   json.RawMessage(`[{"category":"HARM_CATEGORY_HARASSMENT","threshold":"BLOCK_NONE"}]`),
					"contents":         json.RawMessage(`[{"role":"user","parts":[{"text":"ignored"}]}]`),
				},
			},
			wantPath: "/v1beta/models/gemini-2.5-flash-image:generateContent",
			wantConfig: map[string]string{
				"temperature":        `0.5`,
				"candidateCount":     `3`,
				"responseModalities": `["IMAGE"]`,
				"imageConfig":        `{"aspectRatio":"16:9"}`,
			},
			wantExtra: map[string]string{
				"safetySettings": `[{"category":"HARM_CATEGORY_HARASSMENT","threshold":"BLOCK_NONE"}]`,
			},
		},
		{
			name:     "snake_case generation_config",
			basePath: "/v1",
			model:    "gemini-x",
			req: ImageRequest{
				Prompt: "a fox", N: 2,
				ExtraGoogle: map[string]json.RawMessage{
					"generation_config": json.RawMessage(`{"candidate_count":1,"response_modalities":["IMAGE"],"seed":7}`),
				},
			},
			wantPath: "/v1/models/gemini-x:generateContent",
			wantConfig: map[string]string{
				"candidateCount":      `2`,
				"response_modalities": `["IMAGE"]`,
				"seed":                `7`,
			},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusOK, `{"candidates":[{"content":{"parts":[{"inlineData":{"mimeType":"image/png","data":"`+b64(fakePNG)+`"}}]}}]}`)
			})
			provider := Provider{ID: "g", Kind: "gemini", BaseURL: upstream.server.URL + tt.basePath, APIKey: testAPIKey}
			client := newTestClient(t, imageOptions())

			req := tt.req
			req.Model = tt.model
			if _, err := client.GenerateImages(context.Background(), provider, req); err != nil {
				t.Fatalf("GenerateImages() error = %v", err)
			}

			recorded := upstream.lastRequest(t)
			if recorded.Path != tt.wantPath {
				t.Errorf("path = %q, want %q", recorded.Path, tt.wantPath)
			}
			if got := recorded.Header.Get("X-Goog-Api-Key"); got != testAPIKey {
				t.Errorf("x-goog-api-key = %q, want the key", got)
			}
			if got := recorded.Header.Get("Authorization"); got != "" {
				t.Errorf("Authorization = %q, want none", got)
			}
			if strings.Contains(recorded.Query, testAPIKey) || strings.Contains(recorded.Path, testAPIKey) {
				t.Errorf("URL %s?%s contains the key", recorded.Path, recorded.Query)
			}

			wantContents := `[{"role":"user","parts":[{"text":"a fox"}]}]`
			if got := string(recorded.Body["contents"]); got != wantContents {
				t.Errorf("contents = %s, want %s", got, wantContents)
			}
			if _, ok := recorded.Body["generation_config"]; ok {
				t.Error("body keeps generation_config next to generationConfig")
			}

			var config map[string]json.RawMessage
			if err := json.Unmarshal(recorded.Body["generationConfig"], &config); err != nil {
				t.Fatalf("decode generationConfig %s: %v", recorded.Body["generationConfig"], err)
			}
			got := map[string]string{}
			for key, value := range config {
				got[key] = string(value)
			}
			if !reflect.DeepEqual(got, tt.wantConfig) {
				t.Errorf("generationConfig = %v, want %v", got, tt.wantConfig)
			}

			for name, want := range tt.wantExtra {
				if got := string(recorded.Body[name]); got != want {
					t.Errorf("body %s = %s, want %s", name, got, want)
				}
			}
		})
	}
}

func TestGeminiRequestErrors(t *testing.T) {
	tests := []struct {
		name        string
		model       string
		extra       map[string]json.RawMessage
		wantMessage string
	}{
		{name: "generationConfig not an object", model: "m", extra: map[string]json.RawMessage{"generationConfig": json.RawMessage(`[1]`)}, wantMessage: "generationConfig must be a JSON object"},
		{name: "model with a slash", model: "tunedModels/x", wantMessage: "invalid Gemini model"},
		{name: "dot-dot model", model: "..", wantMessage: "invalid Gemini model"},
		{name: "empty model", model: "", wantMessage: "invalid Gemini model"},
	}

	client := newTestClient(t, imageOptions())
	// No request is sent, because each case fails while building it.
	provider := Provider{ID: "g", Kind: "gemini", BaseURL: "http://example.invalid", APIKey: testAPIKey}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.GenerateImages(context.Background(), provider, ImageRequest{Model: tt.model, Prompt: "a fox", ExtraGoogle: tt.extra})

			if err == nil || !strings.Contains(err.Error(), tt.wantMessage) {
				t.Errorf("error = %v, want one containing %q", err, tt.wantMessage)
			}
		})
	}
}

func TestOpenAIImageResponses(t *testing.T) {
	tests := []struct {
		name            string
		body            string
		wantKind        ErrorKind
		wantContentType string
		wantMessage     string
	}{
		{name: "png output_format", body: `{"data":[{"b64_json":"` + b64(fakePNG) + `"}],"output_format":"png"}`, wantContentType: "image/png"},
		{name: "jpeg output_format", body: `{"data":[{"b64_json":"` + b64(fakePNG) + `"}],"output_format":"jpeg"}`, wantContentType: "image/jpeg"},
		{name: "no output_format", body: `{"data":[{"b64_json":"` + b64(fakePNG) + `"}]}`, wantContentType: ""},
		{name: "empty data", body: `{"created":1,"data":[]}`, wantKind: ErrorNoImage, wantMessage: "empty data array"},
		{name: "entry without image", body: `{"data":[{"revised_prompt":"x"}]}`, wantKind: ErrorMalformed, wantMessage: "neither b64_json nor url"},
		{name: "invalid base64", body: `{"data":[{"b64_json":"not base64!"}]}`, wantKind: ErrorMalformed, wantMessage: "invalid JSON"},
		{name: "error object", body: `{"error":{"message":"backend overloaded"}}`, wantKind: ErrorServer, wantMessage: "backend overloaded"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusOK, tt.body)
			})
			client := newTestClient(t, imageOptions())

			result, err := client.GenerateImages(context.Background(), upstream.provider(), ImageRequest{Model: "m", Prompt: "a fox"})

			if tt.wantKind != "" {
				upstreamErr := asUpstreamError(t, err)
				if upstreamErr.Kind != tt.wantKind {
					t.Errorf("Kind = %s, want %s (error: %v)", upstreamErr.Kind, tt.wantKind, err)
				}
				if !strings.Contains(upstreamErr.Message, tt.wantMessage) {
					t.Errorf("Message = %q, want it to contain %q", upstreamErr.Message, tt.wantMessage)
				}
				return
			}

			if err != nil {
				t.Fatalf("GenerateImages() error = %v", err)
			}
			if len(result.Images) != 1 || string(result.Images[0].Data) != string(fakePNG) {
				t.Fatalf("images = %+v, want the fake PNG", result.Images)
			}
			if got := result.Images[0].ContentType; got != tt.wantContentType {
				t.Errorf("ContentType = %q, want %q", got, tt.wantContentType)
			}
			if result.Usage != nil {
				t.Errorf("Usage = %+v, want nil without usage in the response", *result.Usage)
			}
		})
	}
}

func TestGeminiImageResponses(t *testing.T) {
	image := `{"inlineData":{"mimeType":"image/png","data":"` + b64(fakePNG) + `"}}`
	tests := []struct {
		name        string
		body        string
		wantImages  int
		wantKind    ErrorKind
		wantMessage string
	}{
		{
			name:       "images from all candidates",
			body:       `{"candidates":[{"content":{"parts":[{"text":"here"},` + image + `]}},{"content":{"parts":[` + image + `,` + image + `]}}]}`,
			wantImages: 3,
		},
		{
			name:       "thought images and other media skipped",
			body:       `{"candidates":[{"content":{"parts":[{"thought":true,"inlineData":{"mimeType":"image/png","data":"` + b64(fakePNG) + `"}},{"inlineData":{"mimeType":"audio/wav","data":"AAAA"}},` + image + `]}}]}`,
			wantImages: 1,
		},
		{
			name:        "text only",
			body:        `{"candidates":[{"content":{"parts":[{"text":"I cannot draw that."}]},"finishReason":"STOP"}]}`,
			wantKind:    ErrorNoImage,
			wantMessage: `finishReason STOP; the model answered with text only: "I cannot draw that."`,
		},
		{
			name:        "image safety with message",
			body:        `{"candidates":[{"finishReason":"IMAGE_SAFETY","finishMessage":"Unable to show the generated image."},{"finishReason":"SAFETY"}]}`,
			wantKind:    ErrorNoImage,
			wantMessage: "finishReason IMAGE_SAFETY, SAFETY: Unable to show the generated image.",
		},
		{
			name:        "blocked prompt",
			body:        `{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT","blockReasonMessage":"not allowed"}}`,
			wantKind:    ErrorNoImage,
			wantMessage: "blockReason PROHIBITED_CONTENT: not allowed",
		},
		{name: "no candidates", body: `{}`, wantKind: ErrorNoImage, wantMessage: "no candidates"},
		{name: "invalid JSON", body: `{"candidates":`, wantKind: ErrorMalformed, wantMessage: "invalid JSON"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusOK, tt.body)
			})
			provider := Provider{ID: "g", Kind: "gemini", BaseURL: upstream.server.URL, APIKey: testAPIKey}
			client := newTestClient(t, imageOptions())

			result, err := client.GenerateImages(context.Background(), provider, ImageRequest{Model: "m", Prompt: "a fox"})

			if tt.wantKind != "" {
				upstreamErr := asUpstreamError(t, err)
				if upstreamErr.Kind != tt.wantKind {
					t.Errorf("Kind = %s, want %s (error: %v)", upstreamErr.Kind, tt.wantKind, err)
				}
				if !strings.Contains(upstreamErr.Message, tt.wantMessage) {
					t.Errorf("Message = %q, want it to contain %q", upstreamErr.Message, tt.wantMessage)
				}
				return
			}

			if err != nil {
				t.Fatalf("GenerateImages() error = %v", err)
			}
			if len(result.Images) != tt.wantImages {
				t.Fatalf("got %d images, want %d", len(result.Images), tt.wantImages)
			}
			for i, image := range result.Images {
				if string(image.Data) != string(fakePNG) || image.ContentType != "image/png" {
					t.Errorf("image %d = %q (%s), want the fake PNG as image/png", i, image.Data, image.ContentType)
				}
			}
		})
	}
}

func TestGeminiInvalidKeyIsAuthError(t *testing.T) {
	const body = `{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT",` +
		`"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}`
	upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusBadRequest, body)
	})
	provider := Provider{ID: "g", Kind: "gemini", BaseURL: upstream.server.URL, APIKey: testAPIKey}
	client := newTestClient(t, imageOptions())

	_, err := client.GenerateImages(context.Background(), provider, ImageRequest{Model: "m", Prompt: "a fox"})

	upstreamErr := asUpstreamError(t, err)
	if upstreamErr.Kind != ErrorAuth {
		t.Errorf("Kind = %s, want %s", upstreamErr.Kind, ErrorAuth)
	}
	if upstreamErr.Message != "API key not valid. Please pass a valid API key." {
		t.Errorf("Message = %q, want Google's message", upstreamErr.Message)
	}
}

func TestImageErrorRedactsAPIKey(t *testing.T) {
	for _, kind := range []string{"openai", "gemini"} {
		t.Run(kind, func(t *testing.T) {
			upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusUnauthorized, `{"error":{"message":"key `+testAPIKey+` was revoked"}}`)
			})
			provider := upstream.provider()
			provider.Kind = kind
			if kind == "gemini" {
				provider.BaseURL = upstream.server.URL
			}
			client := newTestClient(t, imageOptions())

			_, err := client.GenerateImages(context.Background(), provider, ImageRequest{Model: "m", Prompt: "a fox"})

			upstreamErr := asUpstreamError(t, err)
			if strings.Contains(err.Error(), testAPIKey) || strings.Contains(string(upstreamErr.Body), testAPIKey) {
				t.Errorf("error %q or its body contains the API key", err)
			}
			if !strings.Contains(upstreamErr.Message, redactedKey) {
				t.Errorf("Message = %q, want the key replaced by %s", upstreamErr.Message, redactedKey)
			}
		})
	}
}

func TestImageDownloadSendsNoCredentials(t *testing.T) {
	files := newDownloadServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/moved.png" {
			http.Redirect(w, r, "/image.png?sig=abc", http.StatusFound)
			return
		}
		w.Header().Set("Content-Type", "image/webp")
		w.Write(fakePNG)
	})
	upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, `{"data":[{"url":"`+files.server.URL+`/image.png?sig=abc","revised_prompt":"rp"},{"url":"`+files.server.URL+`/moved.png"}],"output_format":"png"}`)
	})
	provider := upstream.provider()
	provider.Headers = map[string]string{"X-Org-Secret": "org-secret", "X-Goog-Api-Key": "goog-secret"}
	// The file server listens on another loopback port than the provider.
	opts := imageOptions()
	opts.ImageDownloadAllowPrivate = true
	client := newTestClient(t, opts)

	result, err := client.GenerateImages(context.Background(), provider, ImageRequest{Model: "dall-e-3", Prompt: "a fox", N: 2, ResponseFormat: "url"})
	if err != nil {
		t.Fatalf("GenerateImages() error = %v", err)
	}

	if len(result.Images) != 2 {
		t.Fatalf("got %d images, want 2", len(result.Images))
	}
	for i, image := range result.Images {
		if string(image.Data) != string(fakePNG) {
			t.Errorf("image %d = %q, want the served bytes", i, image.Data)
		}
		if image.ContentType != "image/webp" {
			t.Errorf("image %d ContentType = %q, want the download's image/webp", i, image.ContentType)
		}
	}
	if result.Images[0].RevisedPrompt != "rp" {
		t.Errorf("RevisedPrompt = %q, want rp", result.Images[0].RevisedPrompt)
	}

	requests := files.requests()
	if len(requests) != 3 {
		t.Fatalf("file server got %d requests, want 3 (one through a redirect)", len(requests))
	}
	for i, header := range requests {
		for _, name := range []string{"Authorization", "X-Org-Secret", "X-Goog-Api-Key"} {
			if value := header.Get(name); value != "" {
				t.Errorf("download request %d carries %s = %q", i, name, value)
			}
		}
	}
}

func TestImageDownloadRejectsURLs(t *testing.T) {
	tests := []struct {
		name        string
		url         string
		wantMessage string
	}{
		{name: "file scheme", url: "file:///etc/passwd", wantMessage: `scheme "file"`},
		{name: "data URL", url: "data:image/png;base64," + strings.Repeat("A", 4000), wantMessage: `scheme "data"`},
		{name: "ftp scheme", url: "ftp://example.invalid/a.png", wantMessage: `scheme "ftp"`},
		{name: "relative URL", url: "/v1/files/a.png", wantMessage: `scheme ""`},
		{name: "no host", url: "http:///a.png", wantMessage: "no host"},
		{name: "unparsable", url: "http://[::1", wantMessage: "does not parse"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			encodedURL, _ := json.Marshal(tt.url)
			upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusOK, `{"data":[{"url":`+string(encodedURL)+`}]}`)
			})
			client := newTestClient(t, imageOptions())

			_, err := client.GenerateImages(context.Background(), upstream.provider(), ImageRequest{Model: "m", Prompt: "a fox", ResponseFormat: "url"})

			upstreamErr := asUpstreamError(t, err)
			if upstreamErr.Kind != ErrorMalformed {
				t.Errorf("Kind = %s, want %s (error: %v)", upstreamErr.Kind, ErrorMalformed, err)
			}
			if !strings.Contains(upstreamErr.Message, tt.wantMessage) {
				t.Errorf("Message = %q, want it to contain %q", upstreamErr.Message, tt.wantMessage)
			}
			if len(err.Error()) > 300 {
				t.Errorf("error is %d bytes long, want the URL left out: %.100s...", len(err.Error()), err)
			}
		})
	}
}

func TestImageDownloadErrorHidesQuery(t *testing.T) {
	files := newDownloadServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.NotFound(w, r)
	})
	const signature = "sig-0123456789secret"
	upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, fmt.Sprintf(`{"data":[{"url":"%s/img.png?sig=%s"}]}`, files.server.URL, signature))
	})
	opts := imageOptions()
	opts.ImageDownloadAllowPrivate = true
	client := newTestClient(t, opts)

	_, err := client.GenerateImages(context.Background(), upstream.provider(), ImageRequest{Model: "m", Prompt: "a fox", ResponseFormat: "url"})

	upstreamErr := asUpstreamError(t, err)
	if upstreamErr.Kind != ErrorServer || upstreamErr.StatusCode != http.StatusNotFound {
		t.Errorf("Kind, StatusCode = %s, %d, want %s, 404", upstreamErr.Kind, upstreamErr.StatusCode, ErrorServer)
	}
	if strings.Contains(err.Error(), signature) {
		t.Errorf("error %q contains the URL's signature", err)
	}
	if !strings.Contains(err.Error(), files.server.URL+"/img.png") {
		t.Errorf("error %q does not name the download host and path", err)
	}
}

// TestGeminiFanOut checks that the Google lane makes n images with n calls
// of one candidate each, with a seed per call, and joins their images in
// call order and their usage.
func TestGeminiFanOut(t *testing.T) {
	tests := []struct {
		name   string
		n      int
		config string
		// wantSeeds are the seeds of the calls in order, or nil for
		// random ones, which must then differ.
		wantSeeds []int64
	}{
		{name: "random seeds", n: 3},
		{name: "client seed", n: 3, config: `{"seed":7}`, wantSeeds: []int64{7, 8, 9}},
		{name: "seed wraps within int32", n: 2, config: `{"seed":2147483647}`, wantSeeds: []int64{2147483647, -2147483648}},
		{name: "null seed", n: 2, config: `{"seed":null}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				seed := seedOf(t, r)
				writeJSON(w, http.StatusOK, `{"candidates":[{"content":{"parts":[{"inlineData":{"mimeType":"image/png","data":"`+
					b64([]byte(fmt.Sprint("seed ", seed)))+`"}}]}}],"usageMetadata":{"promptTokenCount":2,"candidatesTokenCount":10,"totalTokenCount":12}}`)
			})
			provider := Provider{ID: "g", Kind: "gemini", BaseURL: upstream.server.URL, APIKey: testAPIKey}
			req := ImageRequest{Model: "gemini-2.5-flash-image", Prompt: "a fox", N: tt.n}
			if tt.config != "" {
				req.ExtraGoogle = map[string]json.RawMessage{"generationConfig": json.RawMessage(tt.config)}
			}

			result, err := newTestClient(t, imageOptions()).GenerateImages(context.Background(), provider, req)
			if err != nil {
				t.Fatalf("GenerateImages() error = %v", err)
			}

			upstream.mu.Lock()
			requests := slices.Clone(upstream.requests)
			upstream.mu.Unlock()
			if len(requests) != tt.n {
				t.Fatalf("upstream got %d calls, want %d", len(requests), tt.n)
			}
			var seeds []int64
			for _, recorded := range requests {
				var config map[string]json.RawMessage
				if err := json.Unmarshal(recorded.Body["generationConfig"], &config); err != nil {
					t.Fatal(err)
				}
				if count, ok := config["candidateCount"]; ok {
					t.Errorf("a call sets candidateCount %s, want none", count)
				}
				var seed int64
				if err := json.Unmarshal(config["seed"], &seed); err != nil {
					t.Fatalf("decode the seed %s of a call: %v", config["seed"], err)
				}
				seeds = append(seeds, seed)
			}
			slices.Sort(seeds)
			if tt.wantSeeds != nil && !slices.Equal(seeds, slices.Sorted(slices.Values(tt.wantSeeds))) {
				t.Errorf("call seeds = %v, want %v", seeds, tt.wantSeeds)
			}
			if len(slices.Compact(slices.Clone(seeds))) != tt.n {
				t.Errorf("call seeds = %v, want %d different ones", seeds, tt.n)
			}

			if len(result.Images) != tt.n {
				t.Fatalf("got %d images, want %d", len(result.Images), tt.n)
			}
			for i, seed := range tt.wantSeeds {
				if want := fmt.Sprint("seed ", seed); string(result.Images[i].Data) != want {
					t.Errorf("image %d = %q, want %q, in call order", i, result.Images[i].Data, want)
				}
			}
			wantUsage := ImageUsage{InputTokens: 2 * tt.n, OutputTokens: 10 * tt.n, TotalTokens: 12 * tt.n}
			if result.Usage == nil || *result.Usage != wantUsage {
				t.Errorf("Usage = %+v, want %+v", result.Usage, wantUsage)
			}
		})
	}
}

// TestGeminiFanOutFailure checks that a failed call fails the request with
// its own error and cancels the calls still waiting.
func TestGeminiFanOutFailure(t *testing.T) {
	// The failing call answers only once the other two have arrived, so
	// that the cancellation has requests in flight to reach.
	var arrived, canceled sync.WaitGroup
	arrived.Add(2)
	canceled.Add(2)
	othersArrived := make(chan struct{})
	go func() {
		arrived.Wait()
		close(othersArrived)
	}()
	upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if seedOf(t, r) == 8 {
			select {
			case <-othersArrived:
			case <-time.After(10 * time.Second):
				t.Error("the other two calls did not arrive within 10s")
			}
			writeJSON(w, http.StatusBadRequest, `{"error":{"code":400,"message":"bad seed","status":"INVALID_ARGUMENT"}}`)
			return
		}
		arrived.Done()
		<-r.Context().Done()
		canceled.Done()
	})
	provider := Provider{ID: "g", Kind: "gemini", BaseURL: upstream.server.URL, APIKey: testAPIKey}
	req := ImageRequest{Model: "gemini-2.5-flash-image", Prompt: "a fox", N: 3,
		ExtraGoogle: map[string]json.RawMessage{"generationConfig": json.RawMessage(`{"seed":7}`)}}

	_, err := newTestClient(t, imageOptions()).GenerateImages(context.Background(), provider, req)
	var upstreamErr *UpstreamError
	if !errors.As(err, &upstreamErr) || upstreamErr.StatusCode != http.StatusBadRequest {
		t.Fatalf("GenerateImages() error = %v, want the failed call's HTTP 400", err)
	}
	// The test times out here unless both other calls were canceled.
	canceled.Wait()
}

// seedOf returns the generationConfig.seed of a generateContent request.
func seedOf(t *testing.T, r *http.Request) int64 {
	var body struct {
		GenerationConfig struct {
			Seed int64 `json:"seed"`
		} `json:"generationConfig"`
	}
	data, err := io.ReadAll(r.Body)
	if err == nil {
		err = json.Unmarshal(data, &body)
	}
	if err != nil {
		t.Errorf("decode request body: %v", err)
	}
	return body.GenerationConfig.Seed
}
