package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

// errorBody is the JSON shape of every error, the same as OpenAI's:
// {"error": {"message", "type", "code", "param"}}.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Code    string `json:"code"`
	// Param names the request field at fault, or is null.
	Param *string `json:"param"`
}

func abortError(c *gin.Context, status int, code, message string) {
	c.AbortWithStatusJSON(status, errorBody{Error: errorDetail{Message: message, Type: errorType(status), Code: code}})
}

// abortParamError is abortError for a fault in the request field param.
func abortParamError(c *gin.Context, status int, code, param, message string) {
	c.AbortWithStatusJSON(status, errorBody{Error: errorDetail{Message: message, Type: errorType(status), Code: code, Param: &param}})
}

// errorType maps a status code to the error type that OpenAI uses for it.
func errorType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	case status == http.StatusConflict:
		return "conflict_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

// decodeJSON reads the request body into dst, rejecting unknown fields,
// fields of the wrong type, trailing data and bodies over the size limit.
// On failure it writes a 4xx error and returns false.
func decodeJSON(c *gin.Context, dst any) bool {
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var tooLargeErr *http.MaxBytesError
		if errors.As(err, &tooLargeErr) {
			abortError(c, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body exceeds %d bytes", tooLargeErr.Limit))
			return false
		}
		abortError(c, http.StatusBadRequest, "invalid_json", "read request body: "+err.Error())
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err = dec.Decode(dst)
	if err == nil {
		if dec.More() {
			abortError(c, http.StatusBadRequest, "invalid_json", "request body must contain a single JSON object")
			return false
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			abortError(c, http.StatusBadRequest, "invalid_json", "request body must contain a single JSON object")
			return false
		}
		if containsNUL(body) {
			abortError(c, http.StatusBadRequest, "invalid_field", `strings in the request body must not contain the NUL character (\u0000)`)
			return false
		}
		return true
	}

	var (
		syntaxErr   *json.SyntaxError
		typeErr     *json.UnmarshalTypeError
		tooLargeErr *http.MaxBytesError
	)
	switch {
	case errors.As(err, &tooLargeErr):
		abortError(c, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body exceeds %d bytes", tooLargeErr.Limit))
	case errors.Is(err, io.EOF):
		abortError(c, http.StatusBadRequest, "invalid_json", "request body is empty; send a JSON object")
	case errors.As(err, &syntaxErr):
		abortError(c, http.StatusBadRequest, "invalid_json", fmt.Sprintf("malformed JSON at byte %d: %v", syntaxErr.Offset, err))
	case errors.Is(err, io.ErrUnexpectedEOF):
		abortError(c, http.StatusBadRequest, "invalid_json", "malformed JSON: the body ends early")
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			abortError(c, http.StatusBadRequest, "invalid_json", fmt.Sprintf("request body must be a JSON object, got %s", typeErr.Value))
			return false
		}
		abortParamError(c, http.StatusBadRequest, "invalid_field", field, fmt.Sprintf("field %q must be of type %s, got %s", field, jsonTypeName(typeErr.Type.Kind().String()), typeErr.Value))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.TrimPrefix(err.Error(), "json: unknown field ")
		abortParamError(c, http.StatusBadRequest, "unknown_field", strings.Trim(name, `"`), fmt.Sprintf("unknown field %s", name))
	default:
		abortError(c, http.StatusBadRequest, "invalid_json", "malformed JSON: "+err.Error())
	}
	return false
}

func jsonTypeName(kind string) string {
	switch kind {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "int", "int32", "int64", "uint", "uint32", "uint64", "float32", "float64":
		return "number"
	case "map", "struct":
		return "object"
	case "slice", "array":
		return "array"
	}
	return kind
}

// containsNUL reports whether a string or key of the valid JSON document
// body contains U+0000, which PostgreSQL cannot store in TEXT or JSONB.
func containsNUL(body []byte) bool {
	if !bytes.Contains(body, []byte(`\u0000`)) {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		if s, ok := tok.(string); ok && strings.ContainsRune(s, 0) {
			return true
		}
	}
}
