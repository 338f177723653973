package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/aihigress/aihigress/internal/app"
	"github.com/aihigress/aihigress/internal/config"
	"github.com/aihigress/aihigress/internal/devenv"
	"github.com/aihigress/aihigress/internal/mockupstream"
	"github.com/aihigress/aihigress/internal/payloadcodec"
	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/store"
)

func runServe(ctx context.Context, cfg config.Config, logger *slog.Logger) error {
	if err := requireSecrets(cfg); err != nil {
		return err
	}
	a, err := app.Connect(ctx, cfg, nil, logger)
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.EnsureAdmin(ctx, cfg.AdminUsername, cfg.AdminPassword, printf); err != nil {
		return err
	}
	if cfg.Images.WorkerInAPI {
		stop, err := a.StartImageWorker()
		if err != nil {
			return err
		}
		// Deferred, so the worker stops after the HTTP server has shut down
		// and no request can start an image workflow on it any more.
		defer stop()
	}
	return a.Serve(ctx)
}

func runWorker(ctx context.Context, cfg config.Config, logger *slog.Logger) error {
	if err := requireSecrets(cfg); err != nil {
		return err
	}
	a, err := app.Connect(ctx, cfg, nil, logger)
	if err != nil {
		return err
	}
	defer a.Close()
	return a.RunWorker(ctx, cfg.Worker.TaskQueues)
}

func runMigrate(ctx context.Context, cfg config.Config, logger *slog.Logger) error {
	st, err := store.Open(ctx, store.Options{DatabaseURL: cfg.DatabaseURL, SQLitePath: cfg.SQLitePath})
	if err != nil {
		return err
	}
	defer st.Close()
	applied, err := st.Migrate(ctx)
	if err != nil {
		return err
	}
	logger.Info("migrations applied", "dialect", st.Dialect, "count", len(applied), "files", applied)
	return nil
}

func runMockUpstream(ctx context.Context, args []string, logger *slog.Logger) error {
	flags := flag.NewFlagSet("mock-upstream", flag.ContinueOnError)
	addr := flags.String("addr", "127.0.0.1:18081", "listen address")
	tps := flags.Float64("tps", 50, "tokens per second; 0 sends tokens without pacing")
	ttft := flags.Duration("ttft", 100*time.Millisecond, "delay before the first token")
	apiKey := flags.String("api-key", "", "require this bearer key when set")
	if err := flags.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	logger.Info("mock upstream listening", "addr", *addr, "tps", *tps, "ttft", *ttft)
	return mockupstream.Run(ctx, *addr, mockupstream.Options{
		TokensPerSecond: *tps, TimeToFirstToken: *ttft, APIKey: *apiKey, Logger: logger,
	})
}

