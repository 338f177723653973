package mockupstream

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

const (
	modelsPath           = "/v1/models"
	chatCompletionsPath  = "/v1/chat/completions"
	imageGenerationsPath = "/v1/images/generations"

	// modelCreated is the fixed "created" timestamp of listed models, so the
	// /v1/models body is the same on every run.
	modelCreated = 1700000000

	maxRequestBodyBytes = 16 << 20
)

// Options configures a mock upstream.
type Options struct {
	// TokensPerSecond paces content chunks. Zero or a negative value sends
	// them without delay.
	TokensPerSecond float64

	// TimeToFirstToken is the delay between sending the response headers and
	// sending the first chunk of a stream. A non-streaming response waits
	// this delay plus the token intervals. A negative value counts as zero.
	TimeToFirstToken time.Duration

	// Models are the ids that /v1/models lists. Empty means "mock-gpt" and
	// "mock-gpt-mini".
	Models []string

	// APIKey, when not empty, is the key that every request must send as
	// "Authorization: Bearer <key>", or in the x-goog-api-key header on the
	// Gemini route. Other requests get a 401 error. Image downloads from
	// /v1/mock-files/ need no key.
	APIKey string

	// ImageBytes is the length in bytes of each generated PNG. Zero or a
	// negative value generates a small image whose longer side is 64
	// pixels. The X-Mock-Image-Bytes header overrides it per request.
	ImageBytes int

	// Logger receives debug records per request and errors. Nil discards them.
	Logger *slog.Logger
}

// Stats contains request counters of a Handler.
type Stats struct {
	// Models is the number of requests to /v1/models and to Gemini's
	// /v1beta/models.
	Models int64

	// ChatCompletions is the number of requests to /v1/chat/completions.
	ChatCompletions int64

	// Images is the number of requests to /v1/images/generations and to
	// the Gemini route /v1beta/models/{model}:generateContent.
	Images int64

	// ImageFiles is the number of image downloads from /v1/mock-files/.
	ImageFiles int64

	// Other is the number of requests to any other path.
	Other int64

	// Active is the number of requests whose handler has not returned yet.
	Active int64
}

// Total returns the number of requests received on all paths.
func (s Stats) Total() int64 {
	return s.Models + s.ChatCompletions + s.Images + s.ImageFiles + s.Other
}

// Handler serves the mock OpenAI API. It is safe for concurrent use.
type Handler struct {
	tokensPerSecond  float64
	timeToFirstToken time.Duration
	apiKey           string
	imageBytes       int
	logger           *slog.Logger
	modelsBody       []byte
	geminiModelsBody []byte

	// idPrefix keeps completion ids of different handlers apart.
	idPrefix string
	nextID   atomic.Uint64

	modelsRequests atomic.Int64
	chatRequests   atomic.Int64
	imageRequests  atomic.Int64
	fileRequests   atomic.Int64
	otherRequests  atomic.Int64
	activeRequests atomic.Int64

	faultOnce onceKeys
}

// NewHandler returns a handler that serves the mock API configured by opts.
func NewHandler(opts Options) *Handler {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	h := &Handler{
		tokensPerSecond:  max(opts.TokensPerSecond, 0),
		timeToFirstToken: max(opts.TimeToFirstToken, 0),
		apiKey:           opts.APIKey,
		imageBytes:       min(max(opts.ImageBytes, 0), maxImageBytes),
		logger:           logger,
		modelsBody:       encodeModelList(opts.Models),
		geminiModelsBody: encodeGeminiModelList(opts.Models),
		idPrefix:         strings.ToLower(rand.Text()[:8]),
	}
	h.faultOnce.seen = make(map[string]struct{})

	return h
}

// Stats returns a snapshot of the request counters.
func (h *Handler) Stats() Stats {
	return Stats{
		Models:          h.modelsRequests.Load(),
		ChatCompletions: h.chatRequests.Load(),
		Images:          h.imageRequests.Load(),
		ImageFiles:      h.fileRequests.Load(),
		Other:           h.otherRequests.Load(),
		Active:          h.activeRequests.Load(),
	}
}

