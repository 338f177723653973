package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/aihigress/aihigress/internal/apikeys"
	"github.com/aihigress/aihigress/internal/media"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/models"
	"github.com/aihigress/aihigress/workflows"
)

// ImageOptions configure image generation and the signed media links.
type ImageOptions struct {
	MaxPromptChars int
	// SyncWaitTimeout is how long a synchronous request waits for its run
	// before it responds 202 with the run id.
	SyncWaitTimeout time.Duration
	MaxAttempts     int
	// PublicBaseURL starts every signed link, such as
	// https://api.example.com. When empty, links use the request's host.
	PublicBaseURL string
	// Storage holds the images; Signer signs their links. With the database
	// storage, image responses carry data: URLs instead of links.
	Storage media.Storage
	Signer  *media.Signer
	// MediaHandler serves GET /media/images/{object_key}.
	MediaHandler http.Handler
}

// imageRunObject is the "object" of the 202 response to a background image
// generation.
const imageRunObject = "image.generation.run"

// imageGenerations serves POST /v1/images/generations. Every request runs as
// an ImageGenerationWorkflow. The request waits for it unless it requests
// the background path, and a client that disconnects leaves the workflow
// running, so its result stays readable by run id.
func (s *Server) imageGenerations(c *gin.Context) {
	key := currentAPIKey(c)
	req, ok := s.readImageRequest(c)
	if !ok {
		return
	}
	call := gatewayCallOf(c)
	call.logicalModel = req.Model
	if !key.AllowsModel(req.Model) {
		abortParamError(c, http.StatusForbidden, "model_not_allowed", "model", fmt.Sprintf("this API key may not use model %q", req.Model))
		return
	}
	if !s.checkImageModel(c, "model", req.Model) {
		return
	}
	idempotencyKey, ok := readIdempotencyKey(c)
	if !ok {
		return
	}
	background, ok := backgroundRequested(c, req.Background)
	if !ok {
		return
	}

	run, ok := s.createImageRun(c, key, req, idempotencyKey)
	if !ok {
		return
	}
	if background {
		acceptImageRun(c, run)
		return
	}

	// A server that shuts down stops waiting and responds with 202 and the run.
	ctx, stop := s.untilStreamsEnd(c.Request.Context())
	ctx, cancel := context.WithTimeout(ctx, s.Images.SyncWaitTimeout)
	err := s.waitForRunEnd(ctx, run)
	cancel()
	stop()
	if c.Request.Context().Err() != nil {
		s.Logger.Info("client left before the image run ended; the run goes on", "run_id", run.ID, "workflow_id", run.WorkflowID, "user_id", run.UserID)
		return
	}
	if err != nil {
		s.Logger.Info("image run still active after the wait limit", "run_id", run.ID, "workflow_id", run.WorkflowID, "error", err)
		acceptImageRun(c, run)
		return
	}

	finished, err := s.Store.RunByID(c, run.ID)
	if s.lookupError(c, "run", err) {
		return
	}
	s.respondImageRun(c, finished)
}

// createImageRun stores the run and starts its workflow. A request that
// repeats an Idempotency-Key gets the earlier run.
func (s *Server) createImageRun(c *gin.Context, key *apikeys.Principal, req imageRequest, idempotencyKey string) (*models.ChatRun, bool) {
	requestBody := models.MustJSON(req.Params)
	newRun := store.NewGatewayRun{
		UserID: key.UserID, APIKeyID: key.KeyID, LogicalModel: req.Model,
		RequestBody: requestBody, IdempotencyKey: idempotencyKey, Kind: models.RunKindImage,
	}
	if idempotencyKey == "" {
		run := s.Store.NewGatewayRunRow(newRun)
		if !s.insertAndStartRun(c, run, req.Params.Prompt) {
			return nil, false
		}
		s.logImageAccepted(run, key, req, false)
		return run, true
	}

	run, existing, err := s.Store.CreateGatewayRun(c, newRun)
	if err != nil {
		s.internalError(c, "create image run failed", err)
		return nil, false
	}
	if existing && (run.Kind != models.RunKindImage || !sameGatewayRequest(run, key.KeyID, req.Model, requestBody)) {
		abortError(c, http.StatusConflict, "idempotency_key_reused",
			"Idempotency-Key was already used for a different request with this API key; send a new key")
		return nil, false
	}
	if !existing || !models.IsTerminalRunStatus(run.Status) {
		if !s.startRun(c, run, req.Params.Prompt) {
			return nil, false
		}
	}
	s.logImageAccepted(run, key, req, existing)
	return run, true
}

func (s *Server) logImageAccepted(run *models.ChatRun, key *apikeys.Principal, req imageRequest, replayed bool) {
	s.Logger.Info("image generation accepted", "run_id", run.ID, "workflow_id", run.WorkflowID,
		"user_id", run.UserID, "api_key_id", key.KeyID, "model", req.Model, "n", req.Params.N, "replayed", replayed)
}

