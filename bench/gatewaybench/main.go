// Command gatewaybench measures the latency that the synchronous gateway
// (POST /v1/chat/completions) adds on top of its upstream, next to what a
// bare httputil.ReverseProxy adds, and prints the results as a markdown
// table.
//
// It starts the mock upstream with a fixed latency, a bare reverse proxy in
// front of it and the gateway (api.Server over PostgreSQL or SQLite, with
// Redis) in front of it, all in this process on loopback. It then sends
// non-streaming and then streaming requests to the three at a fixed arrival
// rate each, from a child process that runs this command as "gatewaybench
// load-generator". By default each window sends to all three at once, with
// their arrivals interleaved in time. With -interleave=false each target
// gets its own window. Run it from the repository:
//
//	go run ./bench/gatewaybench [-write docs/benchmarks.md]
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
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/aihigress/aihigress/internal/benchdoc"
	"github.com/aihigress/aihigress/internal/testenv"
)

// exitTargetMissed is the exit status with -check when a target is missed.
const exitTargetMissed = 3

// settings are the command-line flags.
type settings struct {
	rate            int
	window          time.Duration
	warmup          time.Duration
	rounds          int
	upstreamLatency time.Duration
	tokens          int

	databaseURL   string
	sqlite        bool
	redisURL      string
	embeddedRedis bool

	writePath   string
	cpuProfile  string
	check       bool
	rateLimit   bool
	loadProcess bool
	// interleave sends to all overhead targets in one window instead of
	// one window per target.
	interleave bool

	// metricsMode is "compare" to measure the gateway with and without
	// metrics instead of against the direct and proxy targets.
	metricsMode   string
	flushInterval time.Duration
	maxOtherCores float64
}

// metricsCompare is the -metrics value that selects the metrics comparison.
const metricsCompare = "compare"

func (s settings) compareMetrics() bool {
	return s.metricsMode == metricsCompare
}

// modeDefaults returns the defaults of -rate, -rounds and -window. The
// metrics comparison needs 2,000 requests per second, and alternates many
// short windows, so that a build or test that another program starts on
// the machine slows both gateways alike.
func modeDefaults(compareMetrics bool) (rate, rounds int, window time.Duration) {
	if compareMetrics {
		return 2000, 80, 3 * time.Second
	}
	return 500, 3, 10 * time.Second
}

func parseSettings(args []string) (settings, error) {
	var s settings
	flags := flag.NewFlagSet("gatewaybench", flag.ContinueOnError)
	flags.IntVar(&s.rate, "rate", 0, "requests per second sent to each target, at a fixed arrival rate (default 500, or 2000 with -metrics compare)")
	flags.DurationVar(&s.window, "window", 0, "length of one measurement window, which holds all targets with -interleave and one target without (default 10s, or 3s with -metrics compare)")
	flags.DurationVar(&s.warmup, "warmup", 2*time.Second, "load per target before the measured rounds of each request kind, not counted")
	flags.IntVar(&s.rounds, "rounds", 0, "measurement rounds per request kind; each round has one interleaved window, or with -interleave=false one window per target in rotating order (default 3, or 80 with -metrics compare)")
	flags.BoolVar(&s.interleave, "interleave", true, "send to the direct, proxy and gateway targets in the same window, each at -rate, with their arrivals interleaved in time. With false, each target gets its own window, one after another. -metrics compare always uses one window per target")
	flags.DurationVar(&s.upstreamLatency, "upstream-latency", 20*time.Millisecond, "mock upstream delay before the first token (the whole body waits it too)")
	flags.IntVar(&s.tokens, "tokens", 16, "content tokens per reply; streams send one chunk per token without pacing")
	flags.StringVar(&s.databaseURL, "database-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
		"PostgreSQL URL of a user that may create databases; the benchmark creates and drops its own")
	flags.BoolVar(&s.sqlite, "sqlite", false, "use a SQLite file instead of PostgreSQL")
	flags.StringVar(&s.redisURL, "redis-url", "redis://127.0.0.1:6379/0", "Redis URL; the benchmark uses a fresh key prefix and deletes its keys")
	flags.BoolVar(&s.embeddedRedis, "embedded-redis", false, "use an embedded Redis-protocol server instead of -redis-url")
	flags.StringVar(&s.writePath, "write", "", "also write the report as the gateway section of this markdown file, replacing only that section; a relative path starts at the repository root")
	flags.StringVar(&s.cpuProfile, "cpuprofile", "", "write a CPU profile of the measured rounds to this file")
	flags.BoolVar(&s.rateLimit, "rate-limit", true, "check the per-key rate limit in Redis on every gateway request, as `aihigress serve` does; the limit is too high to reject any request")
	flags.BoolVar(&s.loadProcess, "load-process", true, "send the requests from a child process, whose goroutines do not wait for the Go scheduler of the measured servers. With false, this process sends them")
	flags.BoolVar(&s.check, "check", false, fmt.Sprintf("exit with status %d when a target is missed", exitTargetMissed))
	flags.StringVar(&s.metricsMode, "metrics", "", "\"compare\" measures non-streaming requests to a gateway with metrics and to one without, in alternating order, instead of the direct, proxy and gateway targets")
	flags.DurationVar(&s.flushInterval, "flush-interval", time.Second, "with -metrics compare, how often the gateway with metrics flushes its provider buckets (METRICS_FLUSH_INTERVAL, 30s in production)")
	flags.Float64Var(&s.maxOtherCores, "max-other-cores", 0.2, "with -metrics compare, the most cores that other processes on the machine may keep busy during both windows of a round for the round to count in the checked p99")
	if err := flags.Parse(args); err != nil {
		return s, err
	}
	if flags.NArg() > 0 {
		return s, fmt.Errorf("unexpected arguments: %s", strings.Join(flags.Args(), " "))
	}
	if s.metricsMode != "" && !s.compareMetrics() {
		return s, fmt.Errorf("-metrics must be %q or empty, got %q", metricsCompare, s.metricsMode)
	}
	if s.compareMetrics() && s.interleave && flagSet(flags, "interleave") {
		return s, errors.New("-interleave applies only to the direct, proxy and gateway targets, because -metrics compare always runs one window per target. Drop -interleave or set it to false")
	}
	if s.compareMetrics() {
		s.interleave = false
	}
	rate, rounds, window := modeDefaults(s.compareMetrics())
	if s.rate == 0 {
		s.rate = rate
	}
	if s.rounds == 0 {
		s.rounds = rounds
	}
	if s.window == 0 {
		s.window = window
	}

	switch {
	case s.rate < 1 || s.rate > 100_000:
		return s, errors.New("-rate must be from 1 to 100000")
	case s.window < time.Second || s.warmup < 0:
		return s, errors.New("-window must be at least 1s and -warmup at least 0")
	case s.rounds < 1:
		return s, errors.New("-rounds must be at least 1")
	case s.upstreamLatency < 0 || s.tokens < 1:
		return s, errors.New("-upstream-latency must be at least 0 and -tokens at least 1")
	case s.maxOtherCores < 0:
		return s, errors.New("-max-other-cores must be at least 0")
	case s.compareMetrics() && (s.flushInterval < time.Second || s.window < 2*s.flushInterval):
		return s, fmt.Errorf("-flush-interval must be at least 1s and at most half of -window, so that each window sees two flushes; got %s and %s", s.flushInterval, s.window)
	}
	return s, nil
}

