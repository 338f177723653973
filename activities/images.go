package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/aihigress/aihigress/internal/events"
	"github.com/aihigress/aihigress/internal/media"
	"github.com/aihigress/aihigress/internal/metrics"
	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/router"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/models"
	"github.com/aihigress/aihigress/workflows"
)

// ImageKeyKind is the object key segment after the prefix for generated
// images.
const ImageKeyKind = "images"

// ErrorStorage is the type of the retryable application error that a failed
// media storage write raises.
const ErrorStorage = "storage_error"

// Images holds the dependencies of the GenerateImages activity. Image runs
// share StartRun and FinalizeRun with chat runs.
type Images struct {
	Store   *store.Store
	Bus     *events.Bus
	Router  *router.Router
	Client  *providers.Client
	Storage media.Storage
	// KeyPrefix is the first segment of every object key.
	KeyPrefix         string
	DeltaMergeWindow  time.Duration
	HeartbeatInterval time.Duration
	Logger            *slog.Logger
	// Metrics receives the upstream calls; nil records none.
	Metrics *metrics.Recorder
	// RunVisibleWait bounds how long an attempt waits for a run that is
	// not stored yet. Zero means defaultRunVisibleWait.
	RunVisibleWait time.Duration
	// Finalize stores a successful attempt's output and ends the run (see
	// saveOutput). Nil stores the output alone and leaves the run's end to
	// the workflow's FinalizeRun.
	Finalize func(ctx context.Context, runID string, out store.ImageOutput, logger *slog.Logger) (lastSeq int64, err error)
}

// GenerateImages makes one upstream attempt of an image run: it requests the
// images from the chosen upstream, stores them under keys derived from the
// run ID and the image index, finalizes the run as succeeded, and returns
// only the keys. A retried attempt derives the same keys, so it overwrites
// instead of leaving orphans. An attempt for a run that an earlier attempt
// already finalized as succeeded returns that attempt's images without
// calling the upstream.
func (a *Images) GenerateImages(ctx context.Context, in workflows.AttemptInput) (workflows.GenerateImagesResult, error) {
	info := activity.GetInfo(ctx)
	logger := a.Logger.With("run_id", in.RunID, "workflow_id", info.WorkflowExecution.ID, "attempt", in.Attempt)

	run, err := a.waitForRun(ctx, in.RunID)
	if errors.Is(err, store.ErrNotFound) {
		return workflows.GenerateImagesResult{}, temporal.NewNonRetryableApplicationError("run "+in.RunID+" does not exist", workflows.ErrorRunNotFound, nil)
	}
	if err != nil {
		return workflows.GenerateImagesResult{}, err
	}
	logger = logger.With("user_id", run.UserID)
	if run.Status == models.RunSucceeded {
		return a.storedResult(ctx, run, logger)
	}

	var params models.ImageParams
	if err := json.Unmarshal(run.RequestBody, &params); err != nil || params.Prompt == "" {
		return workflows.GenerateImagesResult{}, temporal.NewNonRetryableApplicationError(
			"run "+run.ID+" has no valid image request", workflows.ErrorInvalidInput, err)
	}

	pick, err := chooseUpstream(ctx, a.Router, run, in)
	if err != nil {
		logger.Warn("no usable upstream for the attempt", "provider", in.Candidate.ProviderID, "model", in.Candidate.Model, "error", err)
		if recordErr := a.Store.StartAttempt(ctx, run.ID, in.Attempt, in.Candidate.ProviderID, in.Candidate.Model); recordErr != nil {
			return workflows.GenerateImagesResult{}, fmt.Errorf("record attempt: %w", recordErr)
		}
		return workflows.GenerateImagesResult{}, err
	}
	used := workflows.Candidate{ProviderID: pick.Candidate.ProviderID, Model: pick.Candidate.Model}
	recordFailover(a.Metrics, run, in.Attempt, used)
	logger = logger.With("provider", used.ProviderID, "model", used.Model)

	// The upstream call starts before the attempt's bookkeeping, which
	// then takes none of the run's time. When the bookkeeping fails, the
	// deferred stop cancels the call and waits for it.
	started := time.Now()
	call := startCall(ctx, func(callCtx context.Context) (*providers.ImageResult, error) {
		return a.Client.GenerateImages(callCtx, pick.Provider, imageRequest(params, used.Model))
	})
	defer call.stop()

	if err := a.Store.StartAttempt(ctx, run.ID, in.Attempt, used.ProviderID, used.Model); err != nil {
		return workflows.GenerateImagesResult{}, fmt.Errorf("record attempt: %w", err)
	}
	lastSeq, err := a.Store.LastSeq(ctx, run.ID)
	if err != nil {
		return workflows.GenerateImagesResult{}, err
	}
	writer := events.NewWriter(a.Store, a.Bus, run.ID, lastSeq, a.DeltaMergeWindow, logger)
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := writer.Close(closeCtx); err != nil {
			logger.Warn("close event writer failed", "error", err)
		}
	}()
	stopHeartbeat := startHeartbeat(ctx, a.HeartbeatInterval, func() any { return writer.LastSeq() })
	defer stopHeartbeat()
	_ = writer.Delta(fmt.Sprintf("Generating %d image(s) with %s/%s (attempt %d).\n", max(params.N, 1), used.ProviderID, used.Model, in.Attempt))

	<-call.done
	result, err := call.result, call.err
	a.Router.Report(ctx, pick, err)
	record := &upstreamCall{run: run, used: used, started: started}
	if err == nil && result.Usage != nil {
		record.tokensIn, record.tokensOut = result.Usage.InputTokens, result.Usage.OutputTokens
	}
	record.record(ctx, a.Metrics, err)
	if err != nil {
		return workflows.GenerateImagesResult{}, attemptError(ctx, err, used, logger)
	}

	refs, stored, err := a.storeImages(ctx, run, result.Images)
	if err != nil {
		logger.Warn("store images failed", "error", err)
		return workflows.GenerateImagesResult{}, temporal.NewApplicationErrorWithOptions(
			"storing the generated images failed: "+err.Error(), ErrorStorage,
			temporal.ApplicationErrorOptions{Details: []any{workflows.AttemptFailure{Candidate: used}}})
	}
	out := store.ImageOutput{Images: stored, Note: fmt.Sprintf("Stored %d image(s).\n", len(refs))}
	if result.Usage != nil {
		out.Usage = models.Usage{PromptTokens: result.Usage.InputTokens, CompletionTokens: result.Usage.OutputTokens}
	}
	// The writer must have stored its events before the run's output
	// takes the next sequence numbers.
	if err := writer.Flush(ctx); err != nil {
		return workflows.GenerateImagesResult{}, fmt.Errorf("store events: %w", err)
	}
	lastSeq, err = a.saveOutput(ctx, run.ID, out, writer, logger)
	if err != nil {
		return workflows.GenerateImagesResult{}, err
	}
	logger.Info("image attempt succeeded", "images", len(refs), "duration_ms", time.Since(started).Milliseconds(), "storage", a.Storage.Name())
	return workflows.GenerateImagesResult{Images: refs, Candidate: used, LastSeq: lastSeq}, nil
}

