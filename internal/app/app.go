// Package app connects the service's dependencies (database, Redis, Temporal,
// upstream catalog) and builds the HTTP server and the workers from them.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/aihigress/aihigress/activities"
	"github.com/aihigress/aihigress/api"
	"github.com/aihigress/aihigress/internal/apikeys"
	"github.com/aihigress/aihigress/internal/auth"
	"github.com/aihigress/aihigress/internal/catalog"
	"github.com/aihigress/aihigress/internal/config"
	"github.com/aihigress/aihigress/internal/events"
	"github.com/aihigress/aihigress/internal/media"
	"github.com/aihigress/aihigress/internal/metrics"
	"github.com/aihigress/aihigress/internal/payloadcodec"
	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/ratelimit"
	"github.com/aihigress/aihigress/internal/requestlog"
	"github.com/aihigress/aihigress/internal/router"
	"github.com/aihigress/aihigress/internal/secrets"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/internal/tokens"
	"github.com/aihigress/aihigress/models"
	"github.com/aihigress/aihigress/worker"
	"github.com/aihigress/aihigress/workflows"
)

// App holds the connected dependencies.
type App struct {
	Config   config.Config
	Logger   *slog.Logger
	Store    *store.Store
	Redis    *redis.Client
	Temporal client.Client
	// Catalog is loaded from the database and kept current by Reloader for
	// the App's lifetime.
	Catalog  *providers.Catalog
	Reloader *catalog.Reloader
	Bus      *events.Bus
	Upstream *providers.Client
	Router   *router.Router
	// Media stores generated images; MediaLinks signs their links.
	Media      media.Storage
	MediaLinks *media.Signer
	// Recorder holds the process's metrics and provider buckets.
	Recorder *metrics.Recorder

	// providerKeys encrypts provider keys at rest.
	providerKeys *secrets.Cipher
	// Limiter keeps the rate limit counts on limiterRedis, a client of the
	// same server with its own connections and short timeouts.
	Limiter      *ratelimit.Limiter
	limiterRedis *redis.Client
	// stopRouter ends the router's cooldown mirror; routerDone is closed
	// when it has ended.
	stopRouter context.CancelFunc
	routerDone chan struct{}
}

// Connect opens the database (and migrates it), Redis and the Temporal
// client, seeds the catalog tables and loads the catalog from them. seed may
// be nil, in which case the catalog from the environment and PROVIDERS_FILE
// is seeded.
func Connect(ctx context.Context, cfg config.Config, seed *providers.Catalog, logger *slog.Logger) (*App, error) {
	return ConnectWithFallback(ctx, cfg, seed, nil, logger)
}

