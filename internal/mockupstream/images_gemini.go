package mockupstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

const (
	geminiModelsPrefix          = "/v1beta/models/"
	geminiGenerateContentSuffix = ":generateContent"
	maxGeminiCandidates         = 8
)

// geminiGenerateContentModel returns the model of a path of the form
// /v1beta/models/{model}:generateContent.
func geminiGenerateContentModel(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, geminiModelsPrefix)
	if !ok {
		return "", false
	}
	model, ok := strings.CutSuffix(rest, geminiGenerateContentSuffix)
	if !ok || model == "" || strings.Contains(model, "/") {
		return "", false
	}
	return model, true
}

// geminiRequest is the part of a generateContent body that the mock reads.
// Other fields, such as safetySettings and systemInstruction, are accepted
// and ignored.
type geminiRequest struct {
	Contents []struct {
		Role  string `json:"role"`
		Parts []struct {
			Text *string `json:"text"`
		} `json:"parts"`
	} `json:"contents"`
	GenerationConfig *struct {
		CandidateCount     *int     `json:"candidateCount"`
		Seed               *int32   `json:"seed"`
		ResponseModalities []string `json:"responseModalities"`
		ImageConfig        *struct {
			AspectRatio string `json:"aspectRatio"`
		} `json:"imageConfig"`
	} `json:"generationConfig"`
}

// prompt joins the text parts of the user contents, one per line.
func (req geminiRequest) prompt() string {
	var texts []string
	for _, content := range req.Contents {
		if content.Role != "" && content.Role != "user" {
			continue
		}
		for _, part := range content.Parts {
			if part.Text != nil && *part.Text != "" {
				texts = append(texts, *part.Text)
			}
		}
	}
	return strings.Join(texts, "\n")
}

func (req geminiRequest) candidateCount() int {
	if req.GenerationConfig == nil || req.GenerationConfig.CandidateCount == nil {
		return 1
	}
	return *req.GenerationConfig.CandidateCount
}

// imageKey is the prompt, followed by the seed when the request sets one,
// so that calls with different seeds get different images.
func (req geminiRequest) imageKey() string {
	if req.GenerationConfig == nil || req.GenerationConfig.Seed == nil {
		return req.prompt()
	}
	return req.prompt() + "\x00seed " + strconv.FormatInt(int64(*req.GenerationConfig.Seed), 10)
}

func (req geminiRequest) aspectRatio() string {
	if req.GenerationConfig == nil || req.GenerationConfig.ImageConfig == nil {
		return ""
	}
	return req.GenerationConfig.ImageConfig.AspectRatio
}

// wantsImage reports whether responseModalities, when present, lists IMAGE.
// Gemini returns only text when it does not.
func (req geminiRequest) wantsImage() bool {
	if req.GenerationConfig == nil || len(req.GenerationConfig.ResponseModalities) == 0 {
		return true
	}
	for _, modality := range req.GenerationConfig.ResponseModalities {
		if strings.EqualFold(modality, "IMAGE") {
			return true
		}
	}
	return false
}

func validateGeminiRequest(req geminiRequest) error {
	invalid := func(message string) error {
		return &apiError{status: http.StatusBadRequest, message: message}
	}

	if len(req.Contents) == 0 {
		return invalid("* GenerateContentRequest.contents: contents is not specified")
	}
	if strings.TrimSpace(req.prompt()) == "" {
		return invalid("* GenerateContentRequest.contents: no user content has a non-empty text part")
	}
	if n := req.candidateCount(); n < 1 || n > maxGeminiCandidates {
		return invalid(fmt.Sprintf("* GenerateContentRequest.generation_config.candidate_count: %d is not from 1 to %d", n, maxGeminiCandidates))
	}
	if req.GenerationConfig != nil {
		for _, modality := range req.GenerationConfig.ResponseModalities {
			if !strings.EqualFold(modality, "TEXT") && !strings.EqualFold(modality, "IMAGE") {
				return invalid(fmt.Sprintf("* GenerateContentRequest.generation_config.response_modalities: %q is not TEXT or IMAGE", modality))
			}
		}
	}
	if ratio := req.aspectRatio(); ratio != "" {
		if _, _, err := parseDimensions(ratio, ":", maxAspectSide); err != nil {
			return invalid(fmt.Sprintf("* GenerateContentRequest.generation_config.image_config.aspect_ratio: %v", err))
		}
	}
	return nil
}

