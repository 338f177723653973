package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver for creating the benchmark database
	"github.com/redis/go-redis/v9"
	"go.temporal.io/sdk/testsuite"

	"github.com/aihigress/aihigress/bench/internal/benchstack"
	"github.com/aihigress/aihigress/internal/devenv"
	"github.com/aihigress/aihigress/internal/mockupstream"
)

// stackOptions selects the backends that the service runs on.
type stackOptions struct {
	repoRoot         string
	temporalCLI      string
	adminDatabaseURL string // empty selects SQLite
	redisURL         string // empty starts an embedded Redis-protocol server
	tokensPerSecond  float64
	keepTemp         bool
	logger           *slog.Logger
}

// stack is the service under test: the `serve` and `worker` processes and
// everything they connect to.
type stack struct {
	opts stackOptions

	tempDir     string
	binary      string
	databaseURL string
	sqlitePath  string
	redisURL    string
	redisPrefix string
	redis       *redis.Client

	temporal    *testsuite.DevServer
	temporalPID int
	mock        *mockupstream.Server
	serve       *benchstack.Child
	worker      *benchstack.Child
	apiAddr     string
	apiURL      string

	// secrets are the JWT secret, master key and admin password of the
	// service, fixed at start so that a restart keeps tokens and stored
	// keys valid.
	secrets []string
	// payloadKey, when set, is the service's TEMPORAL_PAYLOAD_KEY.
	payloadKey string
	// serviceStarts counts the starts of the service, to give the logs of
	// each start their own files.
	serviceStarts int

	// backends describes each backend and its version for the report.
	backends []string

	cleanups []cleanup
}

type cleanup struct {
	step string
	run  func() error
}

func newStack(opts stackOptions) *stack {
	return &stack{opts: opts}
}

func (s *stack) onClose(step string, run func() error) {
	s.cleanups = append(s.cleanups, cleanup{step: step, run: run})
}

// close undoes every step of start that succeeded, in reverse order, and
// logs the steps that fail.
func (s *stack) close() {
	for i := len(s.cleanups) - 1; i >= 0; i-- {
		c := s.cleanups[i]
		if err := c.run(); err != nil {
			s.opts.logger.Warn("cleanup failed", "step", c.step, "error", err)
		}
	}
	s.cleanups = nil
}

// start brings the stack up. The caller must call close even when start
// fails.
func (s *stack) start(ctx context.Context) error {
	logger := s.opts.logger

	tempDir, err := os.MkdirTemp("", "chatbench-")
	if err != nil {
		return fmt.Errorf("create temporary folder: %w", err)
	}
	s.tempDir = tempDir
	if s.opts.keepTemp {
		logger.Info("keeping the temporary folder", "path", tempDir)
	} else {
		s.onClose("remove "+tempDir, func() error { return os.RemoveAll(tempDir) })
	}

	logger.Info("building aihigress", "output", filepath.Join(tempDir, "aihigress"))
	if err := s.build(ctx); err != nil {
		return err
	}

	if err := s.startDatabase(ctx); err != nil {
		return err
	}
	if err := s.startRedis(ctx); err != nil {
		return err
	}
	if err := s.startTemporal(ctx); err != nil {
		return err
	}

	mock, err := mockupstream.Start("", mockupstream.Options{TimeToFirstToken: 0, TokensPerSecond: s.opts.tokensPerSecond})
	if err != nil {
		return fmt.Errorf("start mock upstream: %w", err)
	}
	s.mock = mock
	s.onClose("stop mock upstream", mock.Close)

	return s.startService(ctx)
}

func (s *stack) build(ctx context.Context) error {
	s.binary = filepath.Join(s.tempDir, "aihigress")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", s.binary, "./cmd/aihigress")
	cmd.Dir = s.opts.repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/aihigress: %w\n%s", err, out)
	}
	return nil
}

