package mockupstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

type testImagesResponse struct {
	Created int64 `json:"created"`
	Data    []struct {
		B64JSON       []byte `json:"b64_json"`
		URL           string `json:"url"`
		RevisedPrompt string `json:"revised_prompt"`
	} `json:"data"`
	OutputFormat string `json:"output_format"`
	Size         string `json:"size"`
	Usage        struct {
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

func imagesBody(fields map[string]any) []byte {
	body := map[string]any{"model": "mock-image", "prompt": "a red fox in the snow"}
	for key, value := range fields {
		if value == nil {
			delete(body, key)
			continue
		}
		body[key] = value
	}

	encoded, err := json.Marshal(body)
	if err != nil {
		panic(fmt.Sprintf("encode images body: %v", err))
	}
	return encoded
}

func mustPost(t *testing.T, client *http.Client, url string, body []byte, headers map[string]string) *http.Response {
	t.Helper()

	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	for name, value := range headers {
		req.Header.Set(name, value)
	}

	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func postImages(t *testing.T, client *http.Client, srv *Server, body []byte, headers map[string]string) *http.Response {
	t.Helper()
	return mustPost(t, client, srv.URL()+imageGenerationsPath, body, headers)
}

func readImages(t *testing.T, resp *http.Response) testImagesResponse {
	t.Helper()

	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200, body %.300s", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Content-Length"); got != strconv.Itoa(len(body)) {
		t.Errorf("Content-Length = %q, body has %d bytes", got, len(body))
	}

	var images testImagesResponse
	if err := json.Unmarshal(body, &images); err != nil {
		t.Fatalf("decode images response %.300s: %v", body, err)
	}
	return images
}

func getFile(t *testing.T, client *http.Client, url string) *http.Response {
	t.Helper()

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestImageGenerationsBase64(t *testing.T) {
	srv := startServer(t, Options{})
	client := newClient(t)

	resp := postImages(t, client, srv, imagesBody(map[string]any{
		"n": 3, "size": "1792x1024", "quality": "high", "style": "vivid", "background": "opaque",
		"output_format": "webp", "output_compression": 80, "user": "u1", "unknown_field": map[string]any{"x": 1},
	}), nil)
	images := readImages(t, resp)

	if len(images.Data) != 3 {
		t.Fatalf("got %d images, want 3", len(images.Data))
	}
	if images.Created == 0 {
		t.Error("created is 0")
	}
	if images.OutputFormat != "png" {
		t.Errorf("output_format = %q, want png", images.OutputFormat)
	}
	if images.Size != "64x37" {
		t.Errorf("size = %q, want 64x37", images.Size)
	}

	wantUsage := struct{ in, out int }{in: 6, out: 3 * imageOutputTokens}
	if images.Usage.InputTokens != wantUsage.in || images.Usage.OutputTokens != wantUsage.out ||
		images.Usage.TotalTokens != wantUsage.in+wantUsage.out {
		t.Errorf("usage = %+v, want input %d, output %d and their sum", images.Usage, wantUsage.in, wantUsage.out)
	}

	for i, data := range images.Data {
		if data.URL != "" {
			t.Errorf("image %d has url %q in b64_json mode", i, data.URL)
		}
		wantPrompt := fmt.Sprintf("Mock image %d of 3 for: a red fox in the snow", i+1)
		if data.RevisedPrompt != wantPrompt {
			t.Errorf("image %d revised_prompt = %q, want %q", i, data.RevisedPrompt, wantPrompt)
		}

		img, err := png.Decode(bytes.NewReader(data.B64JSON))
		if err != nil {
			t.Fatalf("image %d: decode PNG: %v", i, err)
		}
		if bounds := img.Bounds(); bounds.Dx() != 64 || bounds.Dy() != 37 {
			t.Errorf("image %d is %dx%d, want 64x37", i, bounds.Dx(), bounds.Dy())
		}
	}
	if bytes.Equal(images.Data[0].B64JSON, images.Data[1].B64JSON) {
		t.Error("images 0 and 1 are identical, want a different image per index")
	}
}

func TestImageGenerationsDeterministic(t *testing.T) {
	srv := startServer(t, Options{})
	client := newClient(t)

	fetch := func(prompt string) []byte {
		t.Helper()
		resp := postImages(t, client, srv, imagesBody(map[string]any{"prompt": prompt}), nil)
		return readImages(t, resp).Data[0].B64JSON
	}

	first, second, other := fetch("a red fox"), fetch("a red fox"), fetch("a grey wolf")
	if !bytes.Equal(first, second) {
		t.Error("equal requests returned different images")
	}
	if bytes.Equal(first, other) {
		t.Error("different prompts returned the same image")
	}
}

func TestImageBytesControl(t *testing.T) {
	tests := []struct {
		name       string
		optBytes   int
		header     string
		wantLength int
	}{
		{name: "header 4 MiB", header: "4194304", wantLength: 4 << 20},
		{name: "header 10000", header: "10000", wantLength: 10000},
		{name: "option", optBytes: 300_000, wantLength: 300_000},
		{name: "header overrides option", optBytes: 300_000, header: "20000", wantLength: 20000},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, Options{ImageBytes: tt.optBytes})
			client := newClient(t)

			headers := map[string]string{}
			if tt.header != "" {
				headers["X-Mock-Image-Bytes"] = tt.header
			}
			images := readImages(t, postImages(t, client, srv, imagesBody(map[string]any{"n": 2}), headers))

			for i, data := range images.Data {
				if len(data.B64JSON) != tt.wantLength {
					t.Errorf("image %d has %d bytes, want %d", i, len(data.B64JSON), tt.wantLength)
				}
				if _, err := png.Decode(bytes.NewReader(data.B64JSON)); err != nil {
					t.Errorf("image %d: decode PNG: %v", i, err)
				}
			}
		})
	}
}

