package models

import (
	"encoding/json"
	"time"
)

// StoredImage is one image of an image run, as kept in ChatRun.OutputImages
// and in image_generation message content. The bytes live in the media
// storage under ObjectKey.
type StoredImage struct {
	ObjectKey     string `json:"object_key"`
	Size          int64  `json:"size"`
	ContentType   string `json:"content_type"`
	RevisedPrompt string `json:"revised_prompt,omitempty"`
}

// MediaObject is an image stored in the database. The database storage
// uses it when neither OSS nor a local directory is configured.
type MediaObject struct {
	ObjectKey   string `gorm:"primaryKey"`
	ContentType string
	Size        int64
	ETag        string `gorm:"column:etag"`
	Data        []byte
	CreatedAt   time.Time
}

// Image generation statuses in ImageGenerationContent.
const (
	ImagePending   = "pending"
	ImageSucceeded = "succeeded"
	ImageFailed    = "failed"
)

// ImageParams is the stored request of an image run (ChatRun.RequestBody):
// the validated fields of POST /v1/images/generations or of a conversation's
// image generation. The GenerateImages activity builds the upstream request
// from it.
type ImageParams struct {
	Prompt            string `json:"prompt"`
	N                 int    `json:"n"`
	Size              string `json:"size,omitempty"`
	Quality           string `json:"quality,omitempty"`
	Style             string `json:"style,omitempty"`
	ResponseFormat    string `json:"response_format"`
	Background        string `json:"background,omitempty"`
	OutputFormat      string `json:"output_format,omitempty"`
	OutputCompression *int   `json:"output_compression,omitempty"`
	User              string `json:"user,omitempty"`
	// ExtraOpenAI and ExtraGoogle are merged into the upstream body of the
	// lane that serves the run: extra_body.openai and extra_body.google.
	ExtraOpenAI map[string]json.RawMessage `json:"extra_openai,omitempty"`
	ExtraGoogle map[string]json.RawMessage `json:"extra_google,omitempty"`
}

// ImageGenerationContent is the content document of an assistant message
// that holds an image generation. Images carry object keys. Their URLs are
// signed whenever the message is read, because a stored signature expires.
type ImageGenerationContent struct {
	Type   string          `json:"type"`
	Status string          `json:"status"`
	Prompt string          `json:"prompt"`
	Params json.RawMessage `json:"params"`
	Images []ImageItem     `json:"images"`
	Error  *ContentError   `json:"error,omitempty"`
}

// ImageItem is one image of an ImageGenerationContent.
type ImageItem struct {
	ObjectKey     string `json:"object_key"`
	URL           string `json:"url"`
	ContentType   string `json:"content_type,omitempty"`
	Size          int64  `json:"size,omitempty"`
	RevisedPrompt string `json:"revised_prompt,omitempty"`
}

// ContentError is the error of a failed generation.
type ContentError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ImageContentType is the "type" of ImageGenerationContent.
const ImageContentType = "image_generation"

// ImageContent decodes the image generation content of m. ok is false for
// other content types.
func (m Message) ImageContent() (content ImageGenerationContent, ok bool) {
	if err := json.Unmarshal(m.Content, &content); err != nil || content.Type != ImageContentType {
		return ImageGenerationContent{}, false
	}
	return content, true
}

// PendingImageContent is the content of an assistant message whose image
// run has not ended. params are the generation parameters shown to clients.
func PendingImageContent(prompt string, params json.RawMessage) JSON {
	return MustJSON(ImageGenerationContent{
		Type: ImageContentType, Status: ImagePending, Prompt: prompt, Params: params, Images: []ImageItem{},
	})
}