// ServeHTTP counts the request, checks the API key and routes the request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.activeRequests.Add(1)
	defer h.activeRequests.Add(-1)

	geminiModel, isGemini := geminiGenerateContentModel(r.URL.Path)
	isFile := strings.HasPrefix(r.URL.Path, mockFilesPrefix)

	switch {
	case r.URL.Path == modelsPath || r.URL.Path == geminiModelsPath:
		h.modelsRequests.Add(1)
	case r.URL.Path == chatCompletionsPath:
		h.chatRequests.Add(1)
	case r.URL.Path == imageGenerationsPath || isGemini:
		h.imageRequests.Add(1)
	case isFile:
		h.fileRequests.Add(1)
	default:
		h.otherRequests.Add(1)
	}

	// Image URLs work without a key, like the signed storage URLs that
	// image APIs return, so a client must not need to send one.
	if isFile {
		h.serveMockFile(w, r)
		return
	}
	// The Gemini route takes its key from x-goog-api-key and writes errors
	// in Google's format, so it checks the key itself.
	if isGemini {
		h.serveGenerateContent(w, r, geminiModel)
		return
	}
	if r.URL.Path == geminiModelsPath {
		h.serveGeminiModels(w, r)
		return
	}

	if apiErr := h.checkAPIKey(r); apiErr != nil {
		writeAPIError(w, apiErr)
		return
	}

	switch r.URL.Path {
	case modelsPath:
		h.serveOpenAIModels(w, r)

	case chatCompletionsPath:
		if r.Method != http.MethodPost {
			writeAPIError(w, methodNotAllowed(r, http.MethodPost))
			return
		}
		h.serveChatCompletion(w, r)

	case imageGenerationsPath:
		if r.Method != http.MethodPost {
			writeAPIError(w, methodNotAllowed(r, http.MethodPost))
			return
		}
		h.serveImageGenerations(w, r)

	default:
		writeAPIError(w, &apiError{
			status:  http.StatusNotFound,
			errType: "invalid_request_error",
			message: fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path),
		})
	}
}

// Bearer keys with these prefixes are rejected whatever Options.APIKey is,
// so that tests can make one provider key fail while others work.
const (
	unauthorizedKeyPrefix = "bad-"
	forbiddenKeyPrefix    = "forbidden-"
)

func (h *Handler) checkAPIKey(r *http.Request) *apiError {
	authorization := r.Header.Get("Authorization")
	key, bearer := strings.CutPrefix(authorization, "Bearer ")
	return h.checkKey(key, bearer, authorization != "", `the Authorization header as "Bearer <key>"`)
}

// checkKey checks key, which the request sent when sent is true and in the
// expected form when wellFormed is true. where names the header for the
// error message.
func (h *Handler) checkKey(key string, wellFormed, sent bool, where string) *apiError {
	switch {
	case wellFormed && strings.HasPrefix(key, unauthorizedKeyPrefix):
		return statusFaultError(faultUnauthorized)
	case wellFormed && strings.HasPrefix(key, forbiddenKeyPrefix):
		return statusFaultError(faultForbidden)
	case h.apiKey == "":
		return nil
	}

	if !sent {
		return &apiError{
			status:  http.StatusUnauthorized,
			errType: "invalid_request_error",
			message: "Missing API key: send it in " + where + ".",
		}
	}

	if !wellFormed || subtle.ConstantTimeCompare([]byte(key), []byte(h.apiKey)) != 1 {
		return &apiError{
			status:  http.StatusUnauthorized,
			errType: "invalid_request_error",
			code:    "invalid_api_key",
			message: "Incorrect API key provided.",
		}
	}

	return nil
}

func (h *Handler) serveModels(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	if _, err := w.Write(h.modelsBody); err != nil {
		h.logger.Debug("write model list failed", "error", err)
	}
}

func encodeModelList(models []string) []byte {
	if len(models) == 0 {
		models = []string{"mock-gpt", "mock-gpt-mini"}
	}

	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	list := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: make([]model, 0, len(models))}

	for _, id := range models {
		list.Data = append(list.Data, model{ID: id, Object: "model", Created: modelCreated, OwnedBy: "mock"})
	}

	// Marshal cannot fail for a struct of strings and integers.
	body, _ := json.Marshal(list)
	return body
}

func methodNotAllowed(r *http.Request, allowed string) *apiError {
	return &apiError{
		status:  http.StatusMethodNotAllowed,
		errType: "invalid_request_error",
		message: fmt.Sprintf("Method %s is not allowed on %s, use %s.", r.Method, r.URL.Path, allowed),
	}
}

// apiError is an error response in OpenAI's format:
// {"error":{"message":...,"type":...,"param":...,"code":...}}.
type apiError struct {
	status  int
	errType string
	code    string // empty encodes as null
	param   string // empty encodes as null
	message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.status, e.errType, e.message)
}

func writeAPIError(w http.ResponseWriter, e *apiError) {
	type errorBody struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	}
	body := struct {
		Error errorBody `json:"error"`
	}{Error: errorBody{Message: e.message, Type: e.errType}}

	if e.param != "" {
		body.Error.Param = &e.param
	}
	if e.code != "" {
		body.Error.Code = &e.code
	}

	encoded, _ := json.Marshal(body)

	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	// A failed write means the client has disconnected, so the error is dropped.
	_, _ = w.Write(encoded)
}
