package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/models"
)

// imagesResponse is OpenAI's images response with links.
type imagesResponse struct {
	Created int64        `json:"created"`
	Data    []imageDatum `json:"data"`
	Usage   *imagesUsage `json:"usage,omitempty"`
}

type imageDatum struct {
	URL           string `json:"url"`
	RevisedPrompt string `json:"revised_prompt,omitempty"`
}

type imagesUsage struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

func usageOf(run *models.ChatRun) *imagesUsage {
	if run.PromptTokens == 0 && run.CompletionTokens == 0 {
		return nil
	}
	return &imagesUsage{InputTokens: run.PromptTokens, OutputTokens: run.CompletionTokens, TotalTokens: run.PromptTokens + run.CompletionTokens}
}

// writeImagesResponse writes the images response of a succeeded image run
// in the run's response_format. Links are signed now. base64 responses, and
// the data: URLs of the database storage, are encoded while the objects are
// read from storage, so no image is held in memory whole.
func (s *Server) writeImagesResponse(c *gin.Context, run *models.ChatRun) {
	images, err := store.Images(run)
	if err == nil && len(images) == 0 {
		err = errNoImages
	}
	if err != nil {
		s.internalError(c, "read the run's images failed", err)
		return
	}
	var params models.ImageParams
	_ = json.Unmarshal(run.RequestBody, &params)

	dataURLs := s.Images.Storage != nil && s.Images.Storage.Name() == "database" && params.ResponseFormat != "b64_json"
	if params.ResponseFormat != "b64_json" && !dataURLs {
		response := imagesResponse{Created: run.CreatedAt.Unix(), Usage: usageOf(run), Data: make([]imageDatum, len(images))}
		for i, image := range images {
			response.Data[i] = imageDatum{URL: s.imageLink(c, image.ObjectKey), RevisedPrompt: image.RevisedPrompt}
		}
		c.JSON(http.StatusOK, response)
		return
	}
	s.writeInlineImages(c, run, images, dataURLs)
}

// writeInlineImages writes the images response with each image inline, as
// b64_json or as a data: URL. Every object is checked before the status
// goes out. A storage failure after that can only cut the response, which
// the client sees as a broken body, never as a complete wrong response.
func (s *Server) writeInlineImages(c *gin.Context, run *models.ChatRun, images []models.StoredImage, dataURLs bool) {
	if s.Images.Storage == nil {
		s.internalError(c, "no media storage is configured", errors.New("ImageOptions.Storage is nil"))
		return
	}
	for _, image := range images {
		if _, err := s.Images.Storage.Head(c, image.ObjectKey); err != nil {
			s.Logger.Error("stored image unreadable", "run_id", run.ID, "object_key", image.ObjectKey, "error", err)
			abortError(c, http.StatusBadGateway, "image_unavailable", "a stored image of this run cannot be read; try again later")
			return
		}
	}

	c.Header("Content-Type", "application/json; charset=utf-8")
	c.Status(http.StatusOK)
	w := c.Writer
	buf := []byte(`{"created":`)
	buf = strconv.AppendInt(buf, run.CreatedAt.Unix(), 10)
	buf = append(buf, `,"data":[`...)
	for i, image := range images {
		if i > 0 {
			buf = append(buf, ',')
		}
		if dataURLs {
			buf = append(buf, `{"url":"data:`...)
			buf = append(buf, image.ContentType...)
			buf = append(buf, `;base64,`...)
		} else {
			buf = append(buf, `{"b64_json":"`...)
		}
		if _, err := w.Write(buf); err != nil {
			return
		}
		if err := s.copyBase64(c, w, image); err != nil {
			s.Logger.Error("stream stored image failed; cutting the response", "run_id", run.ID, "object_key", image.ObjectKey, "error", err)
			panic(http.ErrAbortHandler)
		}
		buf = append(buf[:0], '"')
		if image.RevisedPrompt != "" {
			revised, _ := json.Marshal(image.RevisedPrompt)
			buf = append(buf, `,"revised_prompt":`...)
			buf = append(buf, revised...)
		}
		buf = append(buf, '}')
	}
	buf = append(buf, ']')
	if usage := usageOf(run); usage != nil {
		encoded, _ := json.Marshal(usage)
		buf = append(buf, `,"usage":`...)
		buf = append(buf, encoded...)
	}
	buf = append(buf, "}\n"...)
	_, _ = w.Write(buf)
}

// copyBase64 streams one stored image to w as standard base64.
func (s *Server) copyBase64(c *gin.Context, w io.Writer, image models.StoredImage) error {
	body, _, err := s.Images.Storage.Get(c, image.ObjectKey, 0, -1)
	if err != nil {
		return err
	}
	defer body.Close()
	encoder := base64.NewEncoder(base64.StdEncoding, w)
	if _, err := io.Copy(encoder, body); err != nil {
		return err
	}
	return encoder.Close()
}
