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
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/aihigress/aihigress/internal/config"
)

const usage = `usage: aihigress <command> [flags]

commands:
  serve          run the HTTP API
  worker         run the Temporal worker
  dev            run the API and the worker in one process, starting an
                 embedded Redis, a Temporal dev server and the mock upstream
                 when REDIS_URL, TEMPORAL_ADDRESS and providers are unset
  migrate        apply the database migrations and exit
  mock-upstream  run the mock OpenAI-compatible upstream

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

func warnGeneratedSecrets(cfg config.Config, logger *slog.Logger) {
	for _, name := range cfg.GeneratedSecrets {
		logger.Warn(name+" is not set; using a random value that changes on every start", "variable", name)
	}
}
