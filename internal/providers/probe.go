package providers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

// maxProbeBody caps the model list that ProbeModels reads, in bytes.
const maxProbeBody = 4 << 20

// ProbeModels checks that p responds by listing its models: GET
// {base_url}/models with a Bearer key for kind "openai", and GET
// {base_url}/v1beta/models with the x-goog-api-key header for kind
// "gemini". A Gemini base URL that already ends in an API version keeps
// it, as for generateContent. timeout bounds the whole call.
//
// It returns the HTTP status, 0 when no response arrived. A failure is an
// *UpstreamError classified as for chat calls: a non-2xx status by its
// code, a 2xx body that is not JSON as ErrorMalformed, and an expired
// timeout as ErrorTimeout. Gemini's 400 with API_KEY_INVALID is ErrorAuth.
// Only the end of ctx returns another error.
func (c *Client) ProbeModels(ctx context.Context, p Provider, timeout time.Duration) (int, error) {
	endpoint, err := modelsEndpoint(p)
	if err != nil {
		return 0, fmt.Errorf("provider %q: %w", p.ID, err)
	}
	keyHeader, keyValue := "Authorization", "Bearer "+p.APIKey
	if p.Kind == "gemini" {
		keyHeader, keyValue = "X-Goog-Api-Key", p.APIKey
	}

	probeCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	status, err := c.listModels(probeCtx, p, endpoint, keyHeader, keyValue, timeout)
	if err == nil {
		return status, nil
	}
	if ctx.Err() == nil && errors.Is(probeCtx.Err(), context.DeadlineExceeded) {
		return status, &UpstreamError{Kind: ErrorTimeout, StatusCode: status, Message: fmt.Sprintf("model list did not finish within %s", timeout)}
	}
	if p.Kind == "gemini" {
		err = classifyGeminiKeyError(err)
	}
	return status, err
}

func (c *Client) listModels(ctx context.Context, p Provider, endpoint, keyHeader, keyValue string, timeout time.Duration) (int, error) {
	cl, err := c.post(ctx, p, postSpec{
		method:           http.MethodGet,
		operation:        "model list",
		endpoint:         endpoint,
		setHeaders:       func(req *http.Request) { setProbeHeaders(req, p, keyHeader, keyValue) },
		firstByteTimeout: timeout,
	})
	if err != nil {
		// The probe reports the *UpstreamError itself; the response header
		// that ForwardError adds is for proxies.
		var forwardErr *ForwardError
		if errors.As(err, &forwardErr) {
			return forwardErr.StatusCode, forwardErr.UpstreamError
		}
		return 0, err
	}
	defer cl.close()

	status := cl.resp.StatusCode
	data, err := cl.readBody(maxProbeBody)
	if err != nil {
		return status, err
	}
	if !json.Valid(data) {
		excerpt := data[:min(int64(len(data)), cl.client.opts.MaxErrorBody)]
		return status, cl.malformed("model list is not JSON", string(excerpt), false)
	}
	return status, nil
}

// modelsEndpoint returns the model list URL of p.
func modelsEndpoint(p Provider) (string, error) {
	if p.Kind != "gemini" {
		return endpointURL(p.BaseURL, "models")
	}
	if base, err := url.Parse(p.BaseURL); err == nil {
		switch path.Base(base.Path) {
		case "v1", "v1beta", "v1alpha":
			return endpointURL(p.BaseURL, "models")
		}
	}
	return endpointURL(p.BaseURL, "v1beta/models")
}

// setProbeHeaders sets the headers of a model list request. Provider
// headers come last, as for chat, so they may replace the key header.
func setProbeHeaders(req *http.Request, p Provider, keyHeader, keyValue string) {
	req.Header.Set("Accept", "application/json")
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