// flagSet reports whether the command line set the flag name.
func flagSet(flags *flag.FlagSet, name string) bool {
	set := false
	flags.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == loadGeneratorCommand {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := serveLoadGenerator(ctx, os.Stdin, os.Stdout)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "gatewaybench load-generator:", err)
			os.Exit(1)
		}
		return
	}

	s, err := parseSettings(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gatewaybench:", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
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

// report holds the figures of one mode of the benchmark.
type report interface {
	// terminal renders what the tool prints.
	terminal() string
	// section renders the section of docs/benchmarks.md that sectionName
	// delimits.
	section() string
	sectionName() string
	missedTargets() []string
}

// run starts the stack, measures in the mode that s selects and reports.
// It returns the targets that the results miss.
func run(ctx context.Context, s settings, logger *slog.Logger) ([]string, error) {
	started := time.Now()
	repoRoot, err := testenv.RepoRoot()
	if err != nil {
		return nil, err
	}
	loadBefore := benchdoc.LoadAverage()

	// The gateway logs a warning per failed attempt; the benchmark reports
	// failures itself, so only errors reach the terminal.
	serverLogger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	st := &stack{settings: s, logger: serverLogger}
	defer st.close()
	if err := st.start(ctx); err != nil {
		return nil, err
	}

	load, err := startLoad(ctx, s.loadProcess)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := load.close(); err != nil {
			logger.Warn("stop the load generator failed", "error", err)
		}
	}()

	if s.cpuProfile != "" {
		stopProfile, err := startCPUProfile(s.cpuProfile)
		if err != nil {
			return nil, err
		}
		defer stopProfile()
	}

	run := runInfo{command: commandLine(), revision: benchdoc.GitRevision(ctx, repoRoot), started: started,
		backends: st.backends, loadBefore: loadBefore}
	var r report
	if s.compareMetrics() {
		r, err = measureMetrics(ctx, s, st, load, run, logger)
	} else {
		r, err = measureOverhead(ctx, s, st, load, run, logger)
	}
	if err != nil {
		return nil, err
	}

	fmt.Print(r.terminal())
	if s.writePath != "" {
		path := s.writePath
		if !filepath.IsAbs(path) {
			path = filepath.Join(repoRoot, path)
		}
		if err := benchdoc.WriteSection(path, r.sectionName(), r.section()); err != nil {
			return nil, err
		}
		logger.Info("report written", "path", path)
	}
	return r.missedTargets(), nil
}