func (h *Handler) serveGenerateContent(w http.ResponseWriter, r *http.Request, model string) {
	ctx := r.Context()

	err := h.checkGeminiKey(r)
	if err == nil && r.Method != http.MethodPost {
		err = methodNotAllowed(r, http.MethodPost)
	}

	var req geminiRequest
	if err == nil {
		err = decodeJSONBody(w, r, &req)
	}
	if err == nil {
		err = validateGeminiRequest(req)
	}
	if err == nil {
		err = h.serveDecodedGenerateContent(ctx, w, r, model, req)
	}
	if err == nil {
		return
	}

	if apiErr, ok := errors.AsType[*apiError](err); ok {
		writeGeminiError(w, apiErr)
		return
	}
	h.logger.ErrorContext(ctx, "generate content failed", "model", model, "error", err)
	writeGeminiError(w, &apiError{status: http.StatusInternalServerError, message: err.Error()})
}

// checkGeminiKey applies the key rules of the OpenAI routes to the
// x-goog-api-key header.
func (h *Handler) checkGeminiKey(r *http.Request) error {
	key := r.Header.Get("X-Goog-Api-Key")
	if apiErr := h.checkKey(key, key != "", key != "", "the x-goog-api-key header"); apiErr != nil {
		return apiErr
	}
	return nil
}

// serveDecodedGenerateContent returns an error only before it writes the
// response headers. Later failures mean the client is gone, so it logs them.
func (h *Handler) serveDecodedGenerateContent(ctx context.Context, w http.ResponseWriter, r *http.Request, model string, req geminiRequest) error {
	f, err := h.resolveFault(r.Header, model)
	if err != nil {
		return err
	}
	if f.isDownloadFault() {
		return misplacedDownloadFault(f)
	}
	overrides, err := h.parseImageOverrides(r.Header)
	if err != nil {
		return err
	}
	if overrides.downloadFault != faultNone {
		return misplacedDownloadFault(overrides.downloadFault)
	}

	h.logger.DebugContext(ctx, "generate content", "model", model, "candidates", req.candidateCount(),
		"image_bytes", overrides.imageBytes, "fault", string(f))

	if f != faultSafety && f != faultPromptBlocked {
		if apiErr := statusFaultError(f); apiErr != nil {
			if f == faultRateLimit {
				w.Header().Set("Retry-After", "1")
			}
			return apiErr
		}
	}

	p := newPacer()
	defer p.stop()

	if f == faultSlowStart {
		if err := p.sleep(ctx, overrides.slowStart); err != nil {
			h.logImageStopped(ctx, geminiModelsPrefix, err)
			return nil
		}
		f = faultNone
	}

	body, err := geminiResponseBody(model, req, overrides, f)
	if err != nil {
		return err
	}
	if err := h.sendImageBody(ctx, w, p, f, overrides.latency, body); err != nil {
		h.logImageStopped(ctx, geminiModelsPrefix, err)
	}
	return nil
}

