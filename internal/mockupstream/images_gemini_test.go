package mockupstream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"testing"
)

type testGeminiResponse struct {
	Candidates []struct {
		Content *struct {
			Role  string `json:"role"`
			Parts []struct {
				Text       string `json:"text"`
				InlineData *struct {
					MimeType string `json:"mimeType"`
					Data     []byte `json:"data"`
				} `json:"inlineData"`
			} `json:"parts"`
		} `json:"content"`
		FinishReason string `json:"finishReason"`
		Index        int    `json:"index"`
	} `json:"candidates"`
	PromptFeedback *struct {
		BlockReason string `json:"blockReason"`
	} `json:"promptFeedback"`
	UsageMetadata struct {
		PromptTokenCount     int `json:"promptTokenCount"`
		CandidatesTokenCount int `json:"candidatesTokenCount"`
		TotalTokenCount      int `json:"totalTokenCount"`
	} `json:"usageMetadata"`
	ModelVersion string `json:"modelVersion"`
}

type testGeminiError struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
	} `json:"error"`
}

func geminiBody(prompt string, generationConfig map[string]any) []byte {
	body := map[string]any{
		"contents": []map[string]any{{"role": "user", "parts": []map[string]any{{"text": prompt}}}},
	}
	if generationConfig != nil {
		body["generationConfig"] = generationConfig
	}

	encoded, err := json.Marshal(body)
	if err != nil {
		panic(fmt.Sprintf("encode gemini body: %v", err))
	}
	return encoded
}

func geminiURL(srv *Server, model string) string {
	return srv.URL() + geminiModelsPrefix + url.PathEscape(model) + geminiGenerateContentSuffix
}

func postGemini(t *testing.T, client *http.Client, srv *Server, model string, body []byte, headers map[string]string) *http.Response {
	t.Helper()
	return mustPost(t, client, geminiURL(srv, model), body, headers)
}

func readGemini(t *testing.T, resp *http.Response) testGeminiResponse {
	t.Helper()

	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200, body %.300s", resp.StatusCode, body)
	}

	var decoded testGeminiResponse
	if err := json.Unmarshal(body, &decoded); err != nil {
		t.Fatalf("decode generateContent response %.300s: %v", body, err)
	}
	return decoded
}

func readGeminiError(t *testing.T, resp *http.Response) testGeminiError {
	t.Helper()

	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}

	var decoded testGeminiError
	if err := json.Unmarshal(body, &decoded); err != nil {
		t.Fatalf("decode Gemini error %s: %v", body, err)
	}
	if decoded.Error.Code != resp.StatusCode {
		t.Errorf("error code = %d, want the HTTP status %d", decoded.Error.Code, resp.StatusCode)
	}
	if decoded.Error.Message == "" || decoded.Error.Status == "" {
		t.Errorf("error message or status is empty in %s", body)
	}
	return decoded
}

func TestGenerateContentImages(t *testing.T) {
	srv := startServer(t, Options{})
	client := newClient(t)

	config := map[string]any{"candidateCount": 2, "imageConfig": map[string]any{"aspectRatio": "16:9"}, "temperature": 0.4}
	decoded := readGemini(t, postGemini(t, client, srv, "gemini-2.5-flash-image", geminiBody("a red fox", config), nil))

	if len(decoded.Candidates) != 2 {
		t.Fatalf("got %d candidates, want 2", len(decoded.Candidates))
	}
	if decoded.ModelVersion != "gemini-2.5-flash-image" {
		t.Errorf("modelVersion = %q, want gemini-2.5-flash-image", decoded.ModelVersion)
	}

	var images [][]byte
	for i, candidate := range decoded.Candidates {
		if candidate.FinishReason != "STOP" || candidate.Index != i {
			t.Errorf("candidate %d: finishReason %q, index %d, want STOP and %d", i, candidate.FinishReason, candidate.Index, i)
		}
		if candidate.Content == nil || candidate.Content.Role != "model" || len(candidate.Content.Parts) != 2 {
			t.Fatalf("candidate %d content = %+v, want role model with a text and an image part", i, candidate.Content)
		}

		inline := candidate.Content.Parts[1].InlineData
		if inline == nil || inline.MimeType != "image/png" {
			t.Fatalf("candidate %d image part = %+v, want inlineData of image/png", i, inline)
		}
		img, err := png.Decode(bytes.NewReader(inline.Data))
		if err != nil {
			t.Fatalf("candidate %d: decode PNG: %v", i, err)
		}
		if bounds := img.Bounds(); bounds.Dx() != 64 || bounds.Dy() != 36 {
			t.Errorf("candidate %d image is %dx%d, want 64x36", i, bounds.Dx(), bounds.Dy())
		}
		images = append(images, inline.Data)
	}
	if bytes.Equal(images[0], images[1]) {
		t.Error("both candidates carry the same image")
	}

	usage := decoded.UsageMetadata
	if usage.PromptTokenCount != 3 || usage.CandidatesTokenCount < 2*geminiImageTokens ||
		usage.TotalTokenCount != usage.PromptTokenCount+usage.CandidatesTokenCount {
		t.Errorf("usageMetadata = %+v, want 3 prompt tokens, at least %d candidate tokens and their sum", usage, 2*geminiImageTokens)
	}
}