// ConnectWithFallback is Connect that also seeds fallback when the database
// has no logical model after seeding. `dev` passes the mock upstream.
func ConnectWithFallback(ctx context.Context, cfg config.Config, seed, fallback *providers.Catalog, logger *slog.Logger) (*App, error) {
	a := &App{Config: cfg, Logger: logger}
	// The SDK keeps one sticky workflow cache per process and sizes it
	// when the first worker starts, which comes after Connect.
	if size := cfg.Worker.StickyCacheSize; size > 0 {
		sdkworker.SetStickyWorkflowCacheSize(size)
	}
	if seed == nil {
		var err error
		seed, err = providers.LoadCatalog(os.Getenv, os.ReadFile)
		if err != nil {
			return nil, fmt.Errorf("load providers: %w", err)
		}
	}

	st, err := store.Open(ctx, store.Options{DatabaseURL: cfg.DatabaseURL, SQLitePath: cfg.SQLitePath, MaxOpenConns: cfg.DatabaseMaxOpenConns})
	if err != nil {
		return nil, err
	}
	a.Store = st
	applied, err := st.Migrate(ctx)
	if err != nil {
		a.Close()
		return nil, err
	}
	if len(applied) > 0 {
		logger.Info("database migrated", "dialect", st.Dialect, "applied", applied)
	}
	a.startMetrics()

	if cfg.RedisURL == "" {
		a.Close()
		return nil, errors.New("REDIS_URL is not set; `aihigress dev` starts an embedded Redis, other commands need one")
	}
	redisOpts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("invalid REDIS_URL: %w", err)
	}
	redisOpts.PoolSize = max(redisOpts.PoolSize, 64)
	a.Redis = redis.NewClient(redisOpts)
	if err := a.Redis.Ping(ctx).Err(); err != nil {
		a.Close()
		return nil, fmt.Errorf("connect to Redis: %w", err)
	}
	a.Bus = events.NewBus(a.Redis, cfg.RedisPrefix)
	a.Bus.OnPublished = a.Recorder.ObservePublishLag

	if err := a.startCatalog(ctx, seed, fallback); err != nil {
		a.Close()
		return nil, err
	}

	limiterOpts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("invalid REDIS_URL: %w", err)
	}
	// Every API request takes a connection for its rate limit check.
	limiterOpts.PoolSize = max(limiterOpts.PoolSize, 64)
	a.limiterRedis = redis.NewClient(ratelimit.ClientOptions(limiterOpts, ratelimit.DefaultTimeout))
	a.Limiter = ratelimit.New(a.limiterRedis, ratelimit.Options{Prefix: cfg.RedisPrefix})

	if cfg.TemporalAddress == "" {
		a.Close()
		return nil, errors.New("TEMPORAL_ADDRESS is not set; `aihigress dev` starts a dev server, other commands need one")
	}
	// The workers take the converters from this client, so the API and the
	// workers encrypt and decrypt payloads alike.
	converters, err := payloadcodec.New(cfg.Payloads)
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("payload encryption: %w", err)
	}
	if converters.Codec != nil {
		logger.Info("Temporal payloads are encrypted", "encrypting_key_id", converters.Codec.CurrentKeyID())
	}
	a.Temporal, err = client.DialContext(ctx, client.Options{
		HostPort:         cfg.TemporalAddress,
		Namespace:        cfg.TemporalNamespace,
		Logger:           tlog.NewStructuredLogger(logger.With("component", "temporal")),
		DataConverter:    converters.Data,
		FailureConverter: converters.Failure,
		// The SDK's metrics go to the process's /metrics.
		MetricsHandler:    a.Recorder.TemporalHandler(),
		ConnectionOptions: client.ConnectionOptions{GrpcCompression: grpcCompression(cfg.TemporalGRPCCompression)},
	})
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("connect to Temporal at %s: %w", cfg.TemporalAddress, err)
	}

	a.Upstream = providers.NewClient(providers.ClientOptions{
		ImageDownloadMaxBytes:     cfg.Images.DownloadMaxBytes,
		ImageDownloadTimeout:      cfg.Images.DownloadTimeout,
		ImageDownloadAllowPrivate: cfg.Images.DownloadAllowPrivate,
	})
	if err := a.openMedia(ctx); err != nil {
		a.Close()
		return nil, err
	}
	a.startRouter()
	return a, nil
}

// openMedia opens the image storage that the configuration selects and the
// signer of media links.
func (a *App) openMedia(ctx context.Context) error {
	storage, err := media.Open(ctx, a.Config.Images, a.Store.DB, a.Logger)
	if err != nil {
		return fmt.Errorf("open image storage: %w", err)
	}
	signer, err := media.NewSigner(a.Config.MasterKey, a.Config.Images.Prefix, a.Config.Images.LinkTTL)
	if err != nil {
		return fmt.Errorf("media link signer: %w", err)
	}
	a.Media, a.MediaLinks = storage, signer
	return nil
}

