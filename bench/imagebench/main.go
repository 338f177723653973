// Command imagebench measures what AI Higress adds to an image generation
// and how much memory the service needs while it generates large images.
//
// It builds ./cmd/aihigress, starts the mock upstream and one or two
// Temporal dev servers, runs `aihigress serve` and `aihigress worker` as
// child processes for each dev server and drives them over loopback. The
// latency phase compares POST /v1/images/generations plus the fetch of its
// signed link with calling the mock directly, writing the file and reading
// it back through http.ServeFile. The memory phase generates many large
// images at once and records the peak RSS of both processes. Run it from the
// repository:
//
//	go run ./bench/imagebench [-write docs/benchmarks.md]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/aihigress/aihigress/bench/internal/benchstack"
	"github.com/aihigress/aihigress/internal/benchdoc"
	"github.com/aihigress/aihigress/internal/testenv"
)

// Targets from the product requirements.
const (
	// targetLatencyRatio caps our p50 time beyond the mock's latency as a
	// multiple of the direct path's.
	targetLatencyRatio = 1.5
	// targetMemoryRatio caps the peak RSS growth as a multiple of the bytes
	// of the images in flight.
	targetMemoryRatio = 3.0
)

// exitTargetMissed is the exit status with -check when a target is missed.
const exitTargetMissed = 3

// defaultTunedConfig is the dynamic config of the second dev server, on top
// of the eager activity execution that every dev server of
// devenv.StartTemporal gets. The dev server has one history shard, and its
// transfer queue reads new tasks at most 20 times a second per shard
// (history.transferProcessorMaxPollRPS in Temporal Server 1.29.1). A task
// created less than 50 ms after the previous read may wait up to 50 ms
// before the matching service receives it.
const defaultTunedConfig = "history.transferProcessorMaxPollRPS=1000"

// settings are the command-line flags.
type settings struct {
	rounds      int
	warmup      int
	concurrency int
	latency     time.Duration
	imageBytes  int
	runTimeout  time.Duration
	tunedConfig string
	variantEnv  string

	memoryImages     int
	memoryImageBytes int
	memoryPerRequest int
	memoryFormat     string

	databaseURL   string
	sqlite        bool
	redisURL      string
	embeddedRedis bool
	temporalCLI   string

	writePath string
	keepTemp  bool
	check     bool
}

func parseSettings(args []string) (settings, error) {
	var s settings
	flags := flag.NewFlagSet("imagebench", flag.ContinueOnError)
	flags.IntVar(&s.rounds, "rounds", 100, "latency rounds; each generates one image on every path")
	flags.IntVar(&s.warmup, "warmup", 5, "latency rounds before the counted ones")
	flags.IntVar(&s.concurrency, "concurrency", 1, "clients that run latency rounds at the same time")
	flags.DurationVar(&s.latency, "latency", 200*time.Millisecond, "fixed latency of the mock's image responses, subtracted from every path")
	flags.IntVar(&s.imageBytes, "image-bytes", 1<<20, "PNG size in bytes in the latency phase")
	flags.DurationVar(&s.runTimeout, "run-timeout", 2*time.Minute, "limit for one request and its read back")
	flags.StringVar(&s.tunedConfig, "tuned-config", defaultTunedConfig,
		"comma-separated KEY=VALUE dynamic config of a second Temporal dev server with its own serve and worker; empty measures only the default dev server")
	flags.StringVar(&s.variantEnv, "variant-env", "",
		"comma-separated KEY=VALUE environment of the serve and worker processes of a further stack, on a dev server with the default stack's dynamic config; empty runs no such stack")
	flags.IntVar(&s.memoryImages, "memory-images", 100, "images generated at once in the memory phase; 0 skips the phase")
	flags.IntVar(&s.memoryImageBytes, "memory-image-bytes", 4<<20, "PNG size in bytes in the memory phase")
	flags.IntVar(&s.memoryPerRequest, "memory-n", 1, "images per request (n) in the memory phase; -memory-images must be a multiple")
	flags.StringVar(&s.memoryFormat, "memory-format", "b64_json", "response_format of the memory phase's requests: b64_json or url")
	flags.StringVar(&s.databaseURL, "database-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
		"PostgreSQL URL of a user that may create databases; the benchmark creates and drops its own")
	flags.BoolVar(&s.sqlite, "sqlite", false, "use SQLite files instead of PostgreSQL")
	flags.StringVar(&s.redisURL, "redis-url", "redis://127.0.0.1:6379/0", "Redis URL; the benchmark uses fresh key prefixes and deletes their keys")
	flags.BoolVar(&s.embeddedRedis, "embedded-redis", false, "use an embedded Redis-protocol server instead of -redis-url")
	flags.StringVar(&s.temporalCLI, "temporal-cli", "", "Temporal CLI path (default $TEMPORAL_CLI_PATH, else ./bin/temporal)")
	flags.StringVar(&s.writePath, "write", "", "also write the report as the imagebench section of this markdown file; a relative path starts at the repository root")
	flags.BoolVar(&s.keepTemp, "keep-temp", false, "keep the temporary folder with the binary, the logs and the images")
	flags.BoolVar(&s.check, "check", false, fmt.Sprintf("exit with status %d when a target is missed", exitTargetMissed))
	if err := flags.Parse(args); err != nil {
		return s, err
	}
	if flags.NArg() > 0 {
		return s, fmt.Errorf("unexpected arguments: %s", strings.Join(flags.Args(), " "))
	}

	switch {
	case s.rounds < 1 || s.warmup < 0 || s.concurrency < 1:
		return s, errors.New("-rounds and -concurrency must be at least 1 and -warmup at least 0")
	case s.latency < 0 || s.runTimeout <= 0:
		return s, errors.New("-latency must be at least 0 and -run-timeout positive")
	case s.imageBytes < 1024 || s.memoryImageBytes < 1024 || s.imageBytes > 64<<20 || s.memoryImageBytes > 64<<20:
		return s, errors.New("-image-bytes and -memory-image-bytes must be from 1024 to 67108864")
	case s.memoryImages < 0 || s.memoryPerRequest < 1 || s.memoryPerRequest > 10 || s.memoryImages%s.memoryPerRequest != 0:
		return s, errors.New("-memory-n must be from 1 to 10 and divide -memory-images, which must be at least 0")
	case s.memoryFormat != "b64_json" && s.memoryFormat != "url":
		return s, fmt.Errorf("-memory-format must be b64_json or url, got %q", s.memoryFormat)
	}
	for _, value := range splitConfig(s.tunedConfig) {
		if key, _, ok := strings.Cut(value, "="); !ok || key == "" {
			return s, fmt.Errorf("-tuned-config entries must be KEY=VALUE, got %q", value)
		}
	}
	for _, value := range splitConfig(s.variantEnv) {
		if key, _, ok := strings.Cut(value, "="); !ok || key == "" {
			return s, fmt.Errorf("-variant-env entries must be KEY=VALUE, got %q", value)
		}
	}
	return s, nil
}

