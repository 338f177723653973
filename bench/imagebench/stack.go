package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver for creating the benchmark databases
	"github.com/redis/go-redis/v9"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"

	"github.com/aihigress/aihigress/bench/internal/benchstack"
	"github.com/aihigress/aihigress/internal/devenv"
)

// Logical models of the providers file. Each has its own provider entry,
// whose headers set the PNG size that the mock generates.
const (
	latencyModel = "bench-image-latency"
	memoryModel  = "bench-image-memory"
)

// cleanups undoes setup steps in reverse order.
type cleanups struct {
	logger *slog.Logger
	steps  []cleanup
}

type cleanup struct {
	step string
	run  func() error
}

func (c *cleanups) add(step string, run func() error) {
	c.steps = append(c.steps, cleanup{step: step, run: run})
}

// runAll runs every step, the last added first, and logs the steps that fail.
func (c *cleanups) runAll() {
	for i := len(c.steps) - 1; i >= 0; i-- {
		step := c.steps[i]
		if err := step.run(); err != nil {
			c.logger.Warn("cleanup failed", "step", step.step, "error", err)
		}
	}
	c.steps = nil
}

// shared is the binary, the mock upstream, the providers file and the Redis
// server that every service stack uses.
type shared struct {
	settings settings
	logger   *slog.Logger
	*cleanups

	repoRoot      string
	tempDir       string
	binary        string
	mock          *mockServer
	providersFile string
	redisURL      string
	redis         *redis.Client

	// backends describes each backend and its version for the report.
	backends []string
}

// start builds the binary and starts the mock upstream. The caller must run
// the cleanups even when start fails.
func (s *shared) start(ctx context.Context) error {
	tempDir, err := os.MkdirTemp("", "imagebench-")
	if err != nil {
		return fmt.Errorf("create temporary folder: %w", err)
	}
	s.tempDir = tempDir
	if s.settings.keepTemp {
		s.logger.Info("keeping the temporary folder", "path", tempDir)
	} else {
		s.add("remove "+tempDir, func() error { return os.RemoveAll(tempDir) })
	}

	s.binary = filepath.Join(tempDir, "aihigress")
	s.logger.Info("building aihigress", "output", s.binary)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", s.binary, "./cmd/aihigress")
	cmd.Dir = s.repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/aihigress: %w\n%s", err, out)
	}

	s.mock, err = startMock(s.settings.latency, s.logger)
	if err != nil {
		return err
	}
	s.add("stop mock upstream", s.mock.close)
	if err := s.writeProvidersFile(); err != nil {
		return err
	}
	return s.startRedis(ctx)
}

// writeProvidersFile writes the catalog of both stacks: one provider per
// logical model, pointing at the mock, with the mock headers that pick the
// image size.
func (s *shared) writeProvidersFile() error {
	type provider struct {
		ID      string            `json:"id"`
		Kind    string            `json:"kind"`
		BaseURL string            `json:"base_url"`
		APIKey  string            `json:"api_key"`
		Headers map[string]string `json:"headers"`
	}
	type candidate struct {
		ProviderID string `json:"provider_id"`
		Model      string `json:"model"`
	}
	type logicalModel struct {
		Name         string      `json:"name"`
		Capabilities []string    `json:"capabilities"`
		Candidates   []candidate `json:"candidates"`
	}
	newProvider := func(id string, imageBytes int) provider {
		return provider{
			ID: id, Kind: "openai", BaseURL: s.mock.url + "/v1", APIKey: "x",
			Headers: map[string]string{"X-Mock-Image-Bytes": fmt.Sprint(imageBytes)},
		}
	}
	file := struct {
		Providers     []provider     `json:"providers"`
		LogicalModels []logicalModel `json:"logical_models"`
	}{
		Providers: []provider{
			newProvider("mock-latency", s.settings.imageBytes),
			newProvider("mock-memory", s.settings.memoryImageBytes),
		},
		LogicalModels: []logicalModel{
			{Name: latencyModel, Capabilities: []string{"image_generation"}, Candidates: []candidate{{ProviderID: "mock-latency", Model: "mock-image"}}},
			{Name: memoryModel, Capabilities: []string{"image_generation"}, Candidates: []candidate{{ProviderID: "mock-memory", Model: "mock-image"}}},
		},
	}
	raw, err := json.MarshalIndent(file, "", "  ")
	if err != nil {
		return fmt.Errorf("encode providers file: %w", err)
	}
	s.providersFile = filepath.Join(s.tempDir, "providers.json")
	if err := os.WriteFile(s.providersFile, raw, 0o600); err != nil {
		return fmt.Errorf("write providers file: %w", err)
	}
	return nil
}