func TestImageGenerationsURL(t *testing.T) {
	// Downloads must work without the key that generation needs.
	srv := startServer(t, Options{APIKey: "sk-mock"})
	client := newClient(t)
	auth := map[string]string{"Authorization": "Bearer sk-mock", "X-Mock-Image-Bytes": "50000"}

	urlImages := readImages(t, postImages(t, client, srv, imagesBody(map[string]any{"n": 2, "response_format": "url"}), auth))
	b64Images := readImages(t, postImages(t, client, srv, imagesBody(map[string]any{"n": 2}), auth))

	for i, data := range urlImages.Data {
		if !strings.HasPrefix(data.URL, srv.URL()+mockFilesPrefix) || !strings.HasSuffix(data.URL, ".png") {
			t.Fatalf("image %d url = %q, want %s%s*.png", i, data.URL, srv.URL(), mockFilesPrefix)
		}
		if len(data.B64JSON) != 0 {
			t.Errorf("image %d has b64_json in url mode", i)
		}

		resp := getFile(t, client, data.URL)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET image %d: status = %d, want 200", i, resp.StatusCode)
		}
		if got := resp.Header.Get("Content-Type"); got != "image/png" {
			t.Errorf("GET image %d: Content-Type = %q, want image/png", i, got)
		}
		downloaded, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET image %d: read body: %v", i, err)
		}
		if !bytes.Equal(downloaded, b64Images.Data[i].B64JSON) {
			t.Errorf("image %d: download (%d bytes) differs from the b64_json image (%d bytes)",
				i, len(downloaded), len(b64Images.Data[i].B64JSON))
		}
	}

	if got := srv.Stats(); got.Images != 2 || got.ImageFiles != 2 {
		t.Errorf("stats = %+v, want Images 2 and ImageFiles 2", got)
	}
}

func TestImageDownloadFaults(t *testing.T) {
	tests := []struct {
		name    string
		model   string
		headers map[string]string
		check   func(t *testing.T, resp *http.Response)
	}{
		{
			name:    "404 by header",
			headers: map[string]string{"X-Mock-Image-URL-Fault": "404"},
			check: func(t *testing.T, resp *http.Response) {
				if resp.StatusCode != http.StatusNotFound {
					t.Errorf("status = %d, want 404", resp.StatusCode)
				}
				readErrorBody(t, resp)
			},
		},
		{
			name:  "404 by model",
			model: "fault-url-404",
			check: func(t *testing.T, resp *http.Response) {
				if resp.StatusCode != http.StatusNotFound {
					t.Errorf("status = %d, want 404", resp.StatusCode)
				}
			},
		},
		{
			name:    "oversized",
			headers: map[string]string{"X-Mock-Image-URL-Fault": "oversized"},
			check: func(t *testing.T, resp *http.Response) {
				if resp.ContentLength != -1 {
					t.Errorf("ContentLength = %d, want -1 (unknown)", resp.ContentLength)
				}
				n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 8<<20))
				if err != nil || n != 8<<20 {
					t.Errorf("read %d bytes, %v, want at least 8 MiB", n, err)
				}
			},
		},
		{
			name:  "stall",
			model: "fault-url-stall",
			check: func(t *testing.T, resp *http.Response) {
				read := make(chan error, 1)
				go func() {
					_, err := resp.Body.Read(make([]byte, 1))
					read <- err
				}()
				select {
				case err := <-read:
					t.Errorf("read returned %v, want it to block", err)
				case <-time.After(200 * time.Millisecond):
				}
				resp.Body.Close()
			},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, Options{})
			client := newClient(t)

			model := tt.model
			if model == "" {
				model = "mock-image"
			}
			images := readImages(t, postImages(t, client, srv, imagesBody(map[string]any{"model": model, "response_format": "url"}), tt.headers))

			tt.check(t, getFile(t, client, images.Data[0].URL))
		})
	}
}

