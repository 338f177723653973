package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/models"
)

// Image request limits, as in OpenAI's images API.
const (
	maxImagesPerRequest = 10
	maxImageSide        = 8192
	maxImageFieldLength = 256
)

var imageSizePattern = regexp.MustCompile(`^([1-9][0-9]{0,4})x([1-9][0-9]{0,4})$`)

// imageRequest is a checked image generation request.
type imageRequest struct {
	Model      string
	Params     models.ImageParams
	Background bool
}

// readImageRequest reads and checks the body of POST /v1/images/generations.
// Fields that the API does not know are forwarded to the OpenAI lane, as
// extra_body.openai is. On failure it writes a 400 and returns false.
func (s *Server) readImageRequest(c *gin.Context) (imageRequest, bool) {
	var req imageRequest
	fields, ok := readJSONObject(c)
	if !ok {
		return req, false
	}
	if !decodeField(c, fields, "model", &req.Model) {
		return req, false
	}
	if strings.TrimSpace(req.Model) == "" {
		abortParamError(c, http.StatusBadRequest, "missing_field", "model", "model is required; GET /v1/models lists the available models")
		return req, false
	}
	delete(fields, "model")

	if !s.checkImageParams(c, fields, &req.Params, &req.Background) {
		return req, false
	}
	return req, true
}

// checkImageParams moves the image parameters out of fields into params and
// checks them. What stays in fields is unknown and goes to the OpenAI lane.
func (s *Server) checkImageParams(c *gin.Context, fields map[string]json.RawMessage, params *models.ImageParams, background *bool) bool {
	params.N = 1
	params.ResponseFormat = "url"
	steps := []func() bool{
		func() bool { return s.checkPrompt(c, fields, &params.Prompt) },
		func() bool { return checkN(c, fields, &params.N) },
		func() bool { return checkSize(c, fields, &params.Size) },
		func() bool { return checkBackground(c, fields, &params.Background, background) },
		func() bool {
			return checkEnum(c, fields, "response_format", &params.ResponseFormat, "url", "b64_json")
		},
		func() bool { return checkEnum(c, fields, "output_format", &params.OutputFormat, "png", "jpeg", "webp") },
		func() bool { return checkShortString(c, fields, "quality", &params.Quality) },
		func() bool { return checkShortString(c, fields, "style", &params.Style) },
		func() bool { return checkShortString(c, fields, "user", &params.User) },
		func() bool { return checkCompression(c, fields, &params.OutputCompression) },
		func() bool { return checkExtraBody(c, fields, params) },
		func() bool { return checkNoStream(c, fields) },
	}
	for _, step := range steps {
		if !step() {
			return false
		}
	}

	for name, value := range fields {
		if params.ExtraOpenAI == nil {
			params.ExtraOpenAI = map[string]json.RawMessage{}
		}
		if _, set := params.ExtraOpenAI[name]; !set {
			params.ExtraOpenAI[name] = value
		}
	}
	return true
}

func (s *Server) checkPrompt(c *gin.Context, fields map[string]json.RawMessage, prompt *string) bool {
	if !decodeField(c, fields, "prompt", prompt) {
		return false
	}
	delete(fields, "prompt")
	if strings.TrimSpace(*prompt) == "" {
		abortParamError(c, http.StatusBadRequest, "empty_prompt", "prompt", "prompt must be a non-empty string")
		return false
	}
	if n := utf8.RuneCountInString(*prompt); n > s.Images.MaxPromptChars {
		abortParamError(c, http.StatusBadRequest, "prompt_too_long", "prompt",
			fmt.Sprintf("prompt has %d characters; the limit is %d", n, s.Images.MaxPromptChars))
		return false
	}
	return true
}

func checkN(c *gin.Context, fields map[string]json.RawMessage, n *int) bool {
	raw, ok := fields["n"]
	delete(fields, "n")
	if !ok || string(raw) == "null" {
		return true
	}
	value, err := strconv.Atoi(string(bytes.TrimSpace(raw)))
	if err != nil || value < 1 || value > maxImagesPerRequest {
		abortParamError(c, http.StatusBadRequest, "invalid_n", "n",
			fmt.Sprintf("n must be an integer from 1 to %d, got %s", maxImagesPerRequest, raw))
		return false
	}
	*n = value
	return true
}

func checkSize(c *gin.Context, fields map[string]json.RawMessage, size *string) bool {
	if !decodeField(c, fields, "size", size) {
		return false
	}
	delete(fields, "size")
	if *size == "" || *size == "auto" {
		return true
	}
	match := imageSizePattern.FindStringSubmatch(*size)
	if match != nil {
		width, _ := strconv.Atoi(match[1])
		height, _ := strconv.Atoi(match[2])
		if width <= maxImageSide && height <= maxImageSide {
			return true
		}
	}
	abortParamError(c, http.StatusBadRequest, "invalid_size", "size",
		fmt.Sprintf(`size must be "auto" or WIDTHxHEIGHT such as "1024x1024", each side at most %d, got %q`, maxImageSide, *size))
	return false
}

// checkBackground reads "background". true or false selects the async path;
// a string is OpenAI's transparency setting and goes upstream.
func checkBackground(c *gin.Context, fields map[string]json.RawMessage, transparency *string, async *bool) bool {
	raw, ok := fields["background"]
	delete(fields, "background")
	if !ok || string(raw) == "null" {
		return true
	}
	if json.Unmarshal(raw, async) == nil {
		return true
	}
	if json.Unmarshal(raw, transparency) == nil && (*transparency == "transparent" || *transparency == "opaque" || *transparency == "auto") {
		return true
	}
	abortParamError(c, http.StatusBadRequest, "invalid_field", "background",
		fmt.Sprintf(`background must be true or false to choose the async path, or "transparent", "opaque" or "auto", got %s`, raw))
	return false
}