// runInfo describes the run for the report.
type runInfo struct {
	command  string
	revision string // the commit that was measured
	started  time.Time
	backends []string
	// loadBefore and loadAfter are the load averages before the stack
	// started and after the last window.
	loadBefore string
	loadAfter  string
}

// measureOverhead sends both request kinds to the direct, proxy and
// gateway targets.
func measureOverhead(ctx context.Context, s settings, st *stack, load loadGenerator, run runInfo, logger *slog.Logger) (*results, error) {
	targets := []target{
		{name: "direct", url: st.mock.URL() + "/v1/chat/completions", header: http.Header{"X-Mock-Tokens": {fmt.Sprint(s.tokens)}}},
		{name: "proxy", url: st.proxyURL + "/v1/chat/completions", header: http.Header{"X-Mock-Tokens": {fmt.Sprint(s.tokens)}}},
		{name: "gateway", url: st.gatewayURL + "/v1/chat/completions", header: http.Header{"Authorization": {"Bearer " + st.apiKey}}},
	}
	r := &results{settings: s, runInfo: run}

	for _, stream := range []bool{false, true} {
		kind := kindResult{stream: stream, samples: map[string][]sample{}, lag: map[string][]time.Duration{}}
		if err := warmUp(ctx, s, load, targets, stream, s.interleave, logger); err != nil {
			return nil, err
		}

		for round := range s.rounds {
			roundWindows, err := measureRound(ctx, s, load, targets, stream, round, logger)
			if err != nil {
				return nil, err
			}
			roundSamples := map[string][]sample{}
			for _, t := range targets {
				w := roundWindows[t.name]
				kind.samples[t.name] = append(kind.samples[t.name], w.samples...)
				kind.lag[t.name] = append(kind.lag[t.name], w.lag...)
				roundSamples[t.name] = w.samples
			}
			kind.rounds = append(kind.rounds, roundSamples)
		}
		r.kinds = append(r.kinds, kind)
	}
	// An interleaved window sends to the gateway until its last second,
	// whose rows the writer has not yet inserted.
	st.settleRequestLog(ctx)
	r.requestLogWritten, r.requestLogDropped = st.requestLog.Written(), st.requestLog.Dropped()
	r.loadAfter = benchdoc.LoadAverage()
	return r, nil
}

// measureRound measures one round and returns each target's window by
// target name. With -interleave the round is one window of all targets,
// and else one window per target in an order that rotates with the round.
func measureRound(ctx context.Context, s settings, load loadGenerator, targets []target, stream bool, round int, logger *slog.Logger) (map[string]window, error) {
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	windows := map[string]window{}
	if s.interleave {
		logger.Info("measuring", "stream", stream, "round", round+1, "targets", "interleaved", "rate_per_target", s.rate, "window", s.window)
		measured, err := load.run(ctx, windowSpec{targets: targets, stream: stream, rate: s.rate, duration: s.window, round: round})
		if err != nil {
			return nil, err
		}
		for i, t := range targets {
			windows[t.name] = measured[i]
		}
		return windows, nil
	}

	for _, t := range rotate(targets, round) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		logger.Info("measuring", "stream", stream, "round", round+1, "target", t.name, "rate", s.rate, "window", s.window)
		measured, err := load.run(ctx, windowSpec{targets: []target{t}, stream: stream, rate: s.rate, duration: s.window})
		if err != nil {
			return nil, err
		}
		windows[t.name] = measured[0]
	}
	return windows, nil
}

// warmUp sends the request kind to each target for -warmup, in one
// interleaved window when interleave is set and else in one window per
// target.
func warmUp(ctx context.Context, s settings, load loadGenerator, targets []target, stream, interleave bool, logger *slog.Logger) error {
	if s.warmup <= 0 {
		return nil
	}
	logger.Info("warming up", "stream", stream, "per_target", s.warmup, "interleaved", interleave)
	if interleave {
		_, err := load.run(ctx, windowSpec{targets: targets, stream: stream, rate: s.rate, duration: s.warmup})
		return err
	}
	for _, t := range targets {
		if _, err := load.run(ctx, windowSpec{targets: []target{t}, stream: stream, rate: s.rate, duration: s.warmup}); err != nil {
			return err
		}
	}
	return nil
}

// startLoad starts the load generator: a child process when childProcess is
// set, or a client in this process.
func startLoad(ctx context.Context, childProcess bool) (loadGenerator, error) {
	if !childProcess {
		return localLoad{client: newLoadClient()}, nil
	}
	return startProcessLoad(ctx)
}

// rotate returns targets starting at index round, so that each target runs
// first, second and third in turn.
func rotate(targets []target, round int) []target {
	n := round % len(targets)
	return append(append([]target(nil), targets[n:]...), targets[:n]...)
}

func startCPUProfile(path string) (func(), error) {
	file, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(file); err != nil {
		file.Close()
		return nil, fmt.Errorf("start CPU profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		file.Close()
	}, nil
}

// commandLine is the command as a user would type it from the repository.
func commandLine() string {
	return strings.TrimSpace("go run ./bench/gatewaybench " + strings.Join(os.Args[1:], " "))
}