func TestGenerateContentMatchesOpenAIImage(t *testing.T) {
	srv := startServer(t, Options{})
	client := newClient(t)
	headers := map[string]string{"X-Mock-Image-Bytes": "30000"}

	gemini := readGemini(t, postGemini(t, client, srv, "mock-image", geminiBody("a red fox", nil), headers))
	openAI := readImages(t, postImages(t, client, srv, imagesBody(map[string]any{"prompt": "a red fox"}), headers))

	data := gemini.Candidates[0].Content.Parts[1].InlineData.Data
	if len(data) != 30000 {
		t.Errorf("Gemini image has %d bytes, want 30000", len(data))
	}
	if !bytes.Equal(data, openAI.Data[0].B64JSON) {
		t.Error("the routes returned different images for the same prompt, index and square size")
	}
}

// TestGenerateContentSeed checks that the seed picks the image: equal seeds
// give equal images, and different seeds different ones.
func TestGenerateContentSeed(t *testing.T) {
	srv := startServer(t, Options{})
	client := newClient(t)
	image := func(config map[string]any) []byte {
		t.Helper()
		decoded := readGemini(t, postGemini(t, client, srv, "mock-image", geminiBody("a red fox", config), nil))
		return decoded.Candidates[0].Content.Parts[1].InlineData.Data
	}

	tests := []struct {
		name     string
		a, b     map[string]any
		wantSame bool
	}{
		{name: "same seed", a: map[string]any{"seed": 1}, b: map[string]any{"seed": 1}, wantSame: true},
		{name: "different seeds", a: map[string]any{"seed": 1}, b: map[string]any{"seed": 2}},
		{name: "seed and none", a: map[string]any{"seed": 1}, b: nil},
		{name: "no seed twice", a: nil, b: nil, wantSame: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if same := bytes.Equal(image(tt.a), image(tt.b)); same != tt.wantSame {
				t.Errorf("images equal = %v, want %v", same, tt.wantSame)
			}
		})
	}
}

func TestGenerateContentTextOnly(t *testing.T) {
	srv := startServer(t, Options{})
	client := newClient(t)

	decoded := readGemini(t, postGemini(t, client, srv, "mock-image", geminiBody("a fox", map[string]any{"responseModalities": []string{"TEXT"}}), nil))

	parts := decoded.Candidates[0].Content.Parts
	if len(parts) != 1 || parts[0].InlineData != nil || parts[0].Text == "" {
		t.Errorf("parts = %+v, want one text part", parts)
	}
}

func TestGenerateContentSafetyFaults(t *testing.T) {
	srv := startServer(t, Options{})
	client := newClient(t)

	t.Run("safety", func(t *testing.T) {
		decoded := readGemini(t, postGemini(t, client, srv, "fault-safety", geminiBody("a fox", map[string]any{"candidateCount": 2}), nil))

		if len(decoded.Candidates) != 2 {
			t.Fatalf("got %d candidates, want 2", len(decoded.Candidates))
		}
		for i, candidate := range decoded.Candidates {
			if candidate.FinishReason != "SAFETY" {
				t.Errorf("candidate %d finishReason = %q, want SAFETY", i, candidate.FinishReason)
			}
			if candidate.Content != nil {
				t.Errorf("candidate %d has content %+v, want none", i, candidate.Content)
			}
		}
	})

	t.Run("prompt-blocked", func(t *testing.T) {
		decoded := readGemini(t, postGemini(t, client, srv, "mock-image", geminiBody("a fox", nil), map[string]string{"X-Mock-Fault": "prompt-blocked"}))

		if len(decoded.Candidates) != 0 {
			t.Errorf("got %d candidates, want none", len(decoded.Candidates))
		}
		if decoded.PromptFeedback == nil || decoded.PromptFeedback.BlockReason != "SAFETY" {
			t.Errorf("promptFeedback = %+v, want blockReason SAFETY", decoded.PromptFeedback)
		}
	})
}

