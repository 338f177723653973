package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver for creating the benchmark database
	"github.com/redis/go-redis/v9"

	"github.com/aihigress/aihigress/api"
	"github.com/aihigress/aihigress/bench/internal/benchstack"
	"github.com/aihigress/aihigress/internal/apikeys"
	"github.com/aihigress/aihigress/internal/auth"
	"github.com/aihigress/aihigress/internal/devenv"
	"github.com/aihigress/aihigress/internal/events"
	"github.com/aihigress/aihigress/internal/metrics"
	"github.com/aihigress/aihigress/internal/mockupstream"
	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/ratelimit"
	"github.com/aihigress/aihigress/internal/requestlog"
	"github.com/aihigress/aihigress/internal/router"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/models"
)

// benchModel is the logical model and the upstream model of the benchmark.
const benchModel = "mock-gpt"

// stack is the three targets of the benchmark, all in this process and on
// loopback: the mock upstream, a bare reverse proxy in front of it, and the
// gateway in front of it.
type stack struct {
	settings settings
	logger   *slog.Logger

	mock       *mockupstream.Server
	proxyURL   string
	gatewayURL string
	apiKey     string
	requestLog *requestlog.Writer
	backends   []string

	// With -metrics compare, the gateway with metrics, its recorder, and
	// the gateway without metrics.
	metricsOnURL  string
	recorder      *metrics.Recorder
	metricsOffURL string

	closers []func()
}

func (s *stack) onClose(step string, run func() error) {
	s.closers = append(s.closers, func() {
		if err := run(); err != nil {
			s.logger.Warn("cleanup step failed", "step", step, "error", err)
		}
	})
}

// requestLogFlushInterval is how often the gateway's request log writer
// inserts the rows it has queued.
const requestLogFlushInterval = time.Second

// settleRequestLog waits until the request log writer's count of written
// and dropped rows stays the same over one flush interval, or ctx ends, so
// that the report counts the rows of a window that the gateway served to
// the end. It gives up after ten flush intervals.
func (s *stack) settleRequestLog(ctx context.Context) {
	previous := int64(-1)
	for range 10 {
		count := s.requestLog.Written() + s.requestLog.Dropped()
		if count == previous {
			return
		}
		previous = count

		select {
		case <-ctx.Done():
			return
		case <-time.After(requestLogFlushInterval + 100*time.Millisecond):
		}
	}
}

// close undoes start in reverse order.
func (s *stack) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

func (s *stack) start(ctx context.Context) error {
	mock, err := mockupstream.Start("127.0.0.1:0", mockupstream.Options{TimeToFirstToken: s.settings.upstreamLatency})
	if err != nil {
		return err
	}
	s.mock = mock
	s.onClose("stop mock upstream", mock.Close)

	if err := s.startProxy(); err != nil {
		return err
	}
	return s.startGateway(ctx)
}

// startProxy serves a bare httputil.ReverseProxy in front of the mock, with
// a transport tuned like the gateway's upstream client.
func (s *stack) startProxy() error {
	target, err := url.Parse(s.mock.URL())
	if err != nil {
		return err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = 1024
	transport.MaxIdleConnsPerHost = 256

	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			// Passing the inbound body on as it is made about 1% of the
			// streamed responses end early with "use of closed network
			// connection" (Go 1.26.8), so the proxy reads it first, as the
			// gateway does.
			body, err := io.ReadAll(r.In.Body)
			if err != nil {
				body = nil
			}
			r.Out.Body = io.NopCloser(bytes.NewReader(body))
			r.Out.ContentLength = int64(len(body))
		},
		Transport: transport,
		// Flush every write at once, as the gateway does for streams.
		FlushInterval: -1,
	}

	proxyListener, err := serve(proxy, s.logger)
	if err != nil {
		return err
	}
	s.proxyURL = proxyListener.address
	s.onClose("stop reverse proxy", proxyListener.close)
	s.onClose("close proxy connections", func() error { transport.CloseIdleConnections(); return nil })
	return nil
}

