// Command chatbench measures the latency, throughput and memory of AI
// Higress chat runs against a bare Temporal workflow baseline, on one
// machine, and prints the results as a markdown table.
//
// It builds ./cmd/aihigress, starts a Temporal dev server and the mock
// upstream, runs `aihigress serve` and `aihigress worker` as child processes
// and drives them over loopback. Run it from the repository:
//
//	go run ./bench/chatbench [-write docs/benchmarks.md]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
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

// maxIterationsPerClient bounds each load client even if its window never
// closes.
const maxIterationsPerClient = 100_000

// memorySampleInterval is how often RSS is sampled during the chat
// throughput rounds.
const memorySampleInterval = 100 * time.Millisecond

// exitTargetMissed is the exit status with -check when a target is missed.
const exitTargetMissed = 3

// settings are the command-line flags.
type settings struct {
	runs        int
	warmup      int
	concurrency int
	rounds      int
	ramp        time.Duration
	window      time.Duration
	runTimeout  time.Duration

	tokensPerSecond float64
	databaseURL     string
	sqlite          bool
	redisURL        string
	embeddedRedis   bool
	temporalCLI     string

	writePath string
	keepTemp  bool
	check     bool

	// codecMode is "compare" to measure chat run throughput with the
	// payload codec off and on instead of against the baseline.
	codecMode string
}

// codecCompare is the -codec value that selects the codec comparison.
const codecCompare = "compare"

func (s settings) compareCodec() bool {
	return s.codecMode == codecCompare
}

func parseSettings(args []string) (settings, error) {
	var s settings
	flags := flag.NewFlagSet("chatbench", flag.ContinueOnError)
	flags.IntVar(&s.runs, "runs", 200, "sequential runs sampled for latency, for ours and for the baseline")
	flags.IntVar(&s.warmup, "warmup", 20, "sequential runs before the latency samples, not counted")
	flags.IntVar(&s.concurrency, "concurrency", 200, "concurrent clients in the throughput phases")
	flags.IntVar(&s.rounds, "rounds", 6, "throughput rounds; each measures the baseline and ours, in alternating order")
	flags.DurationVar(&s.ramp, "ramp", 5*time.Second, "load time before each throughput window opens")
	flags.DurationVar(&s.window, "window", 15*time.Second, "length of each throughput measurement window")
	flags.DurationVar(&s.runTimeout, "run-timeout", time.Minute, "limit for one run or workflow")
	flags.Float64Var(&s.tokensPerSecond, "tps", 0, "mock upstream tokens per second; 0 sends them without pacing")
	flags.StringVar(&s.databaseURL, "database-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
		"PostgreSQL URL of a user that may create databases; the benchmark creates and drops its own")
	flags.BoolVar(&s.sqlite, "sqlite", false, "use a SQLite file instead of PostgreSQL")
	flags.StringVar(&s.redisURL, "redis-url", "redis://127.0.0.1:6379/0", "Redis URL; the benchmark uses a fresh key prefix and deletes its keys")
	flags.BoolVar(&s.embeddedRedis, "embedded-redis", false, "use an embedded Redis-protocol server instead of -redis-url")
	flags.StringVar(&s.temporalCLI, "temporal-cli", "", "Temporal CLI path (default $TEMPORAL_CLI_PATH, else ./bin/temporal)")
	flags.StringVar(&s.writePath, "write", "", "also write the report to this markdown file; a relative path starts at the repository root")
	flags.BoolVar(&s.keepTemp, "keep-temp", false, "keep the temporary folder with the binary, the logs and any SQLite file")
	flags.BoolVar(&s.check, "check", false, fmt.Sprintf("exit with status %d when a target is missed", exitTargetMissed))
	flags.StringVar(&s.codecMode, "codec", "", "\"compare\" measures chat run throughput with the payload codec off and on (TEMPORAL_PAYLOAD_KEY unset and set), restarting serve and worker between the two, instead of the latency and baseline phases")
	if err := flags.Parse(args); err != nil {
		return s, err
	}
	if flags.NArg() > 0 {
		return s, fmt.Errorf("unexpected arguments: %s", strings.Join(flags.Args(), " "))
	}

	switch {
	case s.codecMode != "" && !s.compareCodec():
		return s, fmt.Errorf("-codec must be %q or empty, got %q", codecCompare, s.codecMode)
	case s.runs < 1 || s.warmup < 0:
		return s, errors.New("-runs must be at least 1 and -warmup at least 0")
	case s.concurrency < 1 || s.rounds < 1:
		return s, errors.New("-concurrency and -rounds must be at least 1")
	case s.window <= 0 || s.ramp < 0 || s.runTimeout <= 0:
		return s, errors.New("-window and -run-timeout must be positive and -ramp at least 0")
	case s.tokensPerSecond < 0:
		return s, errors.New("-tps must be at least 0")
	}
	return s, nil
}

