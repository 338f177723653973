package providers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// ErrorNoImage classifies a 2xx response that carries no image, for example
// because a safety filter blocked the prompt or the output. The same prompt
// usually fails the same way again, so Retryable reports false.
const ErrorNoImage ErrorKind = "upstream_no_image"

// ImageRequest is an image generation request for one upstream model.
type ImageRequest struct {
	// Model is the upstream model name.
	Model  string
	Prompt string
	// N is the number of images. Zero leaves it to the upstream's default.
	N int

	// Size, Quality, Style, ResponseFormat, Background, OutputFormat, User
	// and OutputCompression are the OpenAI fields of the same names. The
	// OpenAI lane sends each one that is set, and the Gemini lane ignores
	// them. ResponseFormat is sent as given, and both "b64_json" and "url"
	// responses are accepted.
	Size, Quality, Style, ResponseFormat, Background, OutputFormat, User string
	OutputCompression                                                    *int

	// ExtraOpenAI contains fields that the OpenAI lane adds to its body. The
	// fields above, model and prompt win over an extra field of the same
	// name.
	ExtraOpenAI map[string]json.RawMessage

	// ExtraGoogle contains fields that the Gemini lane adds to its body, such
	// as safetySettings. contents always comes from Prompt. An extra
	// generationConfig object is merged key by key with the one that the
	// lane builds: its keys win, except candidateCount and seed when N > 1
	// (see encodeGeminiBodies). Both camelCase and snake_case
	// (generation_config) spellings are accepted.
	ExtraGoogle map[string]json.RawMessage
}

// GeneratedImage is one image that an upstream returned.
type GeneratedImage struct {
	Data []byte
	// ContentType is the media type that the upstream declared, such as
	// "image/png", or empty when it declared none. The bytes are not
	// inspected.
	ContentType string
	// RevisedPrompt is the prompt that the upstream reports it used, if any.
	RevisedPrompt string
}

// ImageUsage is the token accounting of an image generation call.
type ImageUsage struct {
	InputTokens  int
	OutputTokens int
	TotalTokens  int
}

// ImageResult is the outcome of a successful image generation call.
type ImageResult struct {
	Images []GeneratedImage
	Usage  *ImageUsage // nil when the upstream sent none
}

// GenerateImages requests images from the upstream p and returns them
// decoded. p.Kind selects the lane. "openai" (or empty) posts to
// {base_url}/images/generations with a Bearer key, and "gemini" posts to
// {base_url}/v1beta/models/{model}:generateContent with the key in
// x-goog-api-key.
//
// p.TimeoutSeconds bounds the generation call, and
// ClientOptions.ImageFirstByteTimeout the wait for its response headers.
// Images that the upstream returns as URLs are downloaded afterwards, each
// within ClientOptions.ImageDownloadTimeout and ImageDownloadMaxBytes, with
// no credentials. Unless ImageDownloadAllowPrivate is on, those downloads
// only connect to public addresses or to p's base_url host.
//
// When ctx ends, the error wraps ctx.Err(). A response without any image is
// an *UpstreamError of kind ErrorNoImage that names the reason the upstream
// gave. Every other failure is an *UpstreamError classified as for chat.
// Errors never contain the API key.
func (c *Client) GenerateImages(ctx context.Context, p Provider, req ImageRequest) (*ImageResult, error) {
	switch p.Kind {
	case "openai", "":
		return c.generateOpenAIImages(ctx, p, req)
	case "gemini":
		return c.generateGeminiImages(ctx, p, req)
	default:
		return nil, fmt.Errorf("provider %q: image generation does not support kind %q: use openai or gemini", p.ID, p.Kind)
	}
}

// postImageRequest posts body to endpoint and reads the whole response
// body, capped at ImageMaxResponseBytes. The returned call is closed and
// serves only its error helpers.
func (c *Client) postImageRequest(ctx context.Context, p Provider, endpoint string, body []byte, setHeaders func(*http.Request)) (*call, []byte, error) {
	cl, err := c.post(ctx, p, postSpec{
		operation:        "image generation",
		endpoint:         endpoint,
		body:             body,
		setHeaders:       setHeaders,
		firstByteTimeout: c.opts.ImageFirstByteTimeout,
	})
	if err != nil {
		// Image callers get the *UpstreamError itself. The response
		// header that ForwardError adds is for proxies.
		var forwardErr *ForwardError
		if errors.As(err, &forwardErr) {
			return nil, nil, forwardErr.UpstreamError
		}
		return nil, nil, err
	}
	defer cl.close()

	limit := c.opts.ImageMaxResponseBytes
	if cl.resp.ContentLength > limit {
		message := fmt.Sprintf("response body of %d bytes exceeds the %d-byte cap (ImageMaxResponseBytes)", cl.resp.ContentLength, limit)
		return nil, nil, cl.malformed(message, "", false)
	}

	data, err := cl.readBody(limit)
	if err != nil {
		return nil, nil, err
	}
	return cl, data, nil
}

// setImageHeaders sets the headers that both lanes send. Provider headers
// come last, as for chat, so they may replace the key header.
//
// Base64 text of an already compressed image shrinks little under gzip,
// so the request sets Accept-Encoding: identity. The response then usually
// has a Content-Length, which lets readBody allocate the body once.
func setImageHeaders(req *http.Request, p Provider, keyHeader, keyValue string) {
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Accept-Encoding", "identity")
	req.Header.Set("User-Agent", "aihigress")
	if p.APIKey != "" {
		req.Header.Set(keyHeader, keyValue)
	}

	for name, value := range p.Headers {
		if strings.EqualFold(name, "Host") {
			req.Host = value
			continue
		}
		req.Header.Set(name, value)
	}
}

// noImage returns the ErrorNoImage failure for a 2xx response.
func (cl *call) noImage(reason string, data []byte) error {
	return &UpstreamError{
		Kind:       ErrorNoImage,
		StatusCode: cl.resp.StatusCode,
		Message:    cl.redact(reason),
		Body:       cl.capBody(data),
	}
}