// startRedis connects to -redis-url or starts an embedded server.
func (s *shared) startRedis(ctx context.Context) error {
	s.redisURL = s.settings.redisURL
	if s.settings.embeddedRedis {
		srv, redisURL, err := devenv.StartRedis()
		if err != nil {
			return err
		}
		s.add("stop embedded Redis", func() error { srv.Close(); return nil })
		s.redisURL = redisURL
		s.backends = append(s.backends, "embedded Redis-protocol server (miniredis) in the benchmark process")
	}
	opts, err := redis.ParseURL(s.redisURL)
	if err != nil {
		return fmt.Errorf("invalid -redis-url: %w", err)
	}
	s.redis = redis.NewClient(opts)
	s.add("close Redis client", s.redis.Close)
	if err := s.redis.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("connect to Redis at %s: %w", opts.Addr, err)
	}
	if !s.settings.embeddedRedis {
		s.backends = append(s.backends, "Redis "+benchstack.RedisVersion(ctx, s.redis)+" on "+opts.Addr)
	}
	return nil
}

// serviceStack is one Temporal dev server with its own `aihigress serve`
// and `aihigress worker` processes, database, Redis key prefix and media
// folder.
type serviceStack struct {
	name string
	// dynamicConfig lists the dev server's dynamic config values as
	// KEY=VALUE, beyond devenv's defaults.
	dynamicConfig []string
	// env lists environment variables of the serve and worker processes
	// as KEY=VALUE, beyond serviceEnv's.
	env []string

	temporal       *testsuite.DevServer
	temporalPID    int
	temporalClient client.Client
	databaseURL    string
	sqlitePath     string
	redisPrefix    string
	mediaDir       string
	serve          *benchstack.Child
	worker         *benchstack.Child
	apiURL         string
	apiKey         string
	backend        string
}

// startStack starts a service stack whose dev server runs with
// dynamicConfig and whose processes get env.
func (s *shared) startStack(ctx context.Context, name string, dynamicConfig, env []string) (*serviceStack, error) {
	st := &serviceStack{name: name, dynamicConfig: dynamicConfig, env: env}
	dir := filepath.Join(s.tempDir, name)
	st.mediaDir = filepath.Join(dir, "media")
	if err := os.MkdirAll(st.mediaDir, 0o755); err != nil {
		return nil, fmt.Errorf("create media folder: %w", err)
	}
	if err := s.createDatabase(ctx, st, dir); err != nil {
		return nil, err
	}
	st.redisPrefix = "aihimgbench:" + benchstack.RandomHex(6) + ":"
	s.add("delete Redis keys "+st.redisPrefix+"*", func() error { return benchstack.DeleteKeys(s.redis, st.redisPrefix) })
	if err := s.startTemporal(ctx, st, dir); err != nil {
		return nil, err
	}
	if err := s.startService(ctx, st, dir); err != nil {
		return nil, err
	}
	apiKey, err := createAPIKey(ctx, st.apiURL)
	if err != nil {
		return nil, fmt.Errorf("%s stack: create API key: %w", name, err)
	}
	st.apiKey = apiKey
	return st, nil
}