// startCatalog seeds the catalog tables, loads a.Catalog from them and
// starts the reloader, which runs until Close.
func (a *App) startCatalog(ctx context.Context, seed, fallback *providers.Catalog) error {
	var err error
	a.providerKeys, err = secrets.NewCipher(a.Config.MasterKey, secrets.PurposeProviderKeys)
	if err != nil {
		return err
	}
	if err := catalog.Seed(ctx, a.Store, a.providerKeys, seed, a.Logger); err != nil {
		return err
	}
	if fallback != nil {
		if _, err := catalog.SeedIfEmpty(ctx, a.Store, a.providerKeys, fallback, a.Logger); err != nil {
			return err
		}
	}

	a.Catalog = providers.NewCatalog()
	a.Reloader = catalog.NewReloader(a.Catalog, catalog.ReloaderOptions{
		Store:    a.Store,
		Cipher:   a.providerKeys,
		Redis:    a.Redis,
		Prefix:   a.Config.RedisPrefix,
		Interval: a.Config.CatalogReloadInterval,
		Logger:   a.Logger,
	})
	if err := a.Reloader.Reload(ctx); err != nil {
		return err
	}
	// The reloader outlives ctx, which may only cover the start, so Close
	// stops it.
	if err := a.Reloader.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}

	if a.Catalog.Empty() {
		a.Logger.Warn("no logical model is configured; every chat run fails with unknown_model until OPENAI_BASE_URL and OPENAI_MODELS or PROVIDERS_FILE are set, or a superuser adds one with POST /admin/logical-models")
	}
	return nil
}

// disableProviderKey stores that an upstream rejected a provider key and
// reloads the catalog everywhere, so that no process uses the key again.
func (a *App) disableProviderKey(ctx context.Context, keyID, reason string) error {
	if err := a.Store.DisableProviderKey(ctx, keyID, reason); err != nil {
		return err
	}
	return a.Reloader.Notify(ctx)
}

// startRouter builds the router and runs its cooldown mirror until Close.
func (a *App) startRouter() {
	a.Router = router.New(a.Catalog, a.Redis, a.Config.RedisPrefix, router.Options{
		Logger:     a.Logger,
		DisableKey: a.disableProviderKey,
		OnCooldown: a.Recorder.RecordCooldown,
	})
	ctx, cancel := context.WithCancel(context.Background())
	a.stopRouter = cancel
	a.routerDone = make(chan struct{})
	go func() {
		defer close(a.routerDone)
		if err := a.Router.Run(ctx); err != nil {
			a.Logger.Error("router cooldown mirror stopped", "error", err)
		}
	}()
}

// Close releases every connection.
func (a *App) Close() {
	a.closeMetrics()
	if a.stopRouter != nil {
		a.stopRouter()
		<-a.routerDone
	}
	if a.Reloader != nil {
		a.Reloader.Stop()
	}
	if a.Temporal != nil {
		a.Temporal.Close()
	}
	if a.limiterRedis != nil {
		_ = a.limiterRedis.Close()
	}
	if a.Redis != nil {
		_ = a.Redis.Close()
	}
	if a.Store != nil {
		_ = a.Store.Close()
	}
}

