package mockupstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// imageRequest is the body of POST /v1/images/generations. Fields that the
// mock does not use, such as quality, style, background and user, are
// accepted and ignored, like any unknown field.
type imageRequest struct {
	Model             string `json:"model"`
	Prompt            string `json:"prompt"`
	N                 *int   `json:"n"`
	Size              string `json:"size"`
	ResponseFormat    string `json:"response_format"`
	OutputFormat      string `json:"output_format"`
	OutputCompression *int   `json:"output_compression"`
}

func (req imageRequest) count() int {
	if req.N == nil {
		return 1
	}
	return *req.N
}

func validateImageRequest(req imageRequest) error {
	invalid := func(param, message string) error {
		return &apiError{status: http.StatusBadRequest, errType: "invalid_request_error", param: param, message: message}
	}

	if strings.TrimSpace(req.Prompt) == "" {
		return invalid("prompt", "Missing required parameter: 'prompt'.")
	}
	if n := req.count(); n < 1 || n > maxImagesPerRequest {
		return invalid("n", fmt.Sprintf("Invalid 'n': %d is not from 1 to %d.", n, maxImagesPerRequest))
	}
	if req.Size != "" && req.Size != "auto" {
		if _, _, err := parseDimensions(req.Size, "x", maxAspectSide); err != nil {
			return invalid("size", fmt.Sprintf("Invalid 'size': %q, expected \"auto\" or WxH with sides from 1 to %d.", req.Size, maxAspectSide))
		}
	}

	switch req.ResponseFormat {
	case "", "b64_json", "url":
	default:
		return invalid("response_format", fmt.Sprintf("Invalid 'response_format': %q, expected \"b64_json\" or \"url\".", req.ResponseFormat))
	}

	// The mock always returns PNG and reports "png" in output_format, but
	// it accepts every format that OpenAI accepts.
	switch req.OutputFormat {
	case "", "png", "jpeg", "webp":
	default:
		return invalid("output_format", fmt.Sprintf("Invalid 'output_format': %q, expected png, jpeg or webp.", req.OutputFormat))
	}
	if c := req.OutputCompression; c != nil && (*c < 0 || *c > 100) {
		return invalid("output_compression", fmt.Sprintf("Invalid 'output_compression': %d is not from 0 to 100.", *c))
	}

	return nil
}

func (h *Handler) serveImageGenerations(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()

	var req imageRequest
	err := decodeJSONBody(w, r, &req)
	if err == nil {
		err = validateImageRequest(req)
	}
	if err == nil {
		err = h.serveDecodedImages(ctx, w, r, req)
	}
	if err == nil {
		return
	}

	if apiErr, ok := errors.AsType[*apiError](err); ok {
		writeAPIError(w, apiErr)
		return
	}
	h.logger.ErrorContext(ctx, "image generation failed", "error", err)
	writeAPIError(w, &apiError{status: http.StatusInternalServerError, errType: "server_error", message: err.Error()})
}

// serveDecodedImages returns an error only before it writes the response
// headers. Later failures mean the client is gone, so it logs them instead.
func (h *Handler) serveDecodedImages(ctx context.Context, w http.ResponseWriter, r *http.Request, req imageRequest) error {
	f, err := h.resolveFault(r.Header, req.Model)
	if err != nil {
		return err
	}
	overrides, err := h.parseImageOverrides(r.Header)
	if err != nil {
		return err
	}

	if f.isDownloadFault() {
		overrides.downloadFault, f = f, faultNone
	}
	if overrides.downloadFault != faultNone && req.ResponseFormat != "url" {
		return misplacedDownloadFault(overrides.downloadFault)
	}

	h.logger.DebugContext(ctx, "image generation", "model", req.Model, "n", req.count(), "size", req.Size,
		"response_format", req.ResponseFormat, "image_bytes", overrides.imageBytes, "fault", string(f))

	if apiErr := statusFaultError(f); apiErr != nil {
		if f == faultRateLimit {
			w.Header().Set("Retry-After", "1")
		}
		return apiErr
	}

	p := newPacer()
	defer p.stop()

	if f == faultSlowStart {
		if err := p.sleep(ctx, overrides.slowStart); err != nil {
			h.logImageStopped(ctx, imageGenerationsPath, err)
			return nil
		}
		f = faultNone
	}

	body, err := openAIImagesBody(r, req, overrides)
	if err != nil {
		return err
	}
	if err := h.sendImageBody(ctx, w, p, f, overrides.latency, body); err != nil {
		h.logImageStopped(ctx, imageGenerationsPath, err)
	}
	return nil
}

// openAIImagesBody builds an images response in OpenAI's format. With
// response_format "url", each entry links to /v1/mock-files/ on the host
// that the request addressed.
func openAIImagesBody(r *http.Request, req imageRequest, overrides imageOverrides) (*imageBody, error) {
	n := req.count()
	b := &imageBody{}

	b.buf = append(b.buf, `{"created":`...)
	b.buf = strconv.AppendInt(b.buf, time.Now().Unix(), 10)
	b.buf = append(b.buf, `,"data":[`...)

	var first imageSpec
	for i := range n {
		spec := newImageSpec(req.Prompt, i, req.Size, overrides.imageBytes)
		if i == 0 {
			first = spec
		} else {
			b.buf = append(b.buf, ',')
		}

		if req.ResponseFormat == "url" {
			b.buf = append(b.buf, `{"url":`...)
			b.buf = appendJSONString(b.buf, mockFileURL(r, spec, overrides.downloadFault))
		} else {
			b.buf = append(b.buf, `{"b64_json":"`...)
			if err := b.appendImage(spec); err != nil {
				return nil, err
			}
			b.buf = append(b.buf, '"')
		}

		b.buf = append(b.buf, `,"revised_prompt":`...)
		b.buf = appendJSONString(b.buf, fmt.Sprintf("Mock image %d of %d for: %s", i+1, n, quotePrompt(req.Prompt)))
		b.buf = append(b.buf, '}')
	}

	inputTokens := countWords(req.Prompt)
	outputTokens := n * imageOutputTokens

	b.buf = append(b.buf, `],"output_format":"png","size":`...)
	b.buf = appendJSONString(b.buf, fmt.Sprintf("%dx%d", first.width, first.height))
	b.buf = append(b.buf, `,"usage":{"input_tokens":`...)
	b.buf = strconv.AppendInt(b.buf, int64(inputTokens), 10)
	b.buf = append(b.buf, `,"output_tokens":`...)
	b.buf = strconv.AppendInt(b.buf, int64(outputTokens), 10)
	b.buf = append(b.buf, `,"total_tokens":`...)
	b.buf = strconv.AppendInt(b.buf, int64(inputTokens+outputTokens), 10)
	b.buf = append(b.buf, "}}"...)

	return b, nil
}