func checkEnum(c *gin.Context, fields map[string]json.RawMessage, name string, dst *string, allowed ...string) bool {
	value := *dst
	if !decodeField(c, fields, name, &value) {
		return false
	}
	delete(fields, name)
	if value == "" {
		return true
	}
	for _, a := range allowed {
		if value == a {
			*dst = value
			return true
		}
	}
	abortParamError(c, http.StatusBadRequest, "invalid_"+name, name,
		fmt.Sprintf("%s must be one of %s, got %q", name, strings.Join(allowed, ", "), value))
	return false
}

func checkShortString(c *gin.Context, fields map[string]json.RawMessage, name string, dst *string) bool {
	if !decodeField(c, fields, name, dst) {
		return false
	}
	delete(fields, name)
	if len(*dst) > maxImageFieldLength {
		abortParamError(c, http.StatusBadRequest, "invalid_field", name, fmt.Sprintf("%s must be at most %d bytes", name, maxImageFieldLength))
		return false
	}
	return true
}

func checkCompression(c *gin.Context, fields map[string]json.RawMessage, dst **int) bool {
	raw, ok := fields["output_compression"]
	delete(fields, "output_compression")
	if !ok || string(raw) == "null" {
		return true
	}
	value, err := strconv.Atoi(string(bytes.TrimSpace(raw)))
	if err != nil || value < 0 || value > 100 {
		abortParamError(c, http.StatusBadRequest, "invalid_output_compression", "output_compression",
			fmt.Sprintf("output_compression must be an integer from 0 to 100, got %s", raw))
		return false
	}
	*dst = &value
	return true
}

// checkExtraBody reads extra_body {openai, google}: objects merged into the
// upstream body of the lane that serves the request.
func checkExtraBody(c *gin.Context, fields map[string]json.RawMessage, params *models.ImageParams) bool {
	raw, ok := fields["extra_body"]
	delete(fields, "extra_body")
	if !ok || string(raw) == "null" {
		return true
	}
	var extra map[string]json.RawMessage
	if err := json.Unmarshal(raw, &extra); err != nil || extra == nil {
		abortParamError(c, http.StatusBadRequest, "invalid_field", "extra_body", "extra_body must be an object with optional openai and google objects")
		return false
	}
	for name, value := range extra {
		var dst *map[string]json.RawMessage
		switch name {
		case "openai":
			dst = &params.ExtraOpenAI
		case "google":
			dst = &params.ExtraGoogle
		default:
			abortParamError(c, http.StatusBadRequest, "invalid_field", "extra_body."+name,
				fmt.Sprintf("extra_body may contain only openai and google, got %q", name))
			return false
		}
		if string(value) == "null" {
			continue
		}
		if err := json.Unmarshal(value, dst); err != nil || *dst == nil {
			abortParamError(c, http.StatusBadRequest, "invalid_field", "extra_body."+name, "extra_body."+name+" must be a JSON object")
			return false
		}
		if name == "google" && !checkGoogleConfig(c, params.ExtraGoogle) {
			return false
		}
	}
	return true
}

// checkGoogleConfig rejects a generationConfig in extra_body.google that
// the Google lane cannot merge into its own, because it is not an object
// or null.
func checkGoogleConfig(c *gin.Context, google map[string]json.RawMessage) bool {
	var invalid *providers.InvalidGenerationConfigError
	if _, err := providers.GeminiGenerationConfig(google); errors.As(err, &invalid) {
		param := "extra_body.google." + invalid.Field
		abortParamError(c, http.StatusBadRequest, "invalid_field", param, param+" must be a JSON object")
		return false
	}
	return true
}

func checkNoStream(c *gin.Context, fields map[string]json.RawMessage) bool {
	var stream bool
	if !decodeField(c, fields, "stream", &stream) {
		return false
	}
	delete(fields, "stream")
	if stream {
		abortParamError(c, http.StatusBadRequest, "stream_not_supported", "stream",
			`streamed image generation is not supported; send "background": true and follow GET /v1/runs/{id}/events`)
		return false
	}
	return true
}

// checkImageModel writes a 404 when the logical model does not exist and a
// 400 when it cannot generate images.
func (s *Server) checkImageModel(c *gin.Context, field, name string) bool {
	_, err := s.Catalog.Candidates(name, providers.CapabilityImageGeneration)
	switch {
	case err == nil:
		return true
	case errors.Is(err, providers.ErrCapability):
		abortParamError(c, http.StatusBadRequest, "model_does_not_support_images", field,
			fmt.Sprintf("model %q does not support image generation", name))
	default:
		abortParamError(c, http.StatusNotFound, "model_not_found", field,
			fmt.Sprintf("model %q does not exist; GET /v1/models lists the available models", name))
	}
	return false
}

// readJSONObject reads the request body as one JSON object. On failure it
// writes a 4xx and returns false.
func readJSONObject(c *gin.Context) (map[string]json.RawMessage, bool) {
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			abortError(c, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body exceeds %d bytes", tooLarge.Limit))
			return nil, false
		}
		abortError(c, http.StatusBadRequest, "invalid_json", "read request body: "+err.Error())
		return nil, false
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		abortError(c, http.StatusBadRequest, "invalid_json", "request body must be a JSON object")
		return nil, false
	}
	if containsNUL(body) {
		abortError(c, http.StatusBadRequest, "invalid_field", `strings in the request body must not contain the NUL character (\u0000)`)
		return nil, false
	}
	return fields, true
}