// startDatabase creates a fresh PostgreSQL database, dropped by close, or
// picks a SQLite file in the temporary folder.
func (s *stack) startDatabase(ctx context.Context) error {
	if s.opts.adminDatabaseURL == "" {
		s.sqlitePath = filepath.Join(s.tempDir, "aihigress.db")
		s.backends = append(s.backends, "SQLite (WAL) in a temporary file")
		return nil
	}

	admin, err := sql.Open("pgx", s.opts.adminDatabaseURL)
	if err != nil {
		return fmt.Errorf("open -database-url: %w", err)
	}
	defer admin.Close()

	var version string
	if err := admin.QueryRowContext(ctx, "SHOW server_version").Scan(&version); err != nil {
		return fmt.Errorf("connect to PostgreSQL at -database-url: %w", err)
	}
	name := "aih_bench_" + benchstack.RandomHex(6)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	s.onClose("drop database "+name, func() error { return benchstack.DropDatabase(s.opts.adminDatabaseURL, name) })

	u, err := url.Parse(s.opts.adminDatabaseURL)
	if err != nil {
		return fmt.Errorf("parse -database-url: %w", err)
	}
	u.Path = "/" + name
	s.databaseURL = u.String()
	s.backends = append(s.backends, "PostgreSQL "+strings.Fields(version)[0]+" on "+u.Host)
	return nil
}

// startRedis connects to the Redis at -redis-url, or starts an embedded
// server, and picks a key prefix that close deletes.
func (s *stack) startRedis(ctx context.Context) error {
	s.redisURL = s.opts.redisURL
	if s.redisURL == "" {
		srv, redisURL, err := devenv.StartRedis()
		if err != nil {
			return err
		}
		s.onClose("stop embedded Redis", func() error { srv.Close(); return nil })
		s.redisURL = redisURL
		s.backends = append(s.backends, "embedded Redis-protocol server (miniredis) in the benchmark process")
	}

	opts, err := redis.ParseURL(s.redisURL)
	if err != nil {
		return fmt.Errorf("invalid -redis-url: %w", err)
	}
	opts.PoolSize = 64
	s.redis = redis.NewClient(opts)
	s.onClose("close Redis client", s.redis.Close)
	if err := s.redis.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("connect to Redis at %s: %w", opts.Addr, err)
	}

	s.redisPrefix = "aihbench:" + benchstack.RandomHex(6) + ":"
	s.onClose("delete Redis keys "+s.redisPrefix+"*", func() error { return benchstack.DeleteKeys(s.redis, s.redisPrefix) })
	if s.opts.redisURL != "" {
		s.backends = append(s.backends, "Redis "+benchstack.RedisVersion(ctx, s.redis)+" on "+opts.Addr)
	}
	return nil
}

func (s *stack) startTemporal(ctx context.Context) error {
	logPath := filepath.Join(s.tempDir, "temporal.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("create Temporal log file: %w", err)
	}
	s.onClose("close Temporal log", logFile.Close)

	s.opts.logger.Info("starting the Temporal dev server", "cli", s.opts.temporalCLI, "log", logPath)
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	srv, err := devenv.StartTemporal(startCtx, devenv.TemporalOptions{
		CLIPath:   s.opts.temporalCLI,
		Namespace: "default",
		Output:    logFile,
	})
	if err != nil {
		return err
	}
	s.temporal = srv

	pid, err := benchstack.FindChildByExe(os.Getpid(), s.opts.temporalCLI)
	if err != nil {
		// Without the pid the server cannot be killed if Stop hangs, so it
		// is stopped without a time limit.
		s.onClose("stop Temporal dev server", srv.Stop)
		return fmt.Errorf("find the Temporal dev server process: %w", err)
	}
	s.temporalPID = pid
	s.onClose("stop Temporal dev server", func() error { return benchstack.StopDevServer(srv, pid) })

	s.backends = append(s.backends, benchstack.TemporalVersion(ctx, s.opts.temporalCLI)+" dev server with an in-memory database")
	return nil
}

