package providers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"
)

// geminiResponse is the part of a GenerateContentResponse that the lane
// reads.
type geminiResponse struct {
	Candidates []struct {
		Content *struct {
			Parts []struct {
				Text string `json:"text"`
				// Thought marks an interim part of a thinking model, such
				// as a draft image, which is not a result.
				Thought    bool `json:"thought"`
				InlineData *struct {
					MimeType string     `json:"mimeType"`
					Data     base64JSON `json:"data"`
				} `json:"inlineData"`
			} `json:"parts"`
		} `json:"content"`
		FinishReason  string `json:"finishReason"`
		FinishMessage string `json:"finishMessage"`
	} `json:"candidates"`
	PromptFeedback *struct {
		BlockReason        string `json:"blockReason"`
		BlockReasonMessage string `json:"blockReasonMessage"`
	} `json:"promptFeedback"`
	UsageMetadata *struct {
		PromptTokenCount     int `json:"promptTokenCount"`
		CandidatesTokenCount int `json:"candidatesTokenCount"`
		TotalTokenCount      int `json:"totalTokenCount"`
	} `json:"usageMetadata"`
}

func (c *Client) generateGeminiImages(ctx context.Context, p Provider, req ImageRequest) (*ImageResult, error) {
	endpoint, err := geminiEndpoint(p.BaseURL, req.Model)
	if err != nil {
		return nil, fmt.Errorf("provider %q: %w", p.ID, err)
	}
	bodies, err := encodeGeminiBodies(req)
	if err != nil {
		return nil, fmt.Errorf("provider %q: %w", p.ID, err)
	}
	if len(bodies) == 1 {
		return c.generateGeminiOnce(ctx, p, endpoint, bodies[0])
	}

	// A failed call cancels the others through groupCtx, and Wait returns
	// the first error, which is the failure and not a cancellation.
	results := make([]*ImageResult, len(bodies))
	group, groupCtx := errgroup.WithContext(ctx)
	for i, body := range bodies {
		group.Go(func() error {
			result, err := c.generateGeminiOnce(groupCtx, p, endpoint, body)
			results[i] = result
			return err
		})
	}
	if err := group.Wait(); err != nil {
		return nil, err
	}
	return mergeImageResults(results), nil
}

// generateGeminiOnce makes one generateContent call.
func (c *Client) generateGeminiOnce(ctx context.Context, p Provider, endpoint string, body []byte) (*ImageResult, error) {
	// The key goes in a header, never in the URL, where proxies and
	// error messages could record it.
	setHeaders := func(httpReq *http.Request) {
		setImageHeaders(httpReq, p, "X-Goog-Api-Key", p.APIKey)
	}
	cl, data, err := c.postImageRequest(ctx, p, endpoint, body, setHeaders)
	if err != nil {
		return nil, classifyGeminiKeyError(err)
	}

	// Memory at peak: data holds the body, about 4/3 of the image bytes in
	// base64, while the decoder allocates each image once at its decoded
	// size.
	return decodeGeminiResponse(cl, data)
}

// mergeImageResults joins the results of several calls: their images in
// call order and the sum of their usage.
func mergeImageResults(results []*ImageResult) *ImageResult {
	merged := &ImageResult{}
	for _, result := range results {
		merged.Images = append(merged.Images, result.Images...)
		if result.Usage == nil {
			continue
		}
		if merged.Usage == nil {
			merged.Usage = &ImageUsage{}
		}
		merged.Usage.InputTokens += result.Usage.InputTokens
		merged.Usage.OutputTokens += result.Usage.OutputTokens
		merged.Usage.TotalTokens += result.Usage.TotalTokens
	}
	return merged
}

// decodeGeminiResponse decodes a generateContent response with its base64
// images lifted out first.
func decodeGeminiResponse(cl *call, data []byte) (*ImageResult, error) {
	skeleton, lifted := liftBase64(data, "data")
	result, err := decodeGeminiImages(cl, data, skeleton, lifted)
	if err != nil && lifted != nil {
		// The error comes from the document itself, as for the OpenAI lane.
		return decodeGeminiImages(cl, data, data, nil)
	}
	return result, err
}