func splitConfig(list string) []string {
	var values []string
	for value := range strings.SplitSeq(list, ",") {
		if value = strings.TrimSpace(value); value != "" {
			values = append(values, value)
		}
	}
	return values
}

func main() {
	s, err := parseSettings(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "imagebench:", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal the cleanup runs, and a second signal ends the
	// process at once.
	context.AfterFunc(ctx, stop)

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	missed, err := run(ctx, s, logger)
	stop()
	if err != nil {
		logger.Error("benchmark failed", "error", err)
		os.Exit(1)
	}
	if s.check && len(missed) > 0 {
		logger.Error("targets missed", "targets", strings.Join(missed, ", "))
		os.Exit(exitTargetMissed)
	}
}

// run sets the stacks up, runs the memory and latency phases and reports.
// It returns the targets that the results miss.
func run(ctx context.Context, s settings, logger *slog.Logger) ([]string, error) {
	repoRoot, err := testenv.RepoRoot()
	if err != nil {
		return nil, err
	}
	s.temporalCLI, err = temporalCLIPath(s.temporalCLI, repoRoot)
	if err != nil {
		return nil, err
	}
	r := &report{settings: s, command: commandLine(), revision: benchdoc.GitRevision(ctx, repoRoot), started: time.Now(), loadBefore: loadAverage()}

	sh := &shared{settings: s, logger: logger, cleanups: &cleanups{logger: logger}, repoRoot: repoRoot}
	defer sh.runAll()
	if err := sh.start(ctx); err != nil {
		return nil, err
	}
	stacks := []*serviceStack{}
	defaultStack, err := sh.startStack(ctx, "default", nil, nil)
	if err != nil {
		return nil, err
	}
	stacks = append(stacks, defaultStack)
	if tuned := splitConfig(s.tunedConfig); len(tuned) > 0 {
		tunedStack, err := sh.startStack(ctx, "tuned", tuned, nil)
		if err != nil {
			return nil, err
		}
		stacks = append(stacks, tunedStack)
	}
	if env := splitConfig(s.variantEnv); len(env) > 0 {
		variantStack, err := sh.startStack(ctx, "variant", nil, env)
		if err != nil {
			return nil, err
		}
		stacks = append(stacks, variantStack)
	}
	for _, st := range stacks {
		r.stacks = append(r.stacks, stackInfo{name: st.name, config: st.dynamicConfig, env: st.env})
	}
	r.backends = append(sh.backends, defaultStack.backend, benchstack.TemporalVersion(ctx, s.temporalCLI)+" dev server with an in-memory database, one per stack")

	httpClient := newHTTPClient(max(s.concurrency, s.memoryImages))
	defer httpClient.CloseIdleConnections()
	directDir := filepath.Join(sh.tempDir, "direct")
	if err := os.MkdirAll(directDir, 0o755); err != nil {
		return nil, fmt.Errorf("create folder for the direct path: %w", err)
	}
	files, err := startFileServer(directDir, logger)
	if err != nil {
		return nil, err
	}
	sh.add("stop file server", files.close)

	paths := []imagePath{{name: "direct", run: (&directPath{http: httpClient, mockURL: sh.mock.url, dir: directDir, fileURL: files.url, imageBytes: s.imageBytes}).run}}
	for _, st := range stacks {
		ours := &ourPath{http: httpClient, apiURL: st.apiURL, apiKey: st.apiKey, model: latencyModel, imageBytes: s.imageBytes}
		paths = append(paths, imagePath{name: "ours (" + st.name + ")", run: ours.run})
	}

	if err := runPhases(ctx, s, sh, stacks, paths, httpClient, r, logger); err != nil {
		return nil, err
	}
	r.loadAfter = loadAverage()

	section := r.section()
	fmt.Println(section)
	if s.writePath != "" {
		path := s.writePath
		if !filepath.IsAbs(path) {
			path = filepath.Join(repoRoot, path)
		}
		if err := benchdoc.WriteSection(path, "imagebench", section); err != nil {
			return nil, err
		}
		logger.Info("report written", "path", path)
	}
	return r.missedTargets(), nil
}

// runPhases runs the memory phase on the default stack, then the latency
// phase on every path, and reads the workflow histories of the latency
// phase. It stores the results in r.
func runPhases(ctx context.Context, s settings, sh *shared, stacks []*serviceStack, paths []imagePath, httpClient *http.Client, r *report, logger *slog.Logger) error {
	// One image on each path opens the connections and loads the code
	// before the memory phase takes its baseline.
	for _, p := range paths {
		runCtx, cancel := context.WithTimeout(ctx, s.runTimeout)
		_, err := p.run(runCtx, "imagebench first request")
		cancel()
		if err != nil {
			return fmt.Errorf("first request on %s: %w", p.name, err)
		}
	}

	if s.memoryImages > 0 {
		logger.Info("memory phase", "images", s.memoryImages, "image_bytes", s.memoryImageBytes, "n", s.memoryPerRequest, "response_format", s.memoryFormat)
		memory, err := measureMemory(ctx, stacks[0], sh.mock, httpClient, s)
		if err != nil {
			return err
		}
		r.memory = memory
	}

	logger.Info("latency phase", "rounds", s.rounds, "warmup", s.warmup, "concurrency", s.concurrency, "paths", len(paths))
	latency, err := measureLatency(ctx, paths, s.warmup, s.rounds, s.concurrency, s.runTimeout, logger)
	if err != nil {
		return err
	}
	r.latency = latency

	for _, st := range stacks {
		// Visibility records lag behind the histories.
		var t *timeline
		deadline := time.Now().Add(30 * time.Second)
		for {
			t, err = fetchTimeline(ctx, st.temporalClient, latencyModel, latency.started)
			if err != nil || t.workflows >= len(latency.samples[0]) || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Second)
		}
		if err != nil {
			logger.Warn("the workflow timeline will be missing from the report", "stack", st.name, "error", err)
			continue
		}
		r.timelines = append(r.timelines, stackTimeline{stack: st.name, timeline: t})
	}
	return nil
}

func temporalCLIPath(flagValue, repoRoot string) (string, error) {
	path := flagValue
	if path == "" {
		path = os.Getenv("TEMPORAL_CLI_PATH")
	}
	if path == "" {
		path = filepath.Join(repoRoot, "bin", "temporal")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("resolve Temporal CLI path %s: %w", path, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return "", fmt.Errorf("no Temporal CLI at %s; run `make bin/temporal`, or set -temporal-cli or TEMPORAL_CLI_PATH: %w", abs, err)
	}
	return abs, nil
}

// commandLine is the command as a user would type it from the repository.
func commandLine() string {
	return strings.TrimSpace("go run ./bench/imagebench " + strings.Join(os.Args[1:], " "))
}

// loadAverage returns the 1, 5 and 15 minute load averages, because other
// processes on the machine skew the figures.
func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	fields := strings.Fields(string(raw))
	if len(fields) < 3 {
		return "unknown"
	}
	return strings.Join(fields[:3], " ")
}