// insertAndStartRun stores a new run and starts its workflow at the same
// time, so the insert's commit overlaps the start call. Only runs
// without an Idempotency-Key take this path, because a repeated key must
// find the earlier run before anything starts. GenerateImages, the first
// reader of the run, waits briefly for a row that is not yet visible.
func (s *Server) insertAndStartRun(c *gin.Context, run *models.ChatRun, prompt string) bool {
	inserted := make(chan error, 1)
	go func() {
		// Like the start, the insert goes on when the client disconnects.
		inserted <- s.Store.InsertGatewayRun(context.WithoutCancel(c.Request.Context()), run)
	}()
	startErr := s.startWorkflow(c, run, prompt)

	if err := <-inserted; err != nil {
		if startErr == nil {
			s.terminateUnstoredRun(run)
		}
		s.internalError(c, "create image run failed", err)
		return false
	}
	if startErr != nil {
		s.failUnstartedRun(c, run, startErr)
		return false
	}
	return true
}

// terminateUnstoredRun ends the workflow of a run whose row could not be
// stored. Its attempts could only fail, because they find no run.
func (s *Server) terminateUnstoredRun(run *models.ChatRun) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Temporal.TerminateWorkflow(ctx, run.WorkflowID, "", "the run could not be stored in the database"); err != nil {
		s.Logger.Error("terminate the workflow of an unstored run failed", "run_id", run.ID, "workflow_id", run.WorkflowID,
			"user_id", run.UserID, "error", err)
	}
}

func acceptImageRun(c *gin.Context, run *models.ChatRun) {
	c.Header("Location", "/v1/runs/"+run.ID)
	c.JSON(http.StatusAccepted, gin.H{
		"id":     run.ID,
		"run_id": run.ID,
		"object": imageRunObject,
		"status": run.Status,
		"model":  run.RequestedLogicalModel,
	})
}

// respondImageRun writes the OpenAI images response of a succeeded run, or
// the run's error with the status that its error code calls for.
func (s *Server) respondImageRun(c *gin.Context, run *models.ChatRun) {
	switch run.Status {
	case models.RunSucceeded:
		s.writeImagesResponse(c, run)
	case models.RunFailed, models.RunCanceled:
		code, message := run.ErrorCode, run.ErrorMessage
		if code == "" {
			code = "run_" + run.Status
		}
		if message == "" {
			message = "the image run " + run.Status
		}
		status := imageErrorStatus(code)
		c.AbortWithStatusJSON(status, gin.H{
			"error":  errorDetail{Message: message, Type: errorType(status), Code: code},
			"run_id": run.ID,
		})
	default:
		acceptImageRun(c, run)
	}
}

// imageErrorStatus maps a failed image run's error code to the HTTP status
// of the synchronous response.
func imageErrorStatus(code string) int {
	switch code {
	case "upstream_bad_request", "upstream_no_image", workflows.ErrorInvalidInput:
		return http.StatusBadRequest
	case "rate_limited", workflows.ErrorCoolingDown:
		return http.StatusTooManyRequests
	case "upstream_timeout", "worker_lost":
		return http.StatusGatewayTimeout
	case workflows.ErrorNoCandidate, workflows.ErrorUnknownModel:
		return http.StatusServiceUnavailable
	case "canceled", "run_canceled":
		return http.StatusConflict
	default:
		return http.StatusBadGateway
	}
}

// imageLink returns the link to an object that responses and message views
// carry: a signed URL on PublicBaseURL or the request's host.
func (s *Server) imageLink(c *gin.Context, objectKey string) string {
	if s.Images.Signer == nil {
		return ""
	}
	return s.Images.Signer.URL(s.publicBaseURL(c), objectKey, time.Now())
}

// publicBaseURL returns PublicBaseURL, or the scheme and host of the request.
func (s *Server) publicBaseURL(c *gin.Context) string {
	if s.Images.PublicBaseURL != "" {
		return s.Images.PublicBaseURL
	}
	scheme := "http"
	if c.Request.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + c.Request.Host
}

// imagesWithLinks returns the stored images of run as message items with
// fresh links.
func (s *Server) imagesWithLinks(c *gin.Context, run *models.ChatRun) ([]models.ImageItem, error) {
	images, err := store.Images(run)
	if err != nil {
		return nil, err
	}
	items := make([]models.ImageItem, len(images))
	for i, image := range images {
		items[i] = models.ImageItem{
			ObjectKey: image.ObjectKey, URL: s.imageLink(c, image.ObjectKey),
			ContentType: image.ContentType, Size: image.Size, RevisedPrompt: image.RevisedPrompt,
		}
	}
	return items, nil
}

var errNoImages = errors.New("the run has no stored images")