// runDev starts whatever is not configured (Redis, Temporal, an upstream),
// then the API and the worker in this process.
func runDev(ctx context.Context, cfg config.Config, logger *slog.Logger) error {
	if err := useDevSecrets(&cfg, logger); err != nil {
		return err
	}
	cfg.Images.UseLocalDir(filepath.Join("data", "media"))
	// The API and the worker share this process and its metrics registry,
	// so the API's /metrics covers the worker and no second port is opened.
	cfg.Metrics.WorkerAddr = ""
	// The API in this process starts runs on every task queue, so dev runs
	// every worker.
	if cfg.Worker.TaskQueues != config.AllTaskQueues() {
		logger.Warn("dev runs the workers of every task queue and ignores WORKER_TASK_QUEUES", "worker_task_queues", cfg.Worker.TaskQueues.Names())
	}

	if cfg.RedisURL == "" {
		redisServer, url, err := devenv.StartRedis()
		if err != nil {
			return err
		}
		defer redisServer.Close()
		cfg.RedisURL = url
		logger.Info("REDIS_URL is not set; started an embedded Redis-protocol server", "url", url)
	}

	// With a payload key, the codec server starts first, so that the dev
	// server's Web UI can be pointed at it.
	var codecServer *payloadcodec.Server
	var uiCodecEndpoint string
	if cfg.Payloads.Enabled() {
		var err error
		codecServer, uiCodecEndpoint, err = startDevCodecServer(&cfg, logger)
		if err != nil {
			return err
		}
		defer codecServer.Close()
	}

	if cfg.TemporalAddress == "" {
		logger.Info("TEMPORAL_ADDRESS is not set; starting the Temporal dev server", "cli", cfg.TemporalCLIPath, "db", cfg.TemporalDBPath)
		srv, err := devenv.StartTemporal(ctx, devenv.TemporalOptions{
			CLIPath:         cfg.TemporalCLIPath,
			HostPort:        "127.0.0.1:7233",
			Namespace:       cfg.TemporalNamespace,
			DBPath:          cfg.TemporalDBPath,
			UIPort:          strconv.Itoa(cfg.TemporalUIPort),
			UICodecEndpoint: uiCodecEndpoint,
			Output:          os.Stderr,
		})
		if err != nil {
			return err
		}
		defer func() {
			if err := srv.Stop(); err != nil {
				logger.Warn("stop Temporal dev server", "error", err)
			}
		}()
		cfg.TemporalAddress = srv.FrontendHostPort()
		logger.Info("Temporal dev server ready", "address", cfg.TemporalAddress, "web_ui", fmt.Sprintf("http://127.0.0.1:%d", cfg.TemporalUIPort))
	}

	envCatalog, err := providers.LoadCatalog(os.Getenv, os.ReadFile)
	if err != nil {
		return fmt.Errorf("load providers: %w", err)
	}

	// Without providers in the environment, dev serves the mock upstream and
	// seeds it as a fallback, which takes effect only while the database has
	// no logical model.
	var fallback *providers.Catalog
	var mockURL string
	if envCatalog.Empty() {
		mock, err := mockupstream.Start(cfg.MockUpstreamAddr, mockupstream.Options{TokensPerSecond: 40, TimeToFirstToken: 150 * time.Millisecond, Logger: logger})
		if err != nil {
			return fmt.Errorf("start mock upstream: %w", err)
		}
		defer mock.Close()
		mockURL = mock.URL() + "/v1"
		if fallback, err = mockCatalog(mock.URL()); err != nil {
			return err
		}
	}

	group, groupCtx := errgroup.WithContext(ctx)
	a, err := app.ConnectWithFallback(ctx, cfg, envCatalog, fallback, logger)
	if err != nil {
		return err
	}
	defer a.Close()
	if mockURL != "" {
		logMockProvider(a.Catalog, mockURL, logger)
	}
	if err := a.EnsureAdmin(ctx, cfg.AdminUsername, cfg.AdminPassword, printf); err != nil {
		return err
	}

	group.Go(func() error { return a.RunWorker(groupCtx, config.AllTaskQueues()) })
	group.Go(func() error { return a.Serve(groupCtx) })
	if codecServer != nil {
		group.Go(func() error { return codecServer.Wait(groupCtx) })
	}
	logger.Info("AI Higress dev is up", "api", "http://"+cfg.HTTPAddr)
	return group.Wait()
}

// mockCatalog registers the mock upstream at rootURL as provider "mock",
// OpenAI-compatible, with the logical models mock-gpt, mock-gpt-mini and
// mock-image, and as provider "mock-gemini", Gemini-compatible, with the
// logical model mock-gemini-image.
func mockCatalog(rootURL string) (*providers.Catalog, error) {
	catalog := providers.NewCatalog()
	images := []providers.Capability{providers.CapabilityImageGeneration}
	err := catalog.AddProvider(providers.Provider{ID: "mock", Name: "Mock upstream", Kind: "openai", BaseURL: rootURL + "/v1"},
		providers.LogicalModel{Name: "mock-gpt", Candidates: []providers.Candidate{{ProviderID: "mock", Model: "mock-gpt"}}},
		providers.LogicalModel{Name: "mock-gpt-mini", Candidates: []providers.Candidate{{ProviderID: "mock", Model: "mock-gpt-mini"}}},
		providers.LogicalModel{Name: "mock-image", Capabilities: images, Candidates: []providers.Candidate{{ProviderID: "mock", Model: "mock-image"}}},
	)
	if err != nil {
		return nil, fmt.Errorf("register the mock upstream: %w", err)
	}
	err = catalog.AddProvider(providers.Provider{ID: "mock-gemini", Name: "Mock upstream (Gemini API)", Kind: "gemini", BaseURL: rootURL},
		providers.LogicalModel{Name: "mock-gemini-image", Capabilities: images, Candidates: []providers.Candidate{{ProviderID: "mock-gemini", Model: "mock-gemini-image"}}},
	)
	if err != nil {
		return nil, fmt.Errorf("register the mock Gemini upstream: %w", err)
	}
	return catalog, nil
}

// logMockProvider prints the dev hint about the mock upstream, or explains
// why the catalog does not use it.
func logMockProvider(catalog *providers.Catalog, baseURL string, logger *slog.Logger) {
	mock, ok := catalog.Provider("mock")
	switch {
	case !ok:
		logger.Info("the database already has logical models, so the mock upstream is not registered; add it with POST /admin/providers if you need it",
			"base_url", baseURL)
	case mock.BaseURL != baseURL:
		logger.Warn("provider \"mock\" in the database points elsewhere than the mock upstream of this run; update its base_url with PATCH /admin/providers/mock",
			"stored_base_url", mock.BaseURL, "base_url", baseURL)
	default:
		logger.Info("providers \"mock\" and \"mock-gemini\" are the mock upstream of this run, with the chat models mock-gpt and mock-gpt-mini and the image models mock-image and mock-gemini-image; they were registered because no provider was configured",
			"base_url", baseURL)
	}
}

func printf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format, args...)
}