// createDatabase creates a fresh PostgreSQL database, dropped at cleanup,
// or picks a SQLite file in dir.
func (s *shared) createDatabase(ctx context.Context, st *serviceStack, dir string) error {
	if s.settings.sqlite {
		st.sqlitePath = filepath.Join(dir, "aihigress.db")
		st.backend = "SQLite (WAL) in a temporary file"
		return nil
	}
	admin, err := sql.Open("pgx", s.settings.databaseURL)
	if err != nil {
		return fmt.Errorf("open -database-url: %w", err)
	}
	defer admin.Close()

	var version string
	if err := admin.QueryRowContext(ctx, "SHOW server_version").Scan(&version); err != nil {
		return fmt.Errorf("connect to PostgreSQL at -database-url: %w", err)
	}
	name := "aih_imgbench_" + benchstack.RandomHex(6)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	s.add("drop database "+name, func() error { return benchstack.DropDatabase(s.settings.databaseURL, name) })

	u, err := url.Parse(s.settings.databaseURL)
	if err != nil {
		return fmt.Errorf("parse -database-url: %w", err)
	}
	u.Path = "/" + name
	st.databaseURL = u.String()
	st.backend = "PostgreSQL " + strings.Fields(version)[0] + " on " + u.Host
	return nil
}

func (s *shared) startTemporal(ctx context.Context, st *serviceStack, dir string) error {
	logFile, err := os.Create(filepath.Join(dir, "temporal.log"))
	if err != nil {
		return fmt.Errorf("create Temporal log file: %w", err)
	}
	s.add("close Temporal log", logFile.Close)

	s.logger.Info("starting a Temporal dev server", "stack", st.name, "dynamic_config", st.dynamicConfig)
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	srv, err := devenv.StartTemporal(startCtx, devenv.TemporalOptions{
		CLIPath:       s.settings.temporalCLI,
		Namespace:     "default",
		DynamicConfig: st.dynamicConfig,
		Output:        logFile,
	})
	if err != nil {
		return err
	}
	st.temporal = srv
	pid, err := benchstack.FindChildByExe(os.Getpid(), s.settings.temporalCLI)
	if err != nil {
		// Without the pid the server cannot be killed if Stop hangs, so it
		// is stopped without a time limit.
		s.add("stop Temporal dev server", srv.Stop)
		return fmt.Errorf("find the Temporal dev server process: %w", err)
	}
	st.temporalPID = pid
	s.add("stop Temporal dev server", func() error { return benchstack.StopDevServer(srv, pid) })

	st.temporalClient, err = client.DialContext(ctx, client.Options{
		HostPort:  srv.FrontendHostPort(),
		Namespace: "default",
		Logger:    quietTemporalLogger(),
	})
	if err != nil {
		return fmt.Errorf("connect to the Temporal dev server: %w", err)
	}
	s.add("close Temporal client", func() error { st.temporalClient.Close(); return nil })
	return nil
}

// startService runs `serve` first, because both processes migrate the
// database on start and the migrations take no lock, then `worker`.
func (s *shared) startService(ctx context.Context, st *serviceStack, dir string) error {
	addr, err := benchstack.FreeLoopbackAddr()
	if err != nil {
		return err
	}
	st.apiURL = "http://" + addr
	env := s.serviceEnv(st, addr)

	readyCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	serve, err := benchstack.StartChild("serve", s.binary, []string{"serve"}, env, dir, "HTTP API listening")
	if err != nil {
		return err
	}
	st.serve = serve
	s.add("stop "+st.name+" serve", serve.Stop)
	if err := serve.WaitReady(readyCtx); err != nil {
		return err
	}
	if err := benchstack.WaitHealthy(readyCtx, st.apiURL+"/healthz"); err != nil {
		return fmt.Errorf("%w; see %s", err, serve.LogPath)
	}

	worker, err := benchstack.StartChild("worker", s.binary, []string{"worker"}, env, dir, "workers started")
	if err != nil {
		return err
	}
	st.worker = worker
	s.add("stop "+st.name+" worker", worker.Stop)
	if err := worker.WaitReady(readyCtx); err != nil {
		return err
	}
	s.logger.Info("service is up", "stack", st.name, "api", st.apiURL, "serve_pid", serve.PID(), "worker_pid", worker.PID(), "logs", dir)
	return nil
}