// APIServer builds the HTTP API. hub may be nil, which leaves SSE clients
// on database polling only.
func (a *App) APIServer(hub *events.Hub) (*api.Server, error) {
	cfg := a.Config
	keys, err := apikeys.NewService(a.Store, cfg.MasterKey, apikeys.Options{
		Redis:         a.Redis,
		RedisPrefix:   cfg.RedisPrefix,
		CacheTTL:      cfg.APIKeyCacheTTL,
		SweepInterval: cfg.APIKeySweepInterval,
		Logger:        a.Logger.With("component", "apikeys"),
	})
	if err != nil {
		return nil, err
	}
	rateLimits, err := a.rateLimits()
	if err != nil {
		return nil, err
	}
	return &api.Server{
		Store:    a.Store,
		Temporal: a.Temporal,
		Issuer:   auth.NewIssuer(cfg.JWTSecret, cfg.AccessTTL, cfg.RefreshTTL, time.Now),
		Tokens:   tokens.New(a.Redis, tokens.Options{Prefix: cfg.RedisPrefix}),
		Catalog:  a.Catalog,
		APIKeys:  keys,
		Router:   a.Router,
		Upstream: a.Upstream,
		Follower: &events.Follower{Store: a.Store, Hub: hub, Logger: a.Logger, Heartbeat: cfg.SSEHeartbeat, Poll: 5 * time.Second,
			OnLiveDelivery: a.Recorder.ObserveDeliverLag},
		Limits: api.Limits{
			MaxBodyBytes:        cfg.MaxBodyBytes,
			MaxContentChars:     cfg.MaxContentChars,
			SyncWaitTimeout:     cfg.SyncWaitTimeout,
			UpstreamMaxAttempts: cfg.UpstreamMaxAttempts,
		},
		Guards: api.Guards{
			RateLimits:          rateLimits,
			GatewayMaxBodyBytes: cfg.GatewayMaxBodyBytes,
			CORSAllowedOrigins:  cfg.CORSAllowedOrigins,
			TrustedProxies:      cfg.TrustedProxies,
			HSTSMaxAge:          cfg.HSTSMaxAge,
		},
		Images: api.ImageOptions{
			MaxPromptChars:  cfg.Images.MaxPromptChars,
			SyncWaitTimeout: cfg.Images.SyncWaitTimeout,
			MaxAttempts:     cfg.Images.MaxAttempts,
			PublicBaseURL:   cfg.Images.PublicBaseURL,
			Storage:         a.Media,
			Signer:          a.MediaLinks,
			MediaHandler:    media.NewHandler(a.Media, a.MediaLinks, a.Logger.With("component", "media")),
		},
		Logger:         a.Logger,
		Metrics:        a.apiMetrics(),
		MetricsToken:   cfg.MetricsToken,
		Recorder:       a.Recorder,
		ProviderHealth: a.providerHealth(),
		CatalogAdmin: &catalog.Admin{
			Store:   a.Store,
			Cipher:  a.providerKeys,
			Changed: a.Reloader.Notify,
			Logger:  a.Logger,
		},
		Readiness: api.Readiness{Checks: []api.ReadyCheck{
			api.PingDatabase(a.Store),
			api.PingRedis(a.Redis),
			api.CheckTemporal(a.Temporal),
		}},
	}, nil
}

// rateLimits builds the configured rate limit rules; a limit that is off
// stays nil.
func (a *App) rateLimits() (api.RateLimits, error) {
	var limits api.RateLimits
	rules := []struct {
		name   string
		config config.RateLimit
		dst    **ratelimit.Rule
	}{
		{"login", a.Config.RateLimitLogin, &limits.Login},
		{"register", a.Config.RateLimitRegister, &limits.Register},
		{"apikey", a.Config.RateLimitAPIKey, &limits.APIKey},
		{"user", a.Config.RateLimitUser, &limits.User},
	}
	for _, r := range rules {
		if !r.config.Enabled() {
			continue
		}
		rule, err := a.Limiter.NewRule(r.name, r.config.Requests, r.config.Window)
		if err != nil {
			return api.RateLimits{}, err
		}
		if r.dst == &limits.APIKey {
			// The gateway checks this rule on every request, so a busy key
			// reserves up to 1% of its limit per Redis round trip.
			rule.EnableLeases(r.config.Requests/100, apiKeyLeaseTTL)
		}
		*r.dst = rule
	}
	return limits, nil
}

// apiKeyLeaseTTL is how long an API process keeps rate limit slots that it
// reserved for a key and has not used.
const apiKeyLeaseTTL = time.Second

// ChatWorker builds the chat task queue worker.
func (a *App) ChatWorker() sdkworker.Worker {
	return worker.NewChatWorker(a.Temporal, a.chatActivities(), a.workerOptions(a.Config.Worker.ChatMaxConcurrentActivities))
}