// startGateway builds api.Server as internal/app does, over a fresh
// database and Redis, with the mock as the only provider.
func (s *stack) startGateway(ctx context.Context) error {
	st, err := s.openStore(ctx)
	if err != nil {
		return err
	}
	s.onClose("close database", st.Close)
	if _, err := st.Migrate(ctx); err != nil {
		return err
	}

	rdb, prefix, err := s.connectRedis(ctx)
	if err != nil {
		return err
	}

	catalog := providers.NewCatalog()
	provider := providers.Provider{
		ID: "mock", Name: "Mock", Kind: "openai", BaseURL: s.mock.URL() + "/v1",
		// Clients of the gateway cannot set mock headers, so the provider
		// sends the token count that the direct and proxy requests send.
		Headers: map[string]string{"X-Mock-Tokens": fmt.Sprint(s.settings.tokens)},
	}
	model := providers.LogicalModel{Name: benchModel, Candidates: []providers.Candidate{{Model: benchModel}}}
	if err := catalog.AddProvider(provider, model); err != nil {
		return err
	}

	keys, err := apikeys.NewService(st, "gatewaybench-master-key-"+benchstack.RandomHex(16), apikeys.Options{Redis: rdb, RedisPrefix: prefix, Logger: s.logger})
	if err != nil {
		return err
	}
	rt := router.New(catalog, rdb, prefix, router.Options{Logger: s.logger})
	// The API key service and the router run their cache and cooldown
	// followers as `aihigress serve` does.
	backgroundCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	var background sync.WaitGroup
	background.Go(func() { keys.Run(backgroundCtx) })
	background.Go(func() { _ = rt.Run(backgroundCtx) })
	s.onClose("stop key service and router", func() error {
		stopBackground()
		background.Wait()
		return nil
	})
	user := &models.User{Username: "bench_" + benchstack.RandomHex(4), PasswordHash: "-", IsActive: true}
	user.Email = user.Username + "@example.com"
	if err := st.CreateUser(ctx, user); err != nil {
		return err
	}
	s.apiKey, _, err = keys.Create(ctx, user.ID, apikeys.NewKey{Name: "gatewaybench"})
	if err != nil {
		return err
	}

	upstream := providers.NewClient(providers.ClientOptions{})
	s.onClose("close upstream connections", func() error { upstream.CloseIdleConnections(); return nil })
	s.requestLog = requestlog.New(st.DB, requestlog.Options{FlushInterval: requestLogFlushInterval, Logger: s.logger})
	s.requestLog.Start()
	s.onClose("flush request log", func() error {
		closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return s.requestLog.Close(closeCtx)
	})

	bus := events.NewBus(rdb, prefix)
	hubCtx, stopHub := context.WithCancel(ctx)
	s.onClose("stop event hub", func() error { stopHub(); return nil })
	follower := &events.Follower{Store: st, Hub: events.NewHub(hubCtx, bus, s.logger), Logger: s.logger, Heartbeat: 15 * time.Second, Poll: 5 * time.Second}

	var apiKeyLimit *ratelimit.Rule
	if s.settings.rateLimit {
		apiKeyLimit, err = ratelimit.New(rdb, ratelimit.Options{Prefix: prefix}).NewRule("api_key", 1_000_000_000, time.Minute)
		if err != nil {
			return err
		}
		// As internal/app does for the API key rule, whose default limit
		// of 6000 per minute gives batches of up to 60.
		apiKeyLimit.EnableLeases(60, time.Second)
	}

	// newServer returns a gateway without metrics. The servers that it
	// returns share the database, Redis, the router and the request log,
	// as several `aihigress serve` processes would.
	issuer := auth.NewIssuer("gatewaybench-jwt-secret-"+benchstack.RandomHex(16), time.Hour, time.Hour, time.Now)
	newServer := func() *api.Server {
		server := &api.Server{
			Store:    st,
			Issuer:   issuer,
			Catalog:  catalog,
			APIKeys:  keys,
			Router:   rt,
			Upstream: upstream,
			Follower: follower,
			Limits: api.Limits{
				MaxBodyBytes: 1 << 20, MaxContentChars: 32000, SyncWaitTimeout: time.Minute, UpstreamMaxAttempts: 4,
			},
			Logger:     s.logger,
			RequestLog: s.requestLog,
		}
		server.Guards.RateLimits.APIKey = apiKeyLimit
		return server
	}

	if s.settings.compareMetrics() {
		return s.serveMetricsGateways(st, newServer)
	}
	server := newServer()
	server.Metrics = api.NewMetrics()
	gateway, err := serve(server.Handler(), s.logger)
	if err != nil {
		return err
	}
	s.gatewayURL = gateway.address
	s.onClose("stop gateway", gateway.close)
	return nil
}