func TestImageFileInvalidNames(t *testing.T) {
	names := []string{
		"nothing.png",
		"0123456789abcdef-64x64-0.jpg",
		"0123456789abcdef-64x64-0-explode.png",
		"0123456789abcdef-0x64-0.png",
		"0123456789abcdef-100000x100000-0.png",
		"0123456789abcdef-64x64-30.png",
		"0123456789abcdef-64x64-999999999999.png",
		"xyz3456789abcdef-64x64-0.png",
	}

	srv := startServer(t, Options{})
	client := newClient(t)

	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			resp := getFile(t, client, srv.URL()+mockFilesPrefix+name)
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("status = %d, want 404", resp.StatusCode)
			}
			readErrorBody(t, resp)
		})
	}
}

func TestImageStatusFaults(t *testing.T) {
	tests := []struct {
		fault          string
		wantStatus     int
		wantCode       string
		wantRetryAfter string
	}{
		{fault: "429", wantStatus: http.StatusTooManyRequests, wantCode: "rate_limit_exceeded", wantRetryAfter: "1"},
		{fault: "500", wantStatus: http.StatusInternalServerError},
		{fault: "401", wantStatus: http.StatusUnauthorized, wantCode: "invalid_api_key"},
		{fault: "403", wantStatus: http.StatusForbidden, wantCode: "permission_denied"},
		{fault: "400", wantStatus: http.StatusBadRequest},
		{fault: "safety", wantStatus: http.StatusBadRequest, wantCode: "content_policy_violation"},
		{fault: "prompt-blocked", wantStatus: http.StatusBadRequest, wantCode: "content_policy_violation"},
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

				resp := postImages(t, client, srv, imagesBody(map[string]any{"model": model}), headers)
				if resp.StatusCode != tt.wantStatus {
					t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
				}
				if got := resp.Header.Get("Retry-After"); got != tt.wantRetryAfter {
					t.Errorf("Retry-After = %q, want %q", got, tt.wantRetryAfter)
				}

				errorBody := readErrorBody(t, resp)
				var code string
				if errorBody.Error.Code != nil {
					code = *errorBody.Error.Code
				}
				if code != tt.wantCode {
					t.Errorf("error code = %q, want %q", code, tt.wantCode)
				}
			})
		}
	}
}

// readBodyFault classifies how a response body ended: "ok" with valid JSON,
// "malformed" with invalid JSON, "cut" with an unexpected EOF.
func readBodyFault(t *testing.T, resp *http.Response) string {
	t.Helper()

	body, err := io.ReadAll(resp.Body)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "cut"
	case err != nil:
		t.Fatalf("read body: %v", err)
	case !json.Valid(body):
		return "malformed"
	}
	return "ok"
}

func TestImageBodyFaults(t *testing.T) {
	tests := []struct {
		fault string
		want  string
	}{
		{fault: "cut", want: "cut"},
		{fault: "cut-before-first", want: "cut"},
		{fault: "malformed", want: "malformed"},
		{fault: "slow-start", want: "ok"},
	}

	srv := startServer(t, Options{})
	client := newClient(t)

	for _, tt := range tests {
		for _, route := range []string{"openai", "gemini"} {
			t.Run(tt.fault+" on "+route, func(t *testing.T) {
				headers := map[string]string{"X-Mock-Fault": tt.fault, "X-Mock-Slow-Ms": "50", "X-Mock-Image-Bytes": "100000"}

				var resp *http.Response
				if route == "openai" {
					resp = postImages(t, client, srv, imagesBody(nil), headers)
				} else {
					resp = postGemini(t, client, srv, "mock-image", geminiBody("a fox", nil), headers)
				}

				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status = %d, want 200", resp.StatusCode)
				}
				if got := readBodyFault(t, resp); got != tt.want {
					t.Errorf("body ended as %q, want %q", got, tt.want)
				}
			})
		}
	}
}