// ImageWorker builds the image task queue worker.
func (a *App) ImageWorker() sdkworker.Worker {
	chat := a.chatActivities()
	images := &activities.Images{
		Store:            a.Store,
		Bus:              a.Bus,
		Router:           a.Router,
		Client:           a.Upstream,
		Storage:          a.Media,
		KeyPrefix:        a.Config.Images.Prefix,
		DeltaMergeWindow: a.Config.DeltaMergeWindow,
		// An image attempt's heartbeats only show that its worker is
		// alive and fetch a cancel request, so one a second is plenty for
		// the attempt's 10 s heartbeat timeout. Chat's 200 ms would send a
		// heartbeat while a short image request finishes.
		HeartbeatInterval: time.Second,
		Logger:            a.Logger,
		Metrics:           a.Recorder,
		Finalize:          chat.FinalizeImages,
	}
	return worker.NewImageWorker(a.Temporal, chat, images, a.workerOptions(a.Config.Worker.ImageMaxConcurrentActivities))
}

// workerOptions returns the configured options of a chat or image worker
// that runs at most maxActivities activities at once.
func (a *App) workerOptions(maxActivities int) worker.Options {
	return worker.Options{
		MaxConcurrentActivities: maxActivities,
		WorkflowTaskPollers:     a.Config.Worker.WorkflowTaskPollers,
		ActivityTaskPollers:     a.Config.Worker.ActivityTaskPollers,
		StopTimeout:             a.Config.Shutdown.WorkerStopTimeout,
	}
}

// StartImageWorker starts a worker for the image task queue on the API's
// Temporal client, for `serve` with IMAGE_WORKER_IN_API. The API starts
// image workflows with eager start, which the SDK applies only when a
// worker of the workflow's task queue shares the client. It returns the
// function that stops the worker.
func (a *App) StartImageWorker() (stop func(), err error) {
	images := a.ImageWorker()
	if err := images.Start(); err != nil {
		return nil, fmt.Errorf("start the image worker in the API process: %w", err)
	}
	a.Logger.Info("image worker started in the API process", "task_queue", workflows.ImageTaskQueue, "image_storage", a.Media.Name())
	return func() {
		images.Stop()
		a.Logger.Info("image worker in the API process stopped", "task_queue", workflows.ImageTaskQueue)
	}, nil
}

func (a *App) chatActivities() *activities.Chat {
	return &activities.Chat{
		Store:   a.Store,
		Bus:     a.Bus,
		Catalog: a.Catalog,
		Router:  a.Router,
		Client:  a.Upstream,
		Limits: activities.ChatLimits{
			HistoryMaxMessages: a.Config.HistoryMaxMessages,
			HistoryMaxChars:    a.Config.HistoryMaxChars,
			DeltaMergeWindow:   a.Config.DeltaMergeWindow,
		},
		Logger: a.Logger,
		// Terminal events carry links relative to the API's origin when no
		// public base URL is configured; message reads sign absolute ones.
		ImageURL: func(objectKey string) string {
			return a.MediaLinks.URL(a.Config.Images.PublicBaseURL, objectKey, time.Now())
		},
		Metrics: a.Recorder,
	}
}

