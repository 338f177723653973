package activities_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.temporal.io/sdk/converter"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/aihigress/aihigress/activities"
	"github.com/aihigress/aihigress/internal/events"
	"github.com/aihigress/aihigress/internal/media"
	"github.com/aihigress/aihigress/internal/mockupstream"
	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/router"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/models"
	"github.com/aihigress/aihigress/workflows"
)

// imageFixture runs GenerateImages against the mock upstream, a real
// database and Redis, and a local media folder.
type imageFixture struct {
	store  *store.Store
	images *activities.Images
	mock   *mockupstream.Server
	run    *models.ChatRun
}

func newImageFixture(t *testing.T, finalize bool) *imageFixture {
	t.Helper()
	st := testenv.Store(t)
	redisURL, prefix := testenv.Redis(t)
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })

	mock, err := mockupstream.Start("", mockupstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mock.Close() })
	catalog := providers.NewCatalog()
	err = catalog.AddProvider(providers.Provider{ID: "up", Kind: "openai", BaseURL: mock.URL() + "/v1"},
		providers.LogicalModel{Name: "image-x", Capabilities: []providers.Capability{providers.CapabilityImageGeneration},
			Candidates: []providers.Candidate{{ProviderID: "up", Model: "gpt-image-mock", Weight: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	storage, err := media.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}

	bus := events.NewBus(rdb, prefix)
	rt := router.New(catalog, rdb, prefix, router.Options{})
	client := providers.NewClient(providers.ClientOptions{})
	logger := slog.New(slog.DiscardHandler)
	chat := &activities.Chat{Store: st, Bus: bus, Catalog: catalog, Router: rt, Client: client, Logger: logger}
	images := &activities.Images{
		Store: st, Bus: bus, Router: rt, Client: client, Storage: storage,
		KeyPrefix: "aih", DeltaMergeWindow: 10 * time.Millisecond, Logger: logger,
	}
	if finalize {
		images.Finalize = chat.FinalizeImages
	}

	ctx := context.Background()
	user := models.User{Username: "u" + testenv.Suffix(), Email: testenv.Suffix() + "@example.com", PasswordHash: "x", IsActive: true}
	if err := st.CreateUser(ctx, &user); err != nil {
		t.Fatal(err)
	}
	run, _, err := st.CreateGatewayRun(ctx, store.NewGatewayRun{
		UserID: user.ID, LogicalModel: "image-x", Kind: models.RunKindImage,
		RequestBody: models.MustJSON(models.ImageParams{Prompt: "a paper boat", N: 1, ResponseFormat: "url"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &imageFixture{store: st, images: images, mock: mock, run: run}
}

// generate runs one GenerateImages attempt on the run's only candidate.
func (f *imageFixture) generate(t *testing.T, attempt int) workflows.GenerateImagesResult {
	t.Helper()
	value, err := f.execute(f.run.ID, attempt)
	if err != nil {
		t.Fatalf("GenerateImages attempt %d: %v", attempt, err)
	}
	var result workflows.GenerateImagesResult
	if err := value.Get(&result); err != nil {
		t.Fatal(err)
	}
	return result
}

// execute runs one GenerateImages attempt for runID on the only candidate
// and returns what the activity returned.
func (f *imageFixture) execute(runID string, attempt int) (converter.EncodedValue, error) {
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(tlog.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(f.images.GenerateImages)
	in := workflows.AttemptInput{RunID: runID, Attempt: attempt, Candidate: workflows.Candidate{ProviderID: "up", Model: "gpt-image-mock"}}
	return env.ExecuteActivity(f.images.GenerateImages, in)
}

// TestGenerateImagesWaitsForRunRow covers runs that the API stores while it
// starts the workflow: an attempt that starts before the row is visible
// waits for it, and one whose run never appears fails for good.
func TestGenerateImagesWaitsForRunRow(t *testing.T) {
	f := newImageFixture(t, true)
	ctx := context.Background()
	late := f.store.NewGatewayRunRow(store.NewGatewayRun{
		UserID: f.run.UserID, LogicalModel: "image-x", Kind: models.RunKindImage,
		RequestBody: models.MustJSON(models.ImageParams{Prompt: "a late kite", N: 1, ResponseFormat: "url"}),
	})
	inserted := make(chan error, 1)
	go func() {
		time.Sleep(150 * time.Millisecond)
		inserted <- f.store.InsertGatewayRun(ctx, late)
	}()

	f.run = late
	result := f.generate(t, 1)
	if err := <-inserted; err != nil {
		t.Fatalf("insert the run: %v", err)
	}
	if len(result.Images) != 1 {
		t.Errorf("result images = %+v, want one", result.Images)
	}
	stored, err := f.store.RunByID(ctx, late.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Status != models.RunSucceeded {
		t.Errorf("run status = %q, want succeeded", stored.Status)
	}

	f.images.RunVisibleWait = 50 * time.Millisecond
	_, err = f.execute("00000000-0000-4000-8000-000000000000", 1)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != workflows.ErrorRunNotFound || !appErr.NonRetryable() {
		t.Errorf("attempt for a missing run: error %v, want the non-retryable %s", err, workflows.ErrorRunNotFound)
	}
}

// TestGenerateImagesSavesOutput checks what a successful attempt leaves
// behind, with Finalize, which stores the output and ends the run in one
// transaction, and without it.
func TestGenerateImagesSavesOutput(t *testing.T) {
	tests := []struct {
		name       string
		finalize   bool
		wantStatus string
		// wantLast is the type of the run's last event.
		wantLast string
	}{
		{name: "with Finalize", finalize: true, wantStatus: models.RunSucceeded, wantLast: models.EventMessageCompleted},
		{name: "without Finalize", finalize: false, wantStatus: models.RunRunning, wantLast: models.EventMessageDelta},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newImageFixture(t, tt.finalize)
			result := f.generate(t, 1)
			if len(result.Images) != 1 || result.Images[0].ObjectKey == "" {
				t.Fatalf("result images = %+v, want one stored image", result.Images)
			}

			run, err := f.store.RunByID(context.Background(), f.run.ID)
			if err != nil {
				t.Fatal(err)
			}
			if run.Status != tt.wantStatus {
				t.Errorf("run status after the attempt = %q, want %q", run.Status, tt.wantStatus)
			}
			images, err := store.Images(run)
			if err != nil || len(images) != 1 || images[0].ObjectKey != result.Images[0].ObjectKey {
				t.Errorf("stored images = %+v (%v), want the result's %+v", images, err, result.Images)
			}
			if run.CompletionTokens == 0 {
				t.Errorf("completion tokens = 0, want the upstream's usage")
			}

			var stored []models.ChatRunEvent
			if err := f.store.DB.Where("run_id = ?", f.run.ID).Order("seq").Find(&stored).Error; err != nil {
				t.Fatal(err)
			}
			last := stored[len(stored)-1]
			if last.EventType != tt.wantLast {
				t.Errorf("last event = %q, want %q", last.EventType, tt.wantLast)
			}
			if result.LastSeq != last.Seq {
				t.Errorf("result LastSeq = %d, want the last stored event's %d", result.LastSeq, last.Seq)
			}
			var text strings.Builder
			for _, event := range stored {
				if event.EventType == models.EventMessageDelta {
					var payload struct{ Delta string }
					if err := json.Unmarshal(event.Payload, &payload); err != nil {
						t.Fatal(err)
					}
					text.WriteString(payload.Delta)
				}
			}
			if !strings.Contains(text.String(), "Generating 1 image(s)") || !strings.HasSuffix(text.String(), "Stored 1 image(s).\n") {
				t.Errorf("progress text = %q, want the generating and stored notes", text.String())
			}
		})
	}
}

// TestGenerateImagesRetryAfterSuccess repeats an attempt whose result did
// not reach the workflow. It must return the stored images and leave the
// upstream alone.
func TestGenerateImagesRetryAfterSuccess(t *testing.T) {
	f := newImageFixture(t, true)
	first := f.generate(t, 1)
	requests := f.mock.Stats().Images

	second := f.generate(t, 2)
	if got := f.mock.Stats().Images; got != requests {
		t.Errorf("the repeated attempt made %d upstream requests, want 0", got-requests)
	}
	if len(second.Images) != 1 || second.Images[0] != first.Images[0] {
		t.Errorf("repeated attempt images = %+v, want the first attempt's %+v", second.Images, first.Images)
	}
	if second.Candidate != first.Candidate {
		t.Errorf("repeated attempt candidate = %+v, want %+v", second.Candidate, first.Candidate)
	}
}