func TestImageStallWaitsForClient(t *testing.T) {
	srv := startServer(t, Options{})
	client := newClient(t)

	resp := postImages(t, client, srv, imagesBody(map[string]any{"model": "fault-stall"}), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200", resp.StatusCode)
	}

	read := make(chan error, 1)
	go func() {
		_, err := resp.Body.Read(make([]byte, 1))
		read <- err
	}()
	select {
	case err := <-read:
		t.Fatalf("read returned %v, want it to block", err)
	case <-time.After(200 * time.Millisecond):
	}

	resp.Body.Close()
	waitForIdle(t, srv, 3*time.Second)
}

func TestImageFaultOnce(t *testing.T) {
	srv := startServer(t, Options{})
	client := newClient(t)

	statuses := make([]int, 3)
	for i := range statuses {
		resp := postImages(t, client, srv, imagesBody(map[string]any{"model": "fault-once-500"}), nil)
		io.Copy(io.Discard, resp.Body)
		statuses[i] = resp.StatusCode
	}

	want := []int{http.StatusInternalServerError, http.StatusOK, http.StatusOK}
	for i := range want {
		if statuses[i] != want[i] {
			t.Errorf("request %d status = %d, want %d", i, statuses[i], want[i])
		}
	}
}

func TestImageLatency(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		headers map[string]string
		want    time.Duration
	}{
		{name: "option", opts: Options{TimeToFirstToken: 200 * time.Millisecond}, want: 200 * time.Millisecond},
		{name: "header", headers: map[string]string{"X-Mock-TTFT-Ms": "150"}, want: 150 * time.Millisecond},
	}

	for _, tt := range tests {
		for _, route := range []string{"openai", "gemini"} {
			t.Run(tt.name+" on "+route, func(t *testing.T) {
				srv := startServer(t, tt.opts)
				client := newClient(t)

				start := time.Now()
				var resp *http.Response
				if route == "openai" {
					resp = postImages(t, client, srv, imagesBody(nil), tt.headers)
				} else {
					resp = postGemini(t, client, srv, "mock-image", geminiBody("a fox", nil), tt.headers)
				}
				io.Copy(io.Discard, resp.Body)
				elapsed := time.Since(start)

				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status = %d, want 200", resp.StatusCode)
				}
				if elapsed < tt.want {
					t.Errorf("response took %v, want at least %v", elapsed, tt.want)
				}
				if elapsed > tt.want+2*time.Second {
					t.Errorf("response took %v, want about %v", elapsed, tt.want)
				}
			})
		}
	}
}

func TestImageRequestValidation(t *testing.T) {
	tests := []struct {
		name      string
		body      []byte
		headers   map[string]string
		wantParam string
	}{
		{name: "missing prompt", body: imagesBody(map[string]any{"prompt": nil}), wantParam: "prompt"},
		{name: "blank prompt", body: imagesBody(map[string]any{"prompt": "  "}), wantParam: "prompt"},
		{name: "n zero", body: imagesBody(map[string]any{"n": 0}), wantParam: "n"},
		{name: "n eleven", body: imagesBody(map[string]any{"n": 11}), wantParam: "n"},
		{name: "size without x", body: imagesBody(map[string]any{"size": "1024"}), wantParam: "size"},
		{name: "size with colon", body: imagesBody(map[string]any{"size": "16:9"}), wantParam: "size"},
		{name: "size zero side", body: imagesBody(map[string]any{"size": "0x1024"}), wantParam: "size"},
		{name: "unknown response_format", body: imagesBody(map[string]any{"response_format": "binary"}), wantParam: "response_format"},
		{name: "unknown output_format", body: imagesBody(map[string]any{"output_format": "gif"}), wantParam: "output_format"},
		{name: "output_compression 101", body: imagesBody(map[string]any{"output_compression": 101}), wantParam: "output_compression"},
		{name: "n as string", body: imagesBody(map[string]any{"n": "2"})},
		{name: "invalid JSON", body: []byte(`{"prompt":`)},
		{name: "negative X-Mock-Image-Bytes", body: imagesBody(nil), headers: map[string]string{"X-Mock-Image-Bytes": "-1"}, wantParam: "X-Mock-Image-Bytes"},
		{name: "huge X-Mock-Image-Bytes", body: imagesBody(nil), headers: map[string]string{"X-Mock-Image-Bytes": "999999999999"}, wantParam: "X-Mock-Image-Bytes"},
		{name: "unknown X-Mock-Image-URL-Fault", body: imagesBody(map[string]any{"response_format": "url"}), headers: map[string]string{"X-Mock-Image-URL-Fault": "500"}, wantParam: "X-Mock-Image-URL-Fault"},
		{name: "URL fault header in b64_json mode", body: imagesBody(nil), headers: map[string]string{"X-Mock-Image-URL-Fault": "404"}},
		{name: "URL fault model in b64_json mode", body: imagesBody(map[string]any{"model": "fault-url-404"})},
	}

	srv := startServer(t, Options{})
	client := newClient(t)

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := postImages(t, client, srv, tt.body, tt.headers)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status = %d, want 400", resp.StatusCode)
			}

			errorBody := readErrorBody(t, resp)
			if tt.wantParam == "" {
				return
			}
			if errorBody.Error.Param == nil || *errorBody.Error.Param != tt.wantParam {
				t.Errorf("error param = %v, want %q", errorBody.Error.Param, tt.wantParam)
			}
		})
	}
}

