package mockupstream

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// geminiModelsPath lists the models in Gemini's format.
const geminiModelsPath = "/v1beta/models"

// serveOpenAIModels serves GET /v1/models after the key check.
func (h *Handler) serveOpenAIModels(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeAPIError(w, methodNotAllowed(r, http.MethodGet))
		return
	}
	if apiErr := h.applyModelListFault(r); apiErr != nil {
		writeAPIError(w, apiErr)
		return
	}
	h.serveModels(w)
}

// serveGeminiModels serves GET /v1beta/models, with the key rules of the
// generateContent route and errors in Google's format.
func (h *Handler) serveGeminiModels(w http.ResponseWriter, r *http.Request) {
	err := h.checkGeminiKey(r)
	if err == nil && r.Method != http.MethodGet {
		err = methodNotAllowed(r, http.MethodGet)
	}
	if err == nil {
		if apiErr := h.applyModelListFault(r); apiErr != nil {
			err = apiErr
		}
	}
	if err != nil {
		if apiErr, ok := errors.AsType[*apiError](err); ok {
			writeGeminiError(w, apiErr)
			return
		}
		writeGeminiError(w, &apiError{status: http.StatusInternalServerError, message: err.Error()})
		return
	}

	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	if _, err := w.Write(h.geminiModelsBody); err != nil {
		h.logger.Debug("write Gemini model list failed", "error", err)
	}
}

// applyModelListFault applies the X-Mock-Fault header of a model list
// request. It returns the error response of a status fault (429, 500, 401,
// 403 or 400). For slow-start it waits X-Mock-Slow-Ms and returns nil. The
// other faults get a 400 error, because a model list has no stream or image
// to break. X-Mock-Fault-Once limits the fault as on the other routes.
func (h *Handler) applyModelListFault(r *http.Request) *apiError {
	choice, err := chooseFault(r.Header, "")
	if err != nil {
		if apiErr, ok := errors.AsType[*apiError](err); ok {
			return apiErr
		}
		return &apiError{status: http.StatusBadRequest, errType: "invalid_request_error", message: err.Error()}
	}
	if choice.fault != faultNone && choice.onceKey != "" && !h.faultOnce.claim(choice.onceKey) {
		return nil
	}

	switch choice.fault {
	case faultNone:
		return nil
	case faultRateLimit, faultServerError, faultUnauthorized, faultForbidden, faultBadRequest:
		return statusFaultError(choice.fault)
	case faultSlowStart:
		overrides, err := h.parseOverrides(r.Header)
		if err != nil {
			if apiErr, ok := errors.AsType[*apiError](err); ok {
				return apiErr
			}
			return &apiError{status: http.StatusBadRequest, errType: "invalid_request_error", message: err.Error()}
		}
		timer := time.NewTimer(overrides.slowStart)
		defer timer.Stop()
		select {
		case <-r.Context().Done():
		case <-timer.C:
		}
		return nil
	default:
		return &apiError{
			status:  http.StatusBadRequest,
			errType: "invalid_request_error",
			param:   "X-Mock-Fault",
			message: fmt.Sprintf("Fault %q does not apply to a model list; use 429, 500, 401, 403, 400 or slow-start.", string(choice.fault)),
		}
	}
}

// encodeGeminiModelList returns the body of GET /v1beta/models, which lists
// the same models as /v1/models in Gemini's format.
func encodeGeminiModelList(models []string) []byte {
	if len(models) == 0 {
		models = []string{"mock-gpt", "mock-gpt-mini"}
	}

	type model struct {
		Name                       string   `json:"name"`
		DisplayName                string   `json:"displayName"`
		SupportedGenerationMethods []string `json:"supportedGenerationMethods"`
	}
	list := struct {
		Models []model `json:"models"`
	}{Models: make([]model, 0, len(models))}
	for _, id := range models {
		list.Models = append(list.Models, model{Name: "models/" + id, DisplayName: id, SupportedGenerationMethods: []string{"generateContent"}})
	}

	// Marshal cannot fail for a struct of strings.
	body, _ := json.Marshal(list)
	return body
}
