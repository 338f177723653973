package providers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// openAIImagesResponse is the part of an OpenAI images response that the
// lane reads.
type openAIImagesResponse struct {
	Data []struct {
		B64JSON       base64JSON `json:"b64_json"`
		URL           string     `json:"url"`
		RevisedPrompt string     `json:"revised_prompt"`
	} `json:"data"`
	OutputFormat string `json:"output_format"`
	Usage        *struct {
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
	Error json.RawMessage `json:"error"`
}

func (c *Client) generateOpenAIImages(ctx context.Context, p Provider, req ImageRequest) (*ImageResult, error) {
	endpoint, err := endpointURL(p.BaseURL, "images/generations")
	if err != nil {
		return nil, fmt.Errorf("provider %q: %w", p.ID, err)
	}
	body, err := encodeOpenAIImageBody(req)
	if err != nil {
		return nil, fmt.Errorf("provider %q: %w", p.ID, err)
	}

	setHeaders := func(httpReq *http.Request) {
		setImageHeaders(httpReq, p, "Authorization", "Bearer "+p.APIKey)
	}
	cl, data, err := c.postImageRequest(ctx, p, endpoint, body, setHeaders)
	if err != nil {
		return nil, err
	}

	// Memory at peak, for n images of b bytes: data holds the body, about
	// 4/3 n*b of base64 text, while the decoder allocates each image once
	// at its decoded size. The body becomes garbage when
	// decodeOpenAIImages returns, before any URL download starts.
	result, urls, err := decodeOpenAIImages(cl, data)
	if err != nil {
		return nil, err
	}

	for _, pending := range urls {
		image, err := c.downloadImage(ctx, p, pending.index, pending.url)
		if err != nil {
			return nil, err
		}
		if image.ContentType == "" {
			image.ContentType = pending.contentType
		}
		image.RevisedPrompt = pending.revisedPrompt
		result.Images[pending.index] = image
	}
	return result, nil
}

// encodeOpenAIImageBody builds the request body. Fields of ExtraOpenAI are
// copied first, so the fields that req sets replace them.
func encodeOpenAIImageBody(req ImageRequest) ([]byte, error) {
	fields := make(map[string]json.RawMessage, len(req.ExtraOpenAI)+12)
	for name, value := range req.ExtraOpenAI {
		fields[name] = value
	}

	set := func(name string, value any) error {
		encoded, err := json.Marshal(value)
		if err != nil {
			return fmt.Errorf("encode %s: %w", name, err)
		}
		fields[name] = encoded
		return nil
	}
	setString := func(name, value string) error {
		if value == "" {
			return nil
		}
		return set(name, value)
	}

	if err := set("model", req.Model); err != nil {
		return nil, err
	}
	if err := set("prompt", req.Prompt); err != nil {
		return nil, err
	}
	if req.N > 0 {
		if err := set("n", req.N); err != nil {
			return nil, err
		}
	}
	if req.OutputCompression != nil {
		if err := set("output_compression", *req.OutputCompression); err != nil {
			return nil, err
		}
	}

	optional := []struct{ name, value string }{
		{"size", req.Size},
		{"quality", req.Quality},
		{"style", req.Style},
		{"response_format", req.ResponseFormat},
		{"background", req.Background},
		{"output_format", req.OutputFormat},
		{"user", req.User},
	}
	for _, field := range optional {
		if err := setString(field.name, field.value); err != nil {
			return nil, err
		}
	}

	body, err := json.Marshal(fields)
	if err != nil {
		return nil, fmt.Errorf("encode image request: %w", err)
	}
	return body, nil
}

// pendingDownload is an image that the upstream returned as a URL.
type pendingDownload struct {
	index         int
	url           string
	contentType   string
	revisedPrompt string
}

// decodeOpenAIImages decodes data and returns the base64 images in place
// and the URL images as pending downloads, whose slots stay empty.
func decodeOpenAIImages(cl *call, data []byte) (*ImageResult, []pendingDownload, error) {
	skeleton, lifted := liftBase64(data, "b64_json")
	result, downloads, err := decodeOpenAIDocument(cl, data, skeleton, lifted)
	if err != nil && lifted != nil {
		// The skeleton may hide what made the document fail, such as an
		// invalid escape in a lifted string, so the error comes from the
		// document itself.
		return decodeOpenAIDocument(cl, data, data, nil)
	}
	return result, downloads, err
}

// decodeOpenAIDocument decodes skeleton, which is data itself or data with
// its base64 images lifted into lifted.
func decodeOpenAIDocument(cl *call, data, skeleton []byte, lifted *liftedStrings) (*ImageResult, []pendingDownload, error) {
	var response openAIImagesResponse
	if err := json.Unmarshal(skeleton, &response); err != nil {
		// Slicing first keeps a large body from being copied into a string.
		excerpt := data[:min(int64(len(data)), cl.client.opts.MaxErrorBody)]
		return nil, nil, cl.malformed(fmt.Sprintf("invalid JSON in images response: %v", err), string(excerpt), false)
	}
	if message, ok := errorMessage(response.Error); ok {
		return nil, nil, &UpstreamError{Kind: ErrorServer, StatusCode: cl.resp.StatusCode, Message: cl.redact(message), Body: cl.capBody(data)}
	}
	if len(response.Data) == 0 {
		return nil, nil, cl.noImage("the images response has an empty data array", data)
	}

	contentType := imageMediaType(response.OutputFormat)
	result := &ImageResult{Images: make([]GeneratedImage, len(response.Data))}
	if usage := response.Usage; usage != nil {
		result.Usage = &ImageUsage{InputTokens: usage.InputTokens, OutputTokens: usage.OutputTokens, TotalTokens: usage.TotalTokens}
	}

	// All images are decoded before any entry is checked, so invalid
	// base64 is reported first, as encoding/json reports it.
	images := make([][]byte, len(response.Data))
	for i, entry := range response.Data {
		image, err := lifted.bytes(entry.B64JSON)
		if errors.Is(err, errLiftFailed) {
			return nil, nil, err
		}
		if err != nil {
			return nil, nil, cl.malformed(fmt.Sprintf("invalid base64 in images response entry data[%d].b64_json: %v", i, err), "", false)
		}
		images[i] = image
	}
	if err := lifted.check(); err != nil {
		return nil, nil, err
	}

	var downloads []pendingDownload
	for i, entry := range response.Data {
		switch image := images[i]; {
		case len(image) > 0:
			result.Images[i] = GeneratedImage{Data: image, ContentType: contentType, RevisedPrompt: entry.RevisedPrompt}
		case entry.URL != "":
			downloads = append(downloads, pendingDownload{index: i, url: entry.URL, contentType: contentType, revisedPrompt: entry.RevisedPrompt})
		default:
			return nil, nil, cl.malformed(fmt.Sprintf("images response entry data[%d] has neither b64_json nor url", i), "", false)
		}
	}
	return result, downloads, nil
}

// imageMediaType maps OpenAI's output_format to a media type.
func imageMediaType(outputFormat string) string {
	switch outputFormat {
	case "png":
		return "image/png"
	case "jpeg", "jpg":
		return "image/jpeg"
	case "webp":
		return "image/webp"
	default:
		return ""
	}
}