func TestImageRoutesRejectWrongMethod(t *testing.T) {
	srv := startServer(t, Options{})
	client := newClient(t)

	resp := getFile(t, client, srv.URL()+imageGenerationsPath)
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET %s: status = %d, want 405", imageGenerationsPath, resp.StatusCode)
	}

	resp = mustPost(t, client, srv.URL()+mockFilesPrefix+"0123456789abcdef-64x64-0.png", nil, nil)
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST %s: status = %d, want 405", mockFilesPrefix, resp.StatusCode)
	}
}

func TestChatRejectsDownloadFault(t *testing.T) {
	srv := startServer(t, Options{})
	client := newClient(t)

	resp := mustPostChat(t, client, srv, chatBody("fault-url-404", "hi", nil), nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status = %d, want 400", resp.StatusCode)
	}
	if message := readErrorBody(t, resp).Error.Message; !strings.Contains(message, imageGenerationsPath) {
		t.Errorf("message %q does not name %s", message, imageGenerationsPath)
	}
}

func TestImageKeyRules(t *testing.T) {
	tests := []struct {
		name       string
		apiKey     string
		key        string
		wantStatus int
	}{
		{name: "bad- key", key: "bad-1", wantStatus: http.StatusUnauthorized},
		{name: "forbidden- key", key: "forbidden-1", wantStatus: http.StatusForbidden},
		{name: "any key without APIKey", key: "whatever", wantStatus: http.StatusOK},
		{name: "missing key", apiKey: "sk-mock", wantStatus: http.StatusUnauthorized},
		{name: "wrong key", apiKey: "sk-mock", key: "sk-other", wantStatus: http.StatusUnauthorized},
		{name: "right key", apiKey: "sk-mock", key: "sk-mock", wantStatus: http.StatusOK},
	}

	for _, tt := range tests {
		for _, route := range []string{"openai", "gemini"} {
			t.Run(tt.name+" on "+route, func(t *testing.T) {
				srv := startServer(t, Options{APIKey: tt.apiKey})
				client := newClient(t)

				headers := map[string]string{}
				var resp *http.Response
				if route == "openai" {
					if tt.key != "" {
						headers["Authorization"] = "Bearer " + tt.key
					}
					resp = postImages(t, client, srv, imagesBody(nil), headers)
				} else {
					if tt.key != "" {
						headers["x-goog-api-key"] = tt.key
					}
					resp = postGemini(t, client, srv, "mock-image", geminiBody("a fox", nil), headers)
				}

				if resp.StatusCode != tt.wantStatus {
					t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
				}
				if tt.wantStatus == http.StatusOK {
					return
				}
				if route == "gemini" {
					readGeminiError(t, resp)
				} else {
					readErrorBody(t, resp)
				}
			})
		}
	}
}

func TestStatsCountsImageRoutes(t *testing.T) {
	srv := startServer(t, Options{})
	client := newClient(t)

	images := readImages(t, postImages(t, client, srv, imagesBody(map[string]any{"response_format": "url"}), nil))
	io.Copy(io.Discard, getFile(t, client, images.Data[0].URL).Body)
	io.Copy(io.Discard, postGemini(t, client, srv, "mock-image", geminiBody("a fox", nil), nil).Body)

	// A handler may still be returning after its client read the body.
	waitForIdle(t, srv, 3*time.Second)

	want := Stats{Images: 2, ImageFiles: 1}
	if got := srv.Stats(); got != want {
		t.Errorf("stats = %+v, want %+v", got, want)
	}
	if got := srv.Stats().Total(); got != 3 {
		t.Errorf("total = %d, want 3", got)
	}
}