func TestGenerateContentStatusFaults(t *testing.T) {
	tests := []struct {
		fault          string
		wantStatus     int
		wantGRPC       string
		wantRetryAfter string
	}{
		{fault: "429", wantStatus: http.StatusTooManyRequests, wantGRPC: "RESOURCE_EXHAUSTED", wantRetryAfter: "1"},
		{fault: "500", wantStatus: http.StatusInternalServerError, wantGRPC: "INTERNAL"},
		{fault: "401", wantStatus: http.StatusUnauthorized, wantGRPC: "UNAUTHENTICATED"},
		{fault: "403", wantStatus: http.StatusForbidden, wantGRPC: "PERMISSION_DENIED"},
		{fault: "400", wantStatus: http.StatusBadRequest, wantGRPC: "INVALID_ARGUMENT"},
	}

	srv := startServer(t, Options{})
	client := newClient(t)

	for _, tt := range tests {
		for _, via := range []string{"header", "model"} {
			t.Run(tt.fault+" by "+via, func(t *testing.T) {
				model, headers := "mock-image", map[string]string{"X-Mock-Fault": tt.fault}
				if via == "model" {
					model, headers = "fault-"+tt.fault, nil
				}

				resp := postGemini(t, client, srv, model, geminiBody("a fox", nil), headers)
				if resp.StatusCode != tt.wantStatus {
					t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
				}
				if got := resp.Header.Get("Retry-After"); got != tt.wantRetryAfter {
					t.Errorf("Retry-After = %q, want %q", got, tt.wantRetryAfter)
				}
				if got := readGeminiError(t, resp).Error.Status; got != tt.wantGRPC {
					t.Errorf("error status = %q, want %q", got, tt.wantGRPC)
				}
			})
		}
	}
}

func TestGenerateContentValidation(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		path       string
		body       []byte
		headers    map[string]string
		wantStatus int
	}{
		{name: "no contents", body: []byte(`{"contents":[]}`), wantStatus: http.StatusBadRequest},
		{name: "no text", body: []byte(`{"contents":[{"role":"user","parts":[{"text":""}]}]}`), wantStatus: http.StatusBadRequest},
		{name: "only model text", body: []byte(`{"contents":[{"role":"model","parts":[{"text":"hi"}]}]}`), wantStatus: http.StatusBadRequest},
		{name: "candidateCount 9", body: geminiBody("a fox", map[string]any{"candidateCount": 9}), wantStatus: http.StatusBadRequest},
		{name: "candidateCount 0", body: geminiBody("a fox", map[string]any{"candidateCount": 0}), wantStatus: http.StatusBadRequest},
		{name: "unknown modality", body: geminiBody("a fox", map[string]any{"responseModalities": []string{"AUDIO"}}), wantStatus: http.StatusBadRequest},
		{name: "invalid aspectRatio", body: geminiBody("a fox", map[string]any{"imageConfig": map[string]any{"aspectRatio": "wide"}}), wantStatus: http.StatusBadRequest},
		{name: "invalid JSON", body: []byte(`{"contents":`), wantStatus: http.StatusBadRequest},
		{name: "download fault", body: geminiBody("a fox", nil), headers: map[string]string{"X-Mock-Fault": "url-404"}, wantStatus: http.StatusBadRequest},
		{name: "download fault header", body: geminiBody("a fox", nil), headers: map[string]string{"X-Mock-Image-URL-Fault": "stall"}, wantStatus: http.StatusBadRequest},
		{name: "unknown fault", body: geminiBody("a fox", nil), headers: map[string]string{"X-Mock-Fault": "explode"}, wantStatus: http.StatusBadRequest},
		{name: "GET", method: http.MethodGet, wantStatus: http.StatusMethodNotAllowed},
	}

	srv := startServer(t, Options{})
	client := newClient(t)

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			req, err := http.NewRequestWithContext(t.Context(), method, geminiURL(srv, "mock-image"), bytes.NewReader(tt.body))
			if err != nil {
				t.Fatalf("new request: %v", err)
			}
			for name, value := range tt.headers {
				req.Header.Set(name, value)
			}

			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", method, err)
			}
			defer resp.Body.Close()

			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			readGeminiError(t, resp)
		})
	}
}

func TestGeminiPathParsing(t *testing.T) {
	tests := []struct {
		path      string
		wantModel string
		wantOK    bool
	}{
		{path: "/v1beta/models/gemini-2.5-flash-image:generateContent", wantModel: "gemini-2.5-flash-image", wantOK: true},
		{path: "/v1beta/models/fault-429:generateContent", wantModel: "fault-429", wantOK: true},
		{path: "/v1beta/models/:generateContent"},
		{path: "/v1beta/models/a/b:generateContent"},
		{path: "/v1beta/models/m:streamGenerateContent"},
		{path: "/v1/models/m:generateContent"},
	}

	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			model, ok := geminiGenerateContentModel(tt.path)
			if model != tt.wantModel || ok != tt.wantOK {
				t.Errorf("geminiGenerateContentModel(%q) = %q, %v, want %q, %v", tt.path, model, ok, tt.wantModel, tt.wantOK)
			}
		})
	}
}