// Serve runs the HTTP API on cfg.HTTPAddr until ctx ends, then shuts down
// gracefully within SHUTDOWN_TIMEOUT, as shutdownHTTP describes. It also
// runs the API key service's background work: cache invalidations from
// other API processes, last_used_at and, when API_KEY_SWEEP_INTERVAL is
// set, the sweep of expired keys.
func (a *App) Serve(ctx context.Context) error {
	// The live event fan-out lasts until the HTTP server has shut down, so
	// that open streams stay live while the server drains.
	hubCtx, stopHub := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHub()
	hub := events.NewHub(hubCtx, a.Bus, a.Logger)
	apiServer, err := a.APIServer(hub)
	if err != nil {
		return err
	}
	listener, err := net.Listen("tcp", a.Config.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on HTTP_ADDR %s: %w", a.Config.HTTPAddr, err)
	}

	// The key service stops after the HTTP server has shut down, so that it
	// writes the last_used_at of the requests that were still in flight.
	keysCtx, stopKeys := context.WithCancel(context.WithoutCancel(ctx))
	keysDone := make(chan struct{})
	go func() {
		defer close(keysDone)
		apiServer.APIKeys.Run(keysCtx)
	}()
	requestLog := requestlog.New(a.Store.DB, requestlog.Options{FlushInterval: a.Config.RequestLogFlushInterval, Logger: a.Logger})
	requestLog.Start()
	apiServer.RequestLog = requestLog

	srv := &http.Server{
		Handler:           apiServer.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	// Shutdown calls this once it has closed the listener.
	srv.RegisterOnShutdown(apiServer.EndStreams)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(listener) }()
	a.Logger.Info("HTTP API listening", "addr", listener.Addr().String())

	var serveErr error
	select {
	case err := <-errc:
		serveErr = fmt.Errorf("HTTP server: %w", err)
	case <-ctx.Done():
	}
	deadline := time.Now().Add(a.Config.Shutdown.Timeout)
	if serveErr == nil {
		a.shutdownHTTP(srv, apiServer, deadline)
	}
	stopHub()

	// The request log and the key service write their last rows in the
	// time that is left, at the same time.
	stopKeys()
	a.closeRequestLog(requestLog, deadline)
	if !waitUntil(keysDone, deadline) {
		a.Logger.Warn("API key usage not written before SHUTDOWN_TIMEOUT ended; last_used_at of the last minute may be lost")
	}
	a.Logger.Info("HTTP API stopped")
	return serveErr
}

// writeReserve returns the end of SHUTDOWN_TIMEOUT that Serve keeps for
// writing the queued request log rows and API key usage, which the
// requests of the drain add to: a fifth of it.
func writeReserve(timeout time.Duration) time.Duration {
	return timeout / 5
}

// shutdownHTTP drains srv so that it is closed by deadline less the
// writeReserve. First /readyz returns 503, and the server goes on serving
// for SHUTDOWN_DRAIN_DELAY. Then the listener closes, each open run event
// stream ends with a reconnect frame, and synchronous waits respond with
// 202. Requests that are still open when the time is up, such as gateway
// streams that an upstream still sends, are cut.
func (a *App) shutdownHTTP(srv *http.Server, apiServer *api.Server, deadline time.Time) {
	timeout := a.Config.Shutdown.Timeout
	httpDeadline := deadline.Add(-writeReserve(timeout))
	apiServer.StartDraining()
	a.Logger.Info("HTTP API draining; GET /readyz returns 503",
		"drain_delay", a.Config.Shutdown.DrainDelay.String(), "shutdown_timeout", timeout.String())
	if delay := a.Config.Shutdown.DrainDelay; delay > 0 {
		time.Sleep(min(delay, time.Until(httpDeadline)))
	}

	shutdownCtx, cancel := context.WithDeadline(context.Background(), httpDeadline)
	defer cancel()
	a.Logger.Info("HTTP API closing its listener; open event streams get a reconnect frame")
	if err := srv.Shutdown(shutdownCtx); err != nil {
		a.Logger.Warn("requests still open at the shutdown deadline are cut", "error", err,
			"streams_reconnected", apiServer.StreamsReconnected())
		_ = srv.Close()
		return
	}
	a.Logger.Info("HTTP requests drained", "streams_reconnected", apiServer.StreamsReconnected())
}

// waitUntil reports whether done was closed before deadline.
func waitUntil(done <-chan struct{}, deadline time.Time) bool {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-done:
		return true
	case <-timer.C:
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// closeRequestLog writes the queued request log rows before the process
// exits, waiting until deadline.
func (a *App) closeRequestLog(requestLog *requestlog.Writer, deadline time.Time) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := requestLog.Close(ctx); err != nil {
		a.Logger.Error("flush request log on shutdown failed; queued rows are lost", "error", err)
		return
	}
	a.Logger.Info("request log flushed", "rows_written", requestLog.Written(), "rows_dropped", requestLog.Dropped())
}