// startService picks the API address and the secrets of the service and
// runs it.
func (s *stack) startService(ctx context.Context) error {
	addr, err := benchstack.FreeLoopbackAddr()
	if err != nil {
		return err
	}
	s.apiAddr, s.apiURL = addr, "http://"+addr
	s.secrets = []string{"JWT_SECRET=" + benchstack.RandomHex(32), "MASTER_KEY=" + benchstack.RandomHex(32), "ADMIN_PASSWORD=" + benchstack.RandomHex(12)}
	return s.runService(ctx)
}

// restartService stops `serve` and `worker` and starts them again on the
// same address, database and Temporal server, with payloadKey as
// TEMPORAL_PAYLOAD_KEY (none when empty). Runs still open when it is called
// fail.
func (s *stack) restartService(ctx context.Context, payloadKey string) error {
	for _, c := range []*benchstack.Child{s.worker, s.serve} {
		if err := c.Stop(); err != nil {
			return err
		}
	}
	s.payloadKey = payloadKey
	return s.runService(ctx)
}

// runService runs `serve` first, because both processes migrate the
// database on start and the migrations take no lock, then `worker`.
func (s *stack) runService(ctx context.Context) error {
	env := s.serviceEnv(s.apiAddr)
	s.serviceStarts++
	suffix := ""
	if s.serviceStarts > 1 {
		suffix = fmt.Sprintf("-%d", s.serviceStarts)
	}

	readyCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	serve, err := benchstack.StartChild("serve"+suffix, s.binary, []string{"serve"}, env, s.tempDir, "HTTP API listening")
	if err != nil {
		return err
	}
	s.serve = serve
	s.onClose("stop serve", serve.Stop)
	if err := serve.WaitReady(readyCtx); err != nil {
		return err
	}
	if err := benchstack.WaitHealthy(readyCtx, s.apiURL+"/healthz"); err != nil {
		return fmt.Errorf("%w; see %s", err, serve.LogPath)
	}

	worker, err := benchstack.StartChild("worker"+suffix, s.binary, []string{"worker"}, env, s.tempDir, "workers started")
	if err != nil {
		return err
	}
	s.worker = worker
	s.onClose("stop worker", worker.Stop)
	if err := worker.WaitReady(readyCtx); err != nil {
		return err
	}
	s.opts.logger.Info("service is up", "api", s.apiURL, "serve_pid", serve.PID(), "worker_pid", worker.PID(), "logs", s.tempDir)
	return nil
}

// serviceEnv is the environment of both processes. It passes on only the
// variables that tune the Go runtime or logging, so that a configuration in
// the caller's environment cannot change what is measured.
func (s *stack) serviceEnv(httpAddr string) []string {
	env := []string{
		"HTTP_ADDR=" + httpAddr,
		"DATABASE_URL=" + s.databaseURL,
		"SQLITE_PATH=" + s.sqlitePath,
		"REDIS_URL=" + s.redisURL,
		"REDIS_PREFIX=" + s.redisPrefix,
		"TEMPORAL_ADDRESS=" + s.temporal.FrontendHostPort(),
		"TEMPORAL_NAMESPACE=default",
		"OPENAI_BASE_URL=" + s.mock.URL() + "/v1",
		"OPENAI_API_KEY=x",
		"OPENAI_MODELS=" + benchModel,
		// One user drives the whole load. The limiter still runs, so its
		// cost is part of the measurement, but it never rejects.
		"RATE_LIMIT_USER=100000000/1m",
		"RATE_LIMIT_API_KEY=100000000/1m",
		// The worker's default metrics port is fixed, so two benchmarks on
		// one machine would clash on it, and the benchmark reads no worker
		// metrics.
		"WORKER_METRICS_ADDR=off",
		// No maintenance job, such as the provider probes, runs beside
		// the measured requests.
		"MAINTENANCE_SCHEDULES=off",
	}
	env = append(env, s.secrets...)
	if s.payloadKey != "" {
		env = append(env, "TEMPORAL_PAYLOAD_KEY="+s.payloadKey)
	}
	for _, name := range []string{"PATH", "HOME", "TMPDIR", "GOMAXPROCS", "GOGC", "GOMEMLIMIT", "GODEBUG", "LOG_LEVEL", "LOG_FORMAT"} {
		if value, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+value)
		}
	}
	return env
}