// geminiResponseBody builds a GenerateContentResponse. Each candidate holds
// a text part and, unless responseModalities leaves out IMAGE, one PNG as
// inlineData. The safety fault blocks every candidate with finishReason
// SAFETY, and prompt-blocked sends promptFeedback.blockReason and no
// candidates.
func geminiResponseBody(model string, req geminiRequest, overrides imageOverrides, f fault) (*imageBody, error) {
	prompt := req.prompt()
	n := req.candidateCount()
	promptTokens := countWords(prompt)
	candidateTokens := 0

	b := &imageBody{}
	switch f {
	case faultPromptBlocked:
		b.buf = append(b.buf, `{"promptFeedback":{"blockReason":"SAFETY","safetyRatings":[`+
			`{"category":"HARM_CATEGORY_DANGEROUS_CONTENT","probability":"HIGH","blocked":true}]}`...)

	case faultSafety:
		b.buf = append(b.buf, `{"candidates":[`...)
		for i := range n {
			if i > 0 {
				b.buf = append(b.buf, ',')
			}
			b.buf = append(b.buf, `{"finishReason":"SAFETY","index":`...)
			b.buf = strconv.AppendInt(b.buf, int64(i), 10)
			b.buf = append(b.buf, `,"safetyRatings":[{"category":"HARM_CATEGORY_DANGEROUS_CONTENT","probability":"HIGH","blocked":true}]}`...)
		}
		b.buf = append(b.buf, ']')

	default:
		b.buf = append(b.buf, `{"candidates":[`...)
		for i := range n {
			if i > 0 {
				b.buf = append(b.buf, ',')
			}
			text := fmt.Sprintf("Mock image %d of %d for: %s", i+1, n, quotePrompt(prompt))
			b.buf = append(b.buf, `{"content":{"role":"model","parts":[{"text":`...)
			b.buf = appendJSONString(b.buf, text)
			b.buf = append(b.buf, '}')
			candidateTokens += countWords(text)

			if req.wantsImage() {
				spec := newImageSpec(req.imageKey(), i, req.aspectRatio(), overrides.imageBytes)
				b.buf = append(b.buf, `,{"inlineData":{"mimeType":"image/png","data":"`...)
				if err := b.appendImage(spec); err != nil {
					return nil, err
				}
				b.buf = append(b.buf, `"}}`...)
				candidateTokens += geminiImageTokens
			}

			b.buf = append(b.buf, `]},"finishReason":"STOP","index":`...)
			b.buf = strconv.AppendInt(b.buf, int64(i), 10)
			b.buf = append(b.buf, '}')
		}
		b.buf = append(b.buf, ']')
	}

	b.buf = append(b.buf, `,"usageMetadata":{"promptTokenCount":`...)
	b.buf = strconv.AppendInt(b.buf, int64(promptTokens), 10)
	if candidateTokens > 0 {
		b.buf = append(b.buf, `,"candidatesTokenCount":`...)
		b.buf = strconv.AppendInt(b.buf, int64(candidateTokens), 10)
	}
	b.buf = append(b.buf, `,"totalTokenCount":`...)
	b.buf = strconv.AppendInt(b.buf, int64(promptTokens+candidateTokens), 10)
	b.buf = append(b.buf, `},"modelVersion":`...)
	b.buf = appendJSONString(b.buf, model)
	b.buf = append(b.buf, '}')

	return b, nil
}

// writeGeminiError writes e in Google's error format:
// {"error":{"code":...,"message":...,"status":...}}.
func writeGeminiError(w http.ResponseWriter, e *apiError) {
	body := struct {
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Status  string `json:"status"`
		} `json:"error"`
	}{}
	body.Error.Code = e.status
	body.Error.Message = e.message
	body.Error.Status = googleStatus(e.status)

	// Marshal cannot fail for a struct of strings and an integer.
	encoded, _ := json.Marshal(body)

	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(e.status)
	// A failed write means the client has disconnected, so the error is dropped.
	_, _ = w.Write(encoded)
}

// googleStatus returns the google.rpc.Code name that Google APIs send with
// an HTTP status.
func googleStatus(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "UNAUTHENTICATED"
	case status == http.StatusForbidden:
		return "PERMISSION_DENIED"
	case status == http.StatusNotFound:
		return "NOT_FOUND"
	case status == http.StatusTooManyRequests:
		return "RESOURCE_EXHAUSTED"
	case status == http.StatusServiceUnavailable:
		return "UNAVAILABLE"
	case status == http.StatusGatewayTimeout:
		return "DEADLINE_EXCEEDED"
	case status >= 500:
		return "INTERNAL"
	default:
		return "INVALID_ARGUMENT"
	}
}