// defaultRunVisibleWait is the default of Images.RunVisibleWait. The API
// commits a gateway run's row within milliseconds of the workflow's start.
const defaultRunVisibleWait = 2 * time.Second

// waitForRun reads the run. The API stores a gateway image run while it
// starts the workflow, so a run that is not found is read again every
// 10 ms until RunVisibleWait has passed.
func (a *Images) waitForRun(ctx context.Context, runID string) (*models.ChatRun, error) {
	wait := a.RunVisibleWait
	if wait <= 0 {
		wait = defaultRunVisibleWait
	}
	deadline := time.Now().Add(wait)
	for {
		run, err := a.Store.RunByID(ctx, runID)
		if !errors.Is(err, store.ErrNotFound) || !time.Now().Before(deadline) {
			return run, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// upstreamResult is an image call that runs in its own goroutine. Its done
// channel closes once result and err are set.
type upstreamResult struct {
	result *providers.ImageResult
	err    error
	done   chan struct{}
	cancel context.CancelFunc
}

// startCall runs call in a new goroutine with a context derived from ctx.
func startCall(ctx context.Context, call func(ctx context.Context) (*providers.ImageResult, error)) *upstreamResult {
	callCtx, cancel := context.WithCancel(ctx)
	r := &upstreamResult{done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(r.done)
		r.result, r.err = call(callCtx)
	}()
	return r
}

// stop cancels the call and waits until it has returned.
func (r *upstreamResult) stop() {
	r.cancel()
	<-r.done
}

// saveOutput stores the attempt's images and usage and returns the run's
// last event number. With Finalize set, one transaction stores them, ends
// the run as succeeded and appends its terminal events. A request that
// waits for the run's end then does not wait for the activity result to
// reach the workflow and for the workflow's FinalizeRun. The workflow still
// runs FinalizeRun, which changes nothing once the run has ended.
func (a *Images) saveOutput(ctx context.Context, runID string, out store.ImageOutput, writer *events.Writer, logger *slog.Logger) (int64, error) {
	if a.Finalize == nil {
		if err := a.Store.SaveImages(ctx, runID, out.Images, out.Usage); err != nil {
			return 0, fmt.Errorf("save images: %w", err)
		}
		_ = writer.Delta(out.Note)
		if err := writer.Flush(ctx); err != nil {
			return 0, fmt.Errorf("store events: %w", err)
		}
		return writer.LastSeq(), nil
	}
	lastSeq, err := a.Finalize(ctx, runID, out, logger)
	if err != nil {
		return 0, fmt.Errorf("save images and finalize the run: %w", err)
	}
	return lastSeq, nil
}

// storedResult returns the result of the attempt that stored the images of
// run and finalized it. That attempt's result did not reach the workflow,
// for example because its worker stopped before it reported the result.
func (a *Images) storedResult(ctx context.Context, run *models.ChatRun, logger *slog.Logger) (workflows.GenerateImagesResult, error) {
	images, err := store.Images(run)
	if err != nil {
		return workflows.GenerateImagesResult{}, err
	}
	lastSeq, err := a.Store.LastSeq(ctx, run.ID)
	if err != nil {
		return workflows.GenerateImagesResult{}, err
	}
	refs := make([]workflows.ImageRef, len(images))
	for i, image := range images {
		refs[i] = workflows.ImageRef{ObjectKey: image.ObjectKey, Size: image.Size, ContentType: image.ContentType}
	}
	logger.Info("run already succeeded; returning its stored images", "images", len(refs))
	used := workflows.Candidate{ProviderID: run.SelectedProviderID, Model: run.SelectedProviderModel}
	return workflows.GenerateImagesResult{Images: refs, Candidate: used, LastSeq: lastSeq}, nil
}

// storeImages writes the images to the media storage. It drops each image's
// bytes once they are stored, so that a run holds at most one copy of each.
func (a *Images) storeImages(ctx context.Context, run *models.ChatRun, images []providers.GeneratedImage) ([]workflows.ImageRef, []models.StoredImage, error) {
	if len(images) == 0 {
		return nil, nil, errors.New("the upstream returned no image")
	}
	refs := make([]workflows.ImageRef, 0, len(images))
	stored := make([]models.StoredImage, 0, len(images))
	for i := range images {
		data := images[i].Data
		contentType := media.DetectContentType(data)
		if contentType == "application/octet-stream" {
			return nil, nil, fmt.Errorf("image %d is not a PNG, JPEG, GIF or WebP image", i)
		}
		key := media.ObjectKey(a.KeyPrefix, ImageKeyKind, run.CreatedAt, run.ID, i, contentType)
		info, err := a.Storage.Put(ctx, key, bytes.NewReader(data), int64(len(data)), contentType)
		if err != nil {
			return nil, nil, fmt.Errorf("put %s: %w", key, err)
		}
		images[i].Data = nil

		refs = append(refs, workflows.ImageRef{ObjectKey: key, Size: info.Size, ContentType: contentType})
		stored = append(stored, models.StoredImage{ObjectKey: key, Size: info.Size, ContentType: contentType, RevisedPrompt: images[i].RevisedPrompt})
	}
	return refs, stored, nil
}

// imageRequest builds the upstream request of an image run for the
// candidate's upstream model. The client's response_format shapes only our
// response: the lanes accept both b64_json and url responses from the upstream.
func imageRequest(params models.ImageParams, upstreamModel string) providers.ImageRequest {
	return providers.ImageRequest{
		Model:             upstreamModel,
		Prompt:            params.Prompt,
		N:                 max(params.N, 1),
		Size:              params.Size,
		Quality:           params.Quality,
		Style:             params.Style,
		Background:        params.Background,
		OutputFormat:      params.OutputFormat,
		OutputCompression: params.OutputCompression,
		User:              params.User,
		ExtraOpenAI:       params.ExtraOpenAI,
		ExtraGoogle:       params.ExtraGoogle,
	}
}