// decodeGeminiImages decodes skeleton, which is data itself or data with
// its base64 images lifted into lifted.
func decodeGeminiImages(cl *call, data, skeleton []byte, lifted *liftedStrings) (*ImageResult, error) {
	var response geminiResponse
	if err := json.Unmarshal(skeleton, &response); err != nil {
		excerpt := data[:min(int64(len(data)), cl.client.opts.MaxErrorBody)]
		return nil, cl.malformed(fmt.Sprintf("invalid JSON in generateContent response: %v", err), string(excerpt), false)
	}

	result := &ImageResult{}
	if usage := response.UsageMetadata; usage != nil {
		result.Usage = &ImageUsage{
			InputTokens:  usage.PromptTokenCount,
			OutputTokens: usage.CandidatesTokenCount,
			TotalTokens:  usage.TotalTokenCount,
		}
	}

	for i, candidate := range response.Candidates {
		if candidate.Content == nil {
			continue
		}
		for j, part := range candidate.Content.Parts {
			inline := part.InlineData
			if inline == nil {
				continue
			}
			// Every lifted string must be decoded, also of parts that are
			// skipped, so that check can tell a lifted document apart.
			image, err := lifted.bytes(inline.Data)
			if errors.Is(err, errLiftFailed) {
				return nil, err
			}
			if err != nil {
				return nil, cl.malformed(fmt.Sprintf("invalid base64 in generateContent response candidates[%d].content.parts[%d].inlineData.data: %v", i, j, err), "", false)
			}
			if part.Thought || len(image) == 0 {
				continue
			}
			if inline.MimeType != "" && !strings.HasPrefix(inline.MimeType, "image/") {
				continue
			}
			result.Images = append(result.Images, GeneratedImage{Data: image, ContentType: inline.MimeType})
		}
	}
	if err := lifted.check(); err != nil {
		return nil, err
	}

	if len(result.Images) == 0 {
		return nil, cl.noImage(geminiNoImageReason(response), data)
	}
	return result, nil
}

// geminiEndpoint returns the generateContent URL of model. baseURL is the
// API root, such as https://generativelanguage.googleapis.com. A base URL
// that already ends in an API version (v1, v1beta or v1alpha) keeps it
// instead of getting /v1beta.
func geminiEndpoint(baseURL, model string) (string, error) {
	model = strings.TrimPrefix(model, "models/")
	if model == "" || model == "." || model == ".." || strings.ContainsAny(model, "/?#") {
		return "", fmt.Errorf("invalid Gemini model %q: want a model id such as gemini-2.5-flash-image", model)
	}

	method := "models/" + model + ":generateContent"
	if base, err := url.Parse(baseURL); err == nil {
		switch path.Base(base.Path) {
		case "v1", "v1beta", "v1alpha":
			return endpointURL(baseURL, method)
		}
	}
	return endpointURL(baseURL, "v1beta/"+method)
}

// encodeGeminiBodies builds the generateContent bodies from Prompt, N and
// ExtraGoogle, as ImageRequest.ExtraGoogle describes: one body per call
// that together make the N images. Gemini's image models reject a
// candidateCount above 1 ("Multiple candidates is not enabled"), so N
// images take N calls of one candidate each, and each call gets its own
// seed (see callSeeds) so that the calls give different images. A client
// that names candidateCount in its generationConfig declares a model that
// accepts several candidates, and gets one call with candidateCount N.
func encodeGeminiBodies(req ImageRequest) ([][]byte, error) {
	fields := make(map[string]json.RawMessage, len(req.ExtraGoogle)+2)
	for name, value := range req.ExtraGoogle {
		fields[name] = value
	}

	config, err := GeminiGenerationConfig(req.ExtraGoogle)
	if err != nil {
		return nil, err
	}
	delete(fields, "generation_config")
	delete(fields, "generationConfig")

	// Gemini image models return only text unless the response modalities
	// include IMAGE.
	if !hasAnyKey(config, "responseModalities", "response_modalities") {
		config["responseModalities"] = json.RawMessage(`["TEXT","IMAGE"]`)
	}
	seeds := []json.RawMessage{config["seed"]}
	if req.N > 1 && hasAnyKey(config, "candidateCount", "candidate_count") {
		delete(config, "candidate_count")
		config["candidateCount"] = json.RawMessage(fmt.Sprint(req.N))
	} else if req.N > 1 {
		seeds = callSeeds(config["seed"], req.N)
	}

	type part struct {
		Text string `json:"text"`
	}
	type content struct {
		Role  string `json:"role"`
		Parts []part `json:"parts"`
	}
	delete(fields, "contents")
	if fields["contents"], err = json.Marshal([]content{{Role: "user", Parts: []part{{Text: req.Prompt}}}}); err != nil {
		return nil, fmt.Errorf("encode contents: %w", err)
	}

	bodies := make([][]byte, 0, len(seeds))
	for _, seed := range seeds {
		if seed != nil {
			config["seed"] = seed
		}
		if fields["generationConfig"], err = json.Marshal(config); err != nil {
			return nil, fmt.Errorf("encode generationConfig: %w", err)
		}
		body, err := json.Marshal(fields)
		if err != nil {
			return nil, fmt.Errorf("encode generateContent request: %w", err)
		}
		bodies = append(bodies, body)
	}
	return bodies, nil
}

