package mockupstream

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
)

// fault is an injected failure. The package documentation describes each one.
type fault string

const (
	faultNone           fault = ""
	faultRateLimit      fault = "429"
	faultServerError    fault = "500"
	faultUnauthorized   fault = "401"
	faultForbidden      fault = "403"
	faultBadRequest     fault = "400"
	faultSlowStart      fault = "slow-start"
	faultCut            fault = "cut"
	faultCutBeforeFirst fault = "cut-before-first"
	faultMalformed      fault = "malformed"
	faultStall          fault = "stall"

	// faultSafety and faultPromptBlocked make the Gemini route return 200
	// without an image. Other routes return a 400 content_policy_violation
	// error.
	faultSafety        fault = "safety"
	faultPromptBlocked fault = "prompt-blocked"

	// The url- faults apply to the download of an image that
	// /v1/images/generations returned as a URL.
	faultURLNotFound  fault = "url-404"
	faultURLOversized fault = "url-oversized"
	faultURLStall     fault = "url-stall"
)

const (
	faultModelPrefix     = "fault-"
	faultOnceModelPrefix = "fault-once-"
)

func parseFault(name string) (fault, bool) {
	switch f := fault(name); f {
	case faultRateLimit, faultServerError, faultUnauthorized, faultForbidden, faultBadRequest,
		faultSlowStart, faultCut, faultCutBeforeFirst, faultMalformed, faultStall,
		faultSafety, faultPromptBlocked, faultURLNotFound, faultURLOversized, faultURLStall:
		return f, true
	default:
		return faultNone, false
	}
}

const faultNames = "429, 500, 401, 403, 400, slow-start, cut, cut-before-first, malformed, stall, " +
	"safety, prompt-blocked, url-404, url-oversized, url-stall"

// isDownloadFault reports whether f acts on the download of an image URL
// instead of on the response that carries the URL.
func (f fault) isDownloadFault() bool {
	return f == faultURLNotFound || f == faultURLOversized || f == faultURLStall
}

// faultChoice is the fault that a request selects. A non-empty onceKey
// limits the fault to the first request with that key.
type faultChoice struct {
	fault   fault
	onceKey string
}

// chooseFault reads the fault from the X-Mock-Fault header or, without the
// header, from a "fault-NAME" or "fault-once-NAME" model name.
func chooseFault(header http.Header, model string) (faultChoice, error) {
	var choice faultChoice

	if name := strings.TrimSpace(header.Get("X-Mock-Fault")); name != "" {
		f, ok := parseFault(name)
		if !ok {
			return choice, invalidHeader("X-Mock-Fault", name, "one of "+faultNames)
		}
		choice.fault = f
	} else {
		name, once := strings.CutPrefix(model, faultOnceModelPrefix)
		if !once {
			name, _ = strings.CutPrefix(model, faultModelPrefix)
		}

		if name != model {
			f, ok := parseFault(name)
			if !ok {
				return choice, &apiError{
					status:  http.StatusBadRequest,
					errType: "invalid_request_error",
					param:   "model",
					message: fmt.Sprintf("Unknown fault model %q: the part after %q must be one of %s.",
						model, faultModelPrefix, faultNames),
				}
			}
			choice.fault = f
		}
		if once {
			choice.onceKey = "model:" + model
		}
	}

	if key := header.Get("X-Mock-Fault-Once"); key != "" {
		choice.onceKey = "header:" + key
	}

	return choice, nil
}

// statusFaultError returns the error response of a fault that replaces the
// whole response in OpenAI's format, or nil for the other faults.
func statusFaultError(f fault) *apiError {
	switch f {
	case faultRateLimit:
		return &apiError{
			status:  http.StatusTooManyRequests,
			errType: "requests",
			code:    "rate_limit_exceeded",
			message: "Rate limit reached for requests (injected by the mock upstream). Please try again in 1s.",
		}
	case faultServerError:
		return &apiError{
			status:  http.StatusInternalServerError,
			errType: "server_error",
			message: "The server had an error while processing your request (injected by the mock upstream).",
		}
	case faultUnauthorized:
		return &apiError{
			status:  http.StatusUnauthorized,
			errType: "invalid_request_error",
			code:    "invalid_api_key",
			message: "Incorrect API key provided (injected by the mock upstream).",
		}
	case faultForbidden:
		return &apiError{
			status:  http.StatusForbidden,
			errType: "invalid_request_error",
			code:    "permission_denied",
			message: "The API key is not allowed to use this resource (injected by the mock upstream).",
		}
	case faultBadRequest:
		return &apiError{
			status:  http.StatusBadRequest,
			errType: "invalid_request_error",
			message: "Invalid request (injected by the mock upstream).",
		}
	case faultSafety, faultPromptBlocked:
		return &apiError{
			status:  http.StatusBadRequest,
			errType: "invalid_request_error",
			code:    "content_policy_violation",
			message: "Your request was rejected by the safety system (injected by the mock upstream).",
		}
	default:
		return nil
	}
}

// onceKeys records the keys of fault-once requests that have already
// received their fault.
//
// NOTE: the set grows by one entry per distinct key and is never pruned, so
// a long benchmark that sends a new key with every request grows memory.
type onceKeys struct {
	mu   sync.Mutex
	seen map[string]struct{}
}

// claim records key and reports whether this is the first claim of key.
func (o *onceKeys) claim(key string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()

	if _, ok := o.seen[key]; ok {
		return false
	}
	o.seen[key] = struct{}{}
	return true
}
