package models

import "time"

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
