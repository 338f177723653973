package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/aihigress/aihigress/models"
)

// ImageWorkflowIDPrefix is prepended to an image run's ID to form its
// workflow ID.
const ImageWorkflowIDPrefix = "image-run-"

// setKind makes run an image run when kind is models.RunKindImage.
func setKind(run *models.ChatRun, kind string) {
	if kind == models.RunKindImage {
		run.Kind = models.RunKindImage
		run.WorkflowID = ImageWorkflowIDPrefix + run.ID
	}
}

// SaveImages stores the images of a successful image attempt. Like
// SaveOutput, it changes only a running run.
func (s *Store) SaveImages(ctx context.Context, runID string, images []models.StoredImage, usage models.Usage) error {
	updates := setImageOutput(&models.ChatRun{}, images, usage)
	updates["updated_at"] = s.DB.NowFunc()
	return s.DB.WithContext(ctx).Model(&models.ChatRun{}).
		Where("id = ? AND status = ?", runID, models.RunRunning).
		Updates(updates).Error
}

// ImageOutput is the output of a successful image attempt, which
// FinalizeRun stores with the run's end.
type ImageOutput struct {
	Images []models.StoredImage
	Usage  models.Usage
	// Note, when set, is the text of a message.delta event that comes
	// just before the terminal events.
	Note string
}

// setImageOutput copies an image attempt's output into run and returns the
// run columns to update with it.
func setImageOutput(run *models.ChatRun, images []models.StoredImage, usage models.Usage) map[string]any {
	run.OutputImages = models.MustJSON(images)
	run.OutputPreview = fmt.Sprintf("%d image(s)", len(images))
	run.PromptTokens, run.CompletionTokens = usage.PromptTokens, usage.CompletionTokens
	return map[string]any{
		"output_images": run.OutputImages, "output_preview": run.OutputPreview,
		"prompt_tokens": run.PromptTokens, "completion_tokens": run.CompletionTokens,
	}
}

// Images decodes the stored images of an image run; it returns nil for a
// run without images.
func Images(run *models.ChatRun) ([]models.StoredImage, error) {
	if len(run.OutputImages) == 0 || string(run.OutputImages) == "null" {
		return nil, nil
	}
	var images []models.StoredImage
	if err := json.Unmarshal(run.OutputImages, &images); err != nil {
		return nil, fmt.Errorf("decode output_images of run %s: %w", run.ID, err)
	}
	return images, nil
}

// finalImageContent builds the image_generation content of a finalized image
// run from its pending assistant message, or from its stored request when
// the run has no conversation. imageURL signs the links; nil leaves them
// empty.
func finalImageContent(tx *gorm.DB, run models.ChatRun, imageURL func(string) string) (models.ImageGenerationContent, error) {
	content := models.ImageGenerationContent{Type: models.ImageContentType, Params: json.RawMessage(run.RequestBody)}
	if run.AssistantMessageID != nil {
		var message models.Message
		if err := tx.Where("id = ?", *run.AssistantMessageID).First(&message).Error; err != nil {
			return content, fmt.Errorf("load assistant message: %w", notFound(err))
		}
		if pending, ok := message.ImageContent(); ok {
			content = pending
		}
	}
	if content.Prompt == "" {
		var params models.ImageParams
		if json.Unmarshal(run.RequestBody, &params) == nil {
			content.Prompt = params.Prompt
		}
	}

	content.Images = []models.ImageItem{}
	switch run.Status {
	case models.RunSucceeded:
		content.Status = models.ImageSucceeded
		images, err := Images(&run)
		if err != nil {
			return content, err
		}
		for _, image := range images {
			item := models.ImageItem{ObjectKey: image.ObjectKey, ContentType: image.ContentType, Size: image.Size, RevisedPrompt: image.RevisedPrompt}
			if imageURL != nil {
				item.URL = imageURL(image.ObjectKey)
			}
			content.Images = append(content.Images, item)
		}
	default:
		content.Status = models.ImageFailed
		content.Error = &models.ContentError{Code: run.ErrorCode, Message: run.ErrorMessage}
	}
	return content, nil
}

// writeAssistantMessage copies the outcome of a finalized run into its
// assistant message: the text of a succeeded chat run, or the final
// image_generation content of an image run, whose stored form keeps the
// object keys but not the signed links.
func writeAssistantMessage(tx *gorm.DB, run models.ChatRun, imageContent *models.ImageGenerationContent, now time.Time) error {
	if run.AssistantMessageID == nil {
		return nil
	}
	var content models.JSON
	switch {
	case imageContent != nil:
		stored := *imageContent
		stored.Images = make([]models.ImageItem, len(imageContent.Images))
		for i, image := range imageContent.Images {
			image.URL = ""
			stored.Images[i] = image
		}
		content = models.MustJSON(stored)
	case run.Status == models.RunSucceeded:
		content = models.NewTextContent(run.OutputText)
	default:
		return nil
	}
	if err := tx.Model(&models.Message{}).Where("id = ?", *run.AssistantMessageID).
		Updates(map[string]any{"content": content, "updated_at": now}).Error; err != nil {
		return fmt.Errorf("write assistant message: %w", err)
	}
	return nil
}
