// Package app connects the service's dependencies (database, Redis, Temporal,
// upstream catalog) and builds the HTTP server and the workers from them.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/aihigress/aihigress/activities"
	"github.com/aihigress/aihigress/api"
	"github.com/aihigress/aihigress/internal/apikeys"
	"github.com/aihigress/aihigress/internal/auth"
	"github.com/aihigress/aihigress/internal/config"
	"github.com/aihigress/aihigress/internal/events"
	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/requestlog"
	"github.com/aihigress/aihigress/internal/router"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/models"
	"github.com/aihigress/aihigress/worker"
)

// App holds the connected dependencies.
type App struct {
	Config   config.Config
	Logger   *slog.Logger
	Store    *store.Store
	Redis    *redis.Client
	Temporal client.Client
	Catalog  *providers.Catalog
	Bus      *events.Bus
	Upstream *providers.Client
	Router   *router.Router
}

// Connect opens the database (and migrates it), Redis and the Temporal
// client. catalog may be nil, in which case it is loaded from the
// environment and PROVIDERS_FILE.
func Connect(ctx context.Context, cfg config.Config, catalog *providers.Catalog, logger *slog.Logger) (*App, error) {
	a := &App{Config: cfg, Logger: logger, Catalog: catalog}
	if a.Catalog == nil {
		var err error
		a.Catalog, err = providers.LoadCatalog(os.Getenv, os.ReadFile)
		if err != nil {
			return nil, fmt.Errorf("load providers: %w", err)
		}
		if a.Catalog.Empty() {
			logger.Warn("no provider is configured; every chat run will fail with unknown_model until OPENAI_BASE_URL and OPENAI_MODELS or PROVIDERS_FILE are set")
		}
	}

	st, err := store.Open(ctx, store.Options{DatabaseURL: cfg.DatabaseURL, SQLitePath: cfg.SQLitePath})
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

	if cfg.TemporalAddress == "" {
		a.Close()
		return nil, errors.New("TEMPORAL_ADDRESS is not set; `aihigress dev` starts a dev server, other commands need one")
	}
	a.Temporal, err = client.DialContext(ctx, client.Options{
		HostPort:  cfg.TemporalAddress,
		Namespace: cfg.TemporalNamespace,
		Logger:    tlog.NewStructuredLogger(logger.With("component", "temporal")),
	})
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("connect to Temporal at %s: %w", cfg.TemporalAddress, err)
	}

	a.Upstream = providers.NewClient(providers.ClientOptions{})
	a.Router = router.New(a.Catalog)
	return a, nil
}

// Close releases every connection.
func (a *App) Close() {
	if a.Temporal != nil {
		a.Temporal.Close()
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
	keys, err := apikeys.NewService(a.Store, cfg.MasterKey)
	if err != nil {
		return nil, err
	}
	return &api.Server{
		Store:    a.Store,
		Temporal: a.Temporal,
		Issuer:   auth.NewIssuer(cfg.JWTSecret, cfg.AccessTTL, cfg.RefreshTTL, time.Now),
		Catalog:  a.Catalog,
		APIKeys:  keys,
		Router:   a.Router,
		Upstream: a.Upstream,
		Follower: &events.Follower{Store: a.Store, Hub: hub, Logger: a.Logger, Heartbeat: cfg.SSEHeartbeat, Poll: 5 * time.Second},
		Limits: api.Limits{
			MaxBodyBytes:        1 << 20,
			MaxContentChars:     cfg.MaxContentChars,
			SyncWaitTimeout:     cfg.SyncWaitTimeout,
			UpstreamMaxAttempts: cfg.UpstreamMaxAttempts,
		},
		Logger:       a.Logger,
		Metrics:      api.NewMetrics(),
		MetricsToken: cfg.MetricsToken,
	}, nil
}

// ChatWorker builds the chat task queue worker.
func (a *App) ChatWorker() sdkworker.Worker {
	chat := &activities.Chat{
		Store:   a.Store,
		Bus:     a.Bus,
		Catalog: a.Catalog,
		Client:  a.Upstream,
		Limits: activities.ChatLimits{
			HistoryMaxMessages: a.Config.HistoryMaxMessages,
			HistoryMaxChars:    a.Config.HistoryMaxChars,
			DeltaMergeWindow:   a.Config.DeltaMergeWindow,
		},
		Logger: a.Logger,
	}
	return worker.NewChatWorker(a.Temporal, chat, worker.Options{})
}

// Serve runs the HTTP API on cfg.HTTPAddr until ctx ends, then shuts down
// gracefully.
func (a *App) Serve(ctx context.Context) error {
	hub := events.NewHub(ctx, a.Bus, a.Logger)
	apiServer, err := a.APIServer(hub)
	if err != nil {
		return err
	}
	requestLog := requestlog.New(a.Store.DB, requestlog.Options{FlushInterval: a.Config.RequestLogFlushInterval, Logger: a.Logger})
	requestLog.Start()
	apiServer.RequestLog = requestLog
	// Deferred so that it also runs when the listener fails; on a normal
	// stop it runs after Shutdown, when no handler records rows any more.
	defer a.closeRequestLog(requestLog)

	srv := &http.Server{
		Addr:              a.Config.HTTPAddr,
		Handler:           apiServer.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	a.Logger.Info("HTTP API listening", "addr", a.Config.HTTPAddr)

	select {
	case err := <-errc:
		return fmt.Errorf("HTTP server: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a.Logger.Info("HTTP API shutting down")
	if err := srv.Shutdown(shutdownCtx); err != nil {
		// Open SSE streams do not end on their own; clients reconnect with
		// Last-Event-ID and lose nothing.
		_ = srv.Close()
	}
	return nil
}

// closeRequestLog writes the queued request log rows before the process
// exits, waiting at most 10 seconds.
func (a *App) closeRequestLog(requestLog *requestlog.Writer) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := requestLog.Close(ctx); err != nil {
		a.Logger.Error("flush request log on shutdown failed; queued rows are lost", "error", err)
		return
	}
	a.Logger.Info("request log flushed", "rows_written", requestLog.Written(), "rows_dropped", requestLog.Dropped())
}

// RunWorker runs the chat worker until ctx ends.
func (a *App) RunWorker(ctx context.Context) error {
	w := a.ChatWorker()
	if err := w.Start(); err != nil {
		return fmt.Errorf("start chat worker: %w", err)
	}
	a.Logger.Info("chat worker started", "task_queue", "aihigress-chat")
	<-ctx.Done()
	w.Stop()
	a.Logger.Info("chat worker stopped")
	return nil
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