// RunWorker runs the workers of queues until ctx ends. `aihigress worker`
// passes WORKER_TASK_QUEUES, and `aihigress dev` passes every task queue.
// When queues contains the maintenance task queue, it creates or updates
// the maintenance schedules after the workers start. On ctx end it stops
// the workers as stopWorkers describes.
func (a *App) RunWorker(ctx context.Context, queues config.TaskQueues) error {
	metricsServer, err := a.startWorkerMetrics()
	if err != nil {
		return err
	}
	defer a.stopWorkerMetrics(metricsServer)
	started, taskQueues, err := a.startWorkers(queues)
	if err != nil {
		return err
	}
	a.Logger.Info("workers started", "task_queues", taskQueues,
		"image_storage", a.Media.Name(), "stop_timeout", a.Config.Shutdown.WorkerStopTimeout.String())
	if queues.Maintenance {
		a.ensureSchedules(ctx)
	} else {
		a.Logger.Info("maintenance schedules left as they are, because WORKER_TASK_QUEUES does not contain maintenance", "task_queues", taskQueues)
	}
	metricsServer.SetReady(true)
	<-ctx.Done()
	metricsServer.SetReady(false)
	a.stopWorkers(started...)
	return nil
}

// stopWorkers stops the workers at the same time and returns when all have
// stopped. Each stops polling at once and then waits up to
// WORKER_STOP_TIMEOUT for its running activities. Stopping them one after
// the other would let the later ones take new tasks while the earlier ones
// wait, and the waits would add up. The caller closes the Temporal client
// afterwards, because the activities report their results through it.
//
// NOTE: An activity that the SDK cancels at the stop timeout usually cannot
// report its failure, because the client closes right after Stop returns.
// Its workflow then retries only after the activity's heartbeat timeout.
func (a *App) stopWorkers(workers ...sdkworker.Worker) {
	started := time.Now()
	a.Logger.Info("workers stopping; running activities may finish", "stop_timeout", a.Config.Shutdown.WorkerStopTimeout.String())
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(w.Stop)
	}
	wg.Wait()
	a.Logger.Info("workers stopped", "elapsed", time.Since(started).Round(time.Millisecond).String())
}

// EnsureAdmin creates the first superuser when none exists. Without a
// configured password it generates one and writes it once to out.
func (a *App) EnsureAdmin(ctx context.Context, username, password string, out func(format string, args ...any)) error {
	exists, err := a.Store.HasSuperuser(ctx)
	if err != nil || exists {
		return err
	}
	generated := password == ""
	if generated {
		password = config.RandomToken(12)
	}
	hash, err := auth.HashPassword(password)
	if err != nil {
		return err
	}
	user := &models.User{Username: username, Email: username + "@localhost", PasswordHash: hash, IsSuperuser: true, IsActive: true}
	if err := a.Store.CreateUser(ctx, user); err != nil {
		if errors.Is(err, store.ErrConflict) {
			a.Logger.Warn("admin user not created: the username or email is taken", "username", username)
			return nil
		}
		return err
	}
	a.Logger.Info("superuser created", "username", username, "user_id", user.ID)
	if generated {
		out("\n  Superuser %q created with the generated password: %s\n  It is shown only this once; set ADMIN_PASSWORD to choose your own.\n\n", username, password)
	}
	return nil
}

// grpcCompression returns the SDK option for TEMPORAL_GRPC_COMPRESSION.
func grpcCompression(name string) client.GrpcCompression {
	if name == "gzip" {
		return &client.GrpcCompressionGzip{}
	}
	return &client.GrpcCompressionNone{}
}