// serviceEnv is the environment of both processes of a stack. It passes on
// only the variables that tune the Go runtime or logging, so that a
// configuration in the caller's environment cannot change what is measured.
func (s *shared) serviceEnv(st *serviceStack, httpAddr string) []string {
	env := []string{
		"HTTP_ADDR=" + httpAddr,
		"DATABASE_URL=" + st.databaseURL,
		"SQLITE_PATH=" + st.sqlitePath,
		"REDIS_URL=" + s.redisURL,
		"REDIS_PREFIX=" + st.redisPrefix,
		"TEMPORAL_ADDRESS=" + st.temporal.FrontendHostPort(),
		"TEMPORAL_NAMESPACE=default",
		"JWT_SECRET=" + benchstack.RandomHex(32),
		"MASTER_KEY=" + benchstack.RandomHex(32),
		"ADMIN_PASSWORD=" + benchstack.RandomHex(12),
		"PROVIDERS_FILE=" + s.providersFile,
		"IMAGE_LOCAL_DIR=" + st.mediaDir,
		// One user drives the whole load. The limiter still runs, so its
		// cost is part of the measurement, but it never rejects.
		"RATE_LIMIT_USER=100000000/1m",
		"RATE_LIMIT_API_KEY=100000000/1m",
		// No maintenance job, such as the provider probes, runs beside
		// the measured requests.
		"MAINTENANCE_SCHEDULES=off",
		// Both stacks' workers run at once, and the default metrics
		// address would let only one of them listen.
		"WORKER_METRICS_ADDR=off",
	}
	for _, name := range []string{"PATH", "HOME", "TMPDIR", "GOMAXPROCS", "GOGC", "GOMEMLIMIT", "LOG_LEVEL", "LOG_FORMAT"} {
		if value, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+value)
		}
	}
	// gctrace=1 makes the runtime log the heap size at every collection,
	// which the memory phase reads from the worker's log.
	godebug := "gctrace=1"
	if value := os.Getenv("GODEBUG"); value != "" {
		godebug = value + "," + godebug
	}
	// os/exec uses the last value of a repeated variable, so the stack's
	// own variables override the ones above.
	return append(append(env, "GODEBUG="+godebug), st.env...)
}

// createAPIKey registers a user, logs in and creates an API key for it.
func createAPIKey(ctx context.Context, apiURL string) (string, error) {
	name := "bench_" + benchstack.RandomHex(6)
	password := benchstack.RandomHex(12)
	register := map[string]any{"username": name, "email": name + "@example.com", "password": password}
	if err := postJSON(ctx, http.DefaultClient, apiURL+"/auth/register", "", register, http.StatusCreated, nil); err != nil {
		return "", err
	}
	var tokens struct {
		AccessToken string `json:"access_token"`
	}
	login := map[string]any{"username": name, "password": password}
	if err := postJSON(ctx, http.DefaultClient, apiURL+"/auth/login", "", login, http.StatusOK, &tokens); err != nil {
		return "", err
	}
	var key struct {
		Key string `json:"key"`
	}
	if err := postJSON(ctx, http.DefaultClient, apiURL+"/v1/api-keys", tokens.AccessToken, map[string]any{"name": "imagebench"}, http.StatusCreated, &key); err != nil {
		return "", err
	}
	if key.Key == "" {
		return "", errors.New("POST /v1/api-keys returned no key")
	}
	return key.Key, nil
}

// quietTemporalLogger logs only the Temporal client's warnings and errors.
func quietTemporalLogger() tlog.Logger {
	return tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
}