// InvalidGenerationConfigError is a generationConfig (or
// generation_config) in ExtraGoogle that is neither an object nor null.
type InvalidGenerationConfigError struct {
	// Field is the spelling that the extra fields use.
	Field string
}

func (e *InvalidGenerationConfigError) Error() string {
	return "extra Google field " + e.Field + " must be a JSON object"
}

// GeminiGenerationConfig merges the generation_config and generationConfig
// objects of extra, which the Google lane merges key by key into its own
// generationConfig. The snake_case spelling is merged first, so camelCase
// keys win, and null counts as absent. A spelling that is not an object
// gives an *InvalidGenerationConfigError.
func GeminiGenerationConfig(extra map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	config := map[string]json.RawMessage{}
	for _, name := range []string{"generation_config", "generationConfig"} {
		raw, ok := extra[name]
		if !ok || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			continue
		}

		var fields map[string]json.RawMessage
		if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
			return nil, &InvalidGenerationConfigError{Field: name}
		}
		maps.Copy(config, fields)
	}
	return config, nil
}

// callSeeds returns the generationConfig.seed of each of n calls: the
// client's seed plus the call's index, wrapping within int32, or a random
// base plus the index when the client set none. A client's seed that is
// not an int32 goes to every call as it is.
func callSeeds(clientSeed json.RawMessage, n int) []json.RawMessage {
	base := rand.Int32()
	if clientSeed != nil && !bytes.Equal(bytes.TrimSpace(clientSeed), []byte("null")) {
		var seed int32
		if err := json.Unmarshal(clientSeed, &seed); err != nil {
			seeds := make([]json.RawMessage, n)
			for i := range seeds {
				seeds[i] = clientSeed
			}
			return seeds
		}
		base = seed
	}
	seeds := make([]json.RawMessage, n)
	for i := range seeds {
		seeds[i] = json.RawMessage(strconv.FormatInt(int64(int32(uint32(base)+uint32(i))), 10))
	}
	return seeds
}

func hasAnyKey(fields map[string]json.RawMessage, names ...string) bool {
	for _, name := range names {
		if _, ok := fields[name]; ok {
			return true
		}
	}
	return false
}

// geminiNoImageReason describes why a response has no image, from the
// prompt's blockReason or the candidates' finishReason values.
func geminiNoImageReason(response geminiResponse) string {
	if feedback := response.PromptFeedback; feedback != nil && feedback.BlockReason != "" {
		reason := "no image: the prompt was blocked with blockReason " + feedback.BlockReason
		if feedback.BlockReasonMessage != "" {
			reason += ": " + feedback.BlockReasonMessage
		}
		return reason
	}
	if len(response.Candidates) == 0 {
		return "no image: the generateContent response has no candidates"
	}

	var reasons []string
	var finishMessage, text string
	for _, candidate := range response.Candidates {
		reason := candidate.FinishReason
		if reason == "" {
			reason = "unspecified"
		}
		if !slices.Contains(reasons, reason) {
			reasons = append(reasons, reason)
		}
		if finishMessage == "" {
			finishMessage = candidate.FinishMessage
		}
		if text == "" && candidate.Content != nil {
			for _, part := range candidate.Content.Parts {
				if !part.Thought && part.Text != "" {
					text = part.Text
					break
				}
			}
		}
	}

	message := "no image: no candidate contains an image, finishReason " + strings.Join(reasons, ", ")
	if finishMessage != "" {
		message += ": " + finishMessage
	}
	if text != "" {
		message += fmt.Sprintf("; the model answered with text only: %q", truncateText(text, 200))
	}
	return message
}

func truncateText(text string, maxBytes int) string {
	if len(text) <= maxBytes {
		return text
	}
	cut := maxBytes
	for cut > 0 && !utf8.RuneStart(text[cut]) {
		cut--
	}
	return text[:cut] + "..."
}

// classifyGeminiKeyError turns Gemini's response to an invalid key, which is
// HTTP 400 with reason API_KEY_INVALID in the error details, into
// ErrorAuth, so that the key is not blamed on the request.
func classifyGeminiKeyError(err error) error {
	var upstream *UpstreamError
	if errors.As(err, &upstream) && upstream.Kind == ErrorBadRequest && bytes.Contains(upstream.Body, []byte("API_KEY_INVALID")) {
		upstream.Kind = ErrorAuth
	}
	return err
}
