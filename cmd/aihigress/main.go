// Command aihigress is the AI Higress service: an AI gateway and chat backend
// whose chat runs are Temporal workflows.
//
// Usage:
//
//	aihigress serve          run the HTTP API
//	aihigress worker         run the Temporal worker
//	aihigress dev            run both, with an embedded Redis, a Temporal dev
//	                         server and the mock upstream when unconfigured
//	aihigress migrate        apply the database migrations
//	aihigress mock-upstream  run the mock OpenAI-compatible upstream
//	aihigress runs search    list runs through Temporal's visibility API
//	aihigress replay         replay workflow histories against this binary
//	aihigress healthcheck    check a health URL or this host's worker
//	aihigress codec-server   serve /encode and /decode of Temporal payloads
//	                         for the Temporal Web UI and CLI
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/aihigress/aihigress/internal/config"
	"github.com/aihigress/aihigress/internal/devenv"
)

const usage = `usage: aihigress <command> [flags]

commands:
  serve          run the HTTP API
  worker         run the Temporal workers of the task queues in
                 WORKER_TASK_QUEUES (default: chat, image and maintenance)
  dev            run the API and the worker in one process, starting an
                 embedded Redis, a Temporal dev server and the mock upstream
                 when REDIS_URL, TEMPORAL_ADDRESS and providers are unset
  migrate        apply the database migrations and exit
  mock-upstream  run the mock OpenAI-compatible upstream
  runs search    list runs by status, kind, user, model or provider, with
                 links to the Temporal Web UI
  replay         replay workflow histories from the cluster or a file
                 against this binary's workflow code
  healthcheck    check a health URL, or with -worker this host's worker;
                 exits 1 when the check fails
  codec-server   serve /encode and /decode of Temporal payloads for the
                 Temporal Web UI and CLI; needs TEMPORAL_PAYLOAD_KEY and
                 CODEC_SERVER_TOKEN

Configuration comes from environment variables; see .env.example.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logger := newLogger(os.Getenv("LOG_FORMAT"), os.Getenv("LOG_LEVEL"))
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		logger.Error("configuration rejected", "error", err)
		os.Exit(2)
	}

	command, args := os.Args[1], os.Args[2:]
	switch command {
	case "serve":
		err = runServe(ctx, cfg, logger)
	case "worker":
		err = runWorker(ctx, cfg, logger)
	case "dev":
		err = runDev(ctx, cfg, logger)
	case "migrate":
		err = runMigrate(ctx, cfg, logger)
	case "mock-upstream":
		err = runMockUpstream(ctx, args, logger)
	case "runs":
		err = runRuns(ctx, cfg, args, os.Stdout, logger)
	case "replay":
		err = runReplay(ctx, cfg, args, os.Stdout, logger)
	case "healthcheck":
		err = runHealthcheck(ctx, cfg, args, logger)
	case "codec-server":
		err = runCodecServer(ctx, cfg, logger)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n\n%s", command, usage)
		os.Exit(2)
	}
	if err != nil {
		logger.Error(command+" failed", "error", err)
		os.Exit(1)
	}
}

func newLogger(format, level string) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(strings.ToUpper(level))); err != nil || level == "" {
		lvl = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// requireSecrets rejects a configuration whose secrets Load generated:
// every API and worker process must share the same MASTER_KEY and
// JWT_SECRET, and keep them across restarts.
func requireSecrets(cfg config.Config) error {
	if len(cfg.GeneratedSecrets) == 0 {
		return nil
	}
	return fmt.Errorf("missing %s: every serve and worker process needs the same values; generate each with `openssl rand -hex 32` (`aihigress dev` creates them for you)",
		strings.Join(cfg.GeneratedSecrets, " and "))
}

// useDevSecrets replaces the secrets that Load generated with values kept
// in the data folder, so that a restarted dev server accepts the API keys
// and decrypts the provider keys that it stored before.
func useDevSecrets(cfg *config.Config, logger *slog.Logger) error {
	if len(cfg.GeneratedSecrets) == 0 {
		return nil
	}
	path := devSecretsPath(*cfg)
	values, err := devenv.DevSecrets(path, cfg.GeneratedSecrets, func() string { return config.RandomToken(32) })
	if err != nil {
		return err
	}
	for _, name := range cfg.GeneratedSecrets {
		switch name {
		case "JWT_SECRET":
			cfg.JWTSecret = values[name]
		case "MASTER_KEY":
			cfg.MasterKey = values[name]
		}
		logger.Info(name+" is not set; using the development value stored in "+path, "variable", name)
	}
	cfg.GeneratedSecrets = nil
	return nil
}

// devSecretsPath is the file in the data folder that keeps the secrets
// `dev` generated.
func devSecretsPath(cfg config.Config) string {
	return filepath.Join(filepath.Dir(cfg.TemporalDBPath), "dev-secrets.json")
}