// serveMetricsGateways serves two gateways for -metrics compare: one with
// metrics as `aihigress serve` builds them (the API's Prometheus
// collectors on the recorder's registry, provider buckets flushed every
// -flush-interval) and one as METRICS_ENABLED=off leaves it, without any.
func (s *stack) serveMetricsGateways(st *store.Store, newServer func() *api.Server) error {
	recorder := metrics.New(metrics.Options{
		DB:         st.DB,
		Aggregator: metrics.AggregatorOptions{FlushInterval: s.settings.flushInterval},
		Logger:     s.logger,
	})
	recorder.Start()
	s.recorder = recorder
	s.onClose("flush provider metrics", func() error {
		closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return recorder.Close(closeCtx)
	})

	on := newServer()
	on.Metrics = api.NewMetricsOn(recorder.Registry())
	on.Recorder = recorder
	onListener, err := serve(on.Handler(), s.logger)
	if err != nil {
		return err
	}
	s.metricsOnURL = onListener.address
	s.onClose("stop gateway with metrics", onListener.close)

	offListener, err := serve(newServer().Handler(), s.logger)
	if err != nil {
		return err
	}
	s.metricsOffURL = offListener.address
	s.onClose("stop gateway without metrics", offListener.close)
	return nil
}

// openStore creates a fresh PostgreSQL database, dropped by close, or a
// SQLite file in a temporary folder.
func (s *stack) openStore(ctx context.Context) (*store.Store, error) {
	if s.settings.sqlite {
		dir, err := os.MkdirTemp("", "gatewaybench-")
		if err != nil {
			return nil, err
		}
		s.onClose("remove "+dir, func() error { return os.RemoveAll(dir) })
		s.backends = append(s.backends, "SQLite (WAL) in a temporary file")
		return store.Open(ctx, store.Options{SQLitePath: filepath.Join(dir, "bench.db")})
	}

	admin, err := sql.Open("pgx", s.settings.databaseURL)
	if err != nil {
		return nil, fmt.Errorf("open -database-url: %w", err)
	}
	defer admin.Close()
	var version string
	if err := admin.QueryRowContext(ctx, "SHOW server_version").Scan(&version); err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL at -database-url: %w", err)
	}
	name := "aih_gwbench_" + benchstack.RandomHex(6)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return nil, fmt.Errorf("create database %s: %w", name, err)
	}
	s.onClose("drop database "+name, func() error { return benchstack.DropDatabase(s.settings.databaseURL, name) })

	u, err := url.Parse(s.settings.databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse -database-url: %w", err)
	}
	u.Path = "/" + name
	s.backends = append(s.backends, "PostgreSQL "+strings.Fields(version)[0]+" on "+u.Host)
	return store.Open(ctx, store.Options{DatabaseURL: u.String()})
}

// connectRedis connects to -redis-url or an embedded server and picks a key
// prefix; close deletes its keys.
func (s *stack) connectRedis(ctx context.Context) (*redis.Client, string, error) {
	redisURL := s.settings.redisURL
	if s.settings.embeddedRedis {
		srv, embeddedURL, err := devenv.StartRedis()
		if err != nil {
			return nil, "", err
		}
		s.onClose("stop embedded Redis", func() error { srv.Close(); return nil })
		redisURL = embeddedURL
	}
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return nil, "", fmt.Errorf("invalid -redis-url: %w", err)
	}
	rdb := redis.NewClient(opts)
	s.onClose("close Redis client", rdb.Close)
	if err := rdb.Ping(ctx).Err(); err != nil {
		return nil, "", fmt.Errorf("connect to Redis at %s: %w", opts.Addr, err)
	}

	prefix := "aihgwbench:" + benchstack.RandomHex(6) + ":"
	s.onClose("delete Redis keys "+prefix+"*", func() error { return benchstack.DeleteKeys(rdb, prefix) })
	if s.settings.embeddedRedis {
		s.backends = append(s.backends, "embedded Redis-protocol server (miniredis) in the benchmark process")
	} else {
		s.backends = append(s.backends, "Redis on "+opts.Addr)
	}
	return rdb, prefix, nil
}

// listener is an HTTP server on a free loopback port.
type listener struct {
	address string
	close   func() error
}

// serve serves handler on a free loopback port with the server settings of
// `aihigress serve`.
func serve(handler http.Handler, logger *slog.Logger) (listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return listener{}, err
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("benchmark server stopped", "addr", ln.Addr().String(), "error", err)
		}
	}()
	return listener{address: "http://" + ln.Addr().String(), close: srv.Close}, nil
}