func main() {
	s, err := parseSettings(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatbench:", err)
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

// run sets the stack up, runs the latency and throughput phases and
// reports. It returns the targets that the results miss.
func run(ctx context.Context, s settings, logger *slog.Logger) ([]string, error) {
	started := time.Now()
	repoRoot, err := testenv.RepoRoot()
	if err != nil {
		return nil, err
	}
	cli, err := temporalCLIPath(s.temporalCLI, repoRoot)
	if err != nil {
		return nil, err
	}

	opts := stackOptions{repoRoot: repoRoot, temporalCLI: cli, tokensPerSecond: s.tokensPerSecond, keepTemp: s.keepTemp, logger: logger}
	if !s.sqlite {
		opts.adminDatabaseURL = s.databaseURL
	}
	if !s.embeddedRedis {
		opts.redisURL = s.redisURL
	}
	st := newStack(opts)
	defer st.close()
	if err := st.start(ctx); err != nil {
		return nil, err
	}

	httpClient := newHTTPClient(s.concurrency)
	defer httpClient.CloseIdleConnections()
	api := &apiClient{http: httpClient, baseURL: st.apiURL}
	if err := api.login(ctx); err != nil {
		return nil, fmt.Errorf("log in: %w", err)
	}
	conversations, err := api.createConversations(ctx, s.concurrency)
	if err != nil {
		return nil, fmt.Errorf("create conversations: %w", err)
	}

	if s.compareCodec() {
		c := &codecResults{settings: s, command: commandLine(), revision: benchdoc.GitRevision(ctx, repoRoot), started: started,
			backends: st.backends, loadBefore: benchdoc.LoadAverage()}
		if err := measureCodec(ctx, s, st, api, conversations, c, logger); err != nil {
			return nil, err
		}
		fmt.Print(c.terminalReport())
		return c.missedTargets(), writeSection(repoRoot, s.writePath, "chatbench-codec", c.section(), logger)
	}

	base, err := startBaseline(ctx, st.temporal.FrontendHostPort(), st.redis, st.redisPrefix, logger)
	if err != nil {
		return nil, err
	}
	defer base.close()

	metricsURL, err := findMetricsURL(ctx, st.temporalPID)
	if err != nil {
		logger.Warn("Temporal request counts will be missing from the report", "error", err)
	}

	r := &results{settings: s, command: commandLine(), revision: benchdoc.GitRevision(ctx, repoRoot), started: started, backends: st.backends}
	if err := runPhases(ctx, s, st, api, conversations, base, metricsURL, r, logger); err != nil {
		return nil, err
	}

	fmt.Print(r.terminalReport())
	return r.missedTargets(), writeSection(repoRoot, s.writePath, "chatbench", sectionOf(r.document()), logger)
}

// writeSection writes body as the section called name of the markdown file
// at path, a relative path starting at repoRoot. An empty path writes
// nothing.
func writeSection(repoRoot, path, name, body string, logger *slog.Logger) error {
	if path == "" {
		return nil
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(repoRoot, path)
	}
	if err := benchdoc.WriteSection(path, name, body); err != nil {
		return err
	}
	logger.Info("report written", "path", path, "section", name)
	return nil
}

// runPhases measures latency, the baseline first, and then throughput in
// rounds that alternate between the baseline and ours, so that drift in
// the shared machine affects both alike. It stores the figures in r.
func runPhases(ctx context.Context, s settings, st *stack, api *apiClient, conversations []string, base *baseline, metricsURL string, r *results, logger *slog.Logger) error {
	var err error
	logger.Info("baseline latency", "runs", s.runs, "warmup", s.warmup)
	r.baselineLatency, err = base.measureLatency(ctx, s.warmup, s.runs, s.runTimeout)
	if err != nil {
		return fmt.Errorf("baseline latency: %w", err)
	}

	logger.Info("chat latency", "runs", s.runs, "warmup", s.warmup)
	r.chatLatency, r.latencyTally, err = measureChatLatency(ctx, api, conversations, s.warmup, s.runs, s.runTimeout)
	if err != nil {
		return fmt.Errorf("chat latency: %w", err)
	}

	sources := cpuSources(st)
	baseProbes := newWindowProbes(sources, metricsURL)
	chatProbes := newWindowProbes(sources, metricsURL)
	r.chatThroughputTimeline = make(timeline)
	var memory *memoryProbe
	defer func() {
		if memory != nil {
			r.memory = memory.finish()
		}
	}()

	measureBaseline := func(round int) {
		logger.Info("baseline throughput", "round", round, "of", s.rounds, "clients", s.concurrency, "ramp", s.ramp, "window", s.window)
		result, errs := base.measureThroughput(ctx, s.concurrency, loadFor(s, baseProbes), s.runTimeout)
		r.baselineRounds = append(r.baselineRounds, result)
		r.baselineErrors = append(r.baselineErrors, errs...)
	}
	measureChat := func(round int) {
		logger.Info("chat throughput", "round", round, "of", s.rounds, "clients", s.concurrency, "ramp", s.ramp, "window", s.window)
		if memory == nil {
			memory = startMemoryProbe([]namedPID{{"serve", st.serve.PID()}, {"worker", st.worker.PID()}}, memorySampleInterval)
		}
		result, tally, steps := measureChatThroughput(ctx, api, conversations, loadFor(s, chatProbes), s.runTimeout)
		r.chatRounds = append(r.chatRounds, result)
		r.throughputTally.merge(tally)
		r.chatThroughputTimeline.merge(steps)
	}

	// Odd rounds measure the baseline first and even rounds ours first, so
	// that a slowdown over the run, as the dev server's in-memory database
	// grows, weighs on both alike.
	for round := 1; round <= s.rounds; round++ {
		order := []func(int){measureBaseline, measureChat}
		if round%2 == 0 {
			order = []func(int){measureChat, measureBaseline}
		}
		for _, measure := range order {
			if err := benchstack.WaitForQuiet(ctx, logger); err != nil {
				return err
			}
			measure(round)
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	r.memory = memory.finish()
	memory = nil

	r.baselineThroughput, r.chatThroughput = sumLoads(r.baselineRounds), sumLoads(r.chatRounds)
	r.baselineCPU, r.baseCPUOK = baseProbes.cpu.usage()
	r.chatCPU, r.chatCPUOK = chatProbes.cpu.usage()
	r.baselineTemporal, r.baselineTemporalErr = baseProbes.temporal.perCompletion(r.baselineThroughput.inWindow)
	r.chatTemporal, r.chatTemporalErr = chatProbes.temporal.perCompletion(r.chatThroughput.inWindow)
	return nil
}

// windowProbes records CPU time and Temporal request counts over the
// throughput windows of one kind of load.
type windowProbes struct {
	cpu      *cpuMeter
	temporal *temporalMeter
}

func newWindowProbes(sources []cpuSource, metricsURL string) *windowProbes {
	return &windowProbes{cpu: newCPUMeter(sources), temporal: newTemporalMeter(metricsURL)}
}

func (p *windowProbes) open() {
	p.cpu.open()
	p.temporal.open()
}

func (p *windowProbes) close() {
	p.cpu.close()
	p.temporal.close()
}

func loadFor(s settings, probes *windowProbes) loadOptions {
	return loadOptions{
		ramp:          s.ramp,
		window:        s.window,
		maxPerClient:  maxIterationsPerClient,
		onWindowOpen:  probes.open,
		onWindowClose: probes.close,
	}
}

// cpuSources lists the processes whose CPU time the throughput phases
// record.
func cpuSources(st *stack) []cpuSource {
	sources := []cpuSource{
		pidSource("aihigress serve", func() int { return st.serve.PID() }),
		pidSource("aihigress worker", func() int { return st.worker.PID() }),
		pidSource("Temporal dev server", func() int { return st.temporalPID }),
		pidSource("chatbench (clients, baseline worker, mock upstream)", os.Getpid),
	}
	if st.databaseURL != "" {
		sources = append(sources, commSource("PostgreSQL (all processes)", "postgres"))
	}
	if st.opts.redisURL != "" {
		sources = append(sources, commSource("Redis (all processes)", "redis-server"))
	}
	return sources
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
	return strings.TrimSpace("go run ./bench/chatbench " + strings.Join(os.Args[1:], " "))
}

// sectionOf turns a report document into a section of the benchmarks page:
// its title becomes "## Chat runs" and every other heading outside code
// blocks moves one level down.
func sectionOf(document string) string {
	lines := strings.Split(document, "\n")
	inCode := false
	for i, line := range lines {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		switch {
		case inCode:
		case i == 0 && strings.HasPrefix(line, "# "):
			lines[i] = "## Chat runs"
		case strings.HasPrefix(line, "#"):
			lines[i] = "#" + line
		}
	}
	return strings.Join(lines, "\n")
}
