// Command mediabench compares the throughput of signed media links with a
// bare http.ServeFile of the same 1 MiB image and prints the results as a
// markdown section. It runs BenchmarkMediaVersusServeFile of internal/media
// with `go test` several times and reports each run and the median. Run it
// from the repository:
//
//	go run ./bench/mediabench [-rounds 300] [-count 5] [-write docs/benchmarks.md]
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aihigress/aihigress/internal/benchdoc"
	"github.com/aihigress/aihigress/internal/testenv"
)

// targetRatio is the lowest accepted media throughput as a fraction of the
// ServeFile throughput.
const targetRatio = 0.70

const benchmarkName = "BenchmarkMediaVersusServeFile"

type settings struct {
	rounds    int
	count     int
	writePath string
}

func parseSettings(args []string) (settings, error) {
	var s settings
	flags := flag.NewFlagSet("mediabench", flag.ContinueOnError)
	flags.IntVar(&s.rounds, "rounds", 300, "rounds per run; each round sends 32 requests to each server (go test -benchtime <rounds>x)")
	flags.IntVar(&s.count, "count", 5, "number of runs (go test -count)")
	flags.StringVar(&s.writePath, "write", "", "also write the report as the media section of this markdown file, replacing only that section; a relative path starts at the repository root")
	if err := flags.Parse(args); err != nil {
		return s, err
	}
	if flags.NArg() > 0 {
		return s, fmt.Errorf("unexpected arguments: %s", strings.Join(flags.Args(), " "))
	}
	if s.rounds < 1 || s.count < 1 {
		return s, errors.New("-rounds and -count must be at least 1")
	}
	return s, nil
}

func main() {
	s, err := parseSettings(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mediabench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, s)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mediabench:", err)
		os.Exit(1)
	}
}

// result is one run of the benchmark.
type result struct {
	mediaMBps, bareMBps float64
	mediaRPS, bareRPS   float64
	ratio               float64
	objectBytes         float64
}

type report struct {
	settings    settings
	command     string
	testCommand string
	revision    string
	started     time.Time
	loadBefore  string
	loadAfter   string
	runs        []result
}

func run(ctx context.Context, s settings) error {
	repoRoot, err := testenv.RepoRoot()
	if err != nil {
		return err
	}
	r := &report{
		settings: s,
		command:  strings.TrimSpace("go run ./bench/mediabench " + strings.Join(os.Args[1:], " ")),
		revision: benchdoc.GitRevision(ctx, repoRoot),
		started:  time.Now(),
	}

	args := []string{"test", "-run", "^$", "-bench", "^" + benchmarkName + "$",
		"-benchtime", strconv.Itoa(s.rounds) + "x", "-count", strconv.Itoa(s.count), "./internal/media/"}
	r.testCommand = "go " + strings.Join(quoteArgs(args), " ")
	r.loadBefore = benchdoc.LoadAverage()
	fmt.Fprintln(os.Stderr, r.testCommand)

	var output bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = repoRoot
	cmd.Stdout = io.MultiWriter(&output, os.Stderr)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", r.testCommand, err)
	}
	r.loadAfter = benchdoc.LoadAverage()

	r.runs, err = parseRuns(output.Bytes())
	if err != nil {
		return err
	}
	section := r.section()
	fmt.Println(section)

	if s.writePath != "" {
		path := s.writePath
		if !filepath.IsAbs(path) {
			path = filepath.Join(repoRoot, path)
		}
		if err := benchdoc.WriteSection(path, "mediabench", section); err != nil {
			return err
		}
		fmt.Fprintln(os.Stderr, "report written to", path)
	}
	return nil
}

// parseRuns reads the benchmark lines of `go test -bench` output, which
// are the name, the iteration count and then value-unit pairs.
func parseRuns(output []byte) ([]result, error) {
	var runs []result
	scanner := bufio.NewScanner(bytes.NewReader(output))
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) < 4 || !strings.HasPrefix(fields[0], benchmarkName) {
			continue
		}
		metrics := map[string]float64{}
		for i := 2; i+1 < len(fields); i += 2 {
			value, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return nil, fmt.Errorf("parse %q in line %q: %w", fields[i], scanner.Text(), err)
			}
			metrics[fields[i+1]] = value
		}
		for _, unit := range []string{"media-MB/s", "servefile-MB/s", "media-req/s", "servefile-req/s", "ratio", "object-bytes"} {
			if _, ok := metrics[unit]; !ok {
				return nil, fmt.Errorf("benchmark line %q lacks the metric %s", scanner.Text(), unit)
			}
		}
		runs = append(runs, result{
			mediaMBps: metrics["media-MB/s"], bareMBps: metrics["servefile-MB/s"],
			mediaRPS: metrics["media-req/s"], bareRPS: metrics["servefile-req/s"],
			ratio: metrics["ratio"], objectBytes: metrics["object-bytes"],
		})
	}
	if len(runs) == 0 {
		return nil, fmt.Errorf("the output has no %s lines", benchmarkName)
	}
	return runs, nil
}

func (r *report) section() string {
	var b strings.Builder
	b.WriteString("## Media links\n\n")
	b.WriteString("Target: `/media/images` serves a 1 MiB image at no less than 70% of the throughput of a bare `http.ServeFile` of the same file, measured in the same run.\n\n")
	b.WriteString("`bench/mediabench` runs `" + benchmarkName + "` in `internal/media/handler_bench_test.go` and writes this section.\n\n")

	b.WriteString("### Command\n\n")
	fmt.Fprintf(&b, "```\n%s\n```\n\n", r.command)
	fmt.Fprintf(&b, "It runs `%s` from the repository root. It needs no database, Redis or Temporal.\n\n", r.testCommand)

	b.WriteString("### Machine\n\n")
	fmt.Fprintf(&b, "- Date: %s\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Commit: %s\n", r.revision)
	fmt.Fprintf(&b, "- CPU: %d cores (%s), %s\n", runtime.NumCPU(), benchdoc.CPUModel(), benchdoc.KernelRelease())
	fmt.Fprintf(&b, "- Load average (1, 5, 15 min) before the runs: %s, after: %s. Other processes shared the cores during the runs.\n", r.loadBefore, r.loadAfter)
	fmt.Fprintf(&b, "- Go: %s, %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	b.WriteString("- Storage: `media.Local` in a `t.TempDir()` directory\n\n")

	b.WriteString("### Results\n\n")
	fmt.Fprintf(&b, "%d runs of %d rounds. Each round sends 32 requests to each server. The object is a PNG of %.0f bytes.\n\n", len(r.runs), r.settings.rounds, r.runs[0].objectBytes)
	b.WriteString("| Run | Media MB/s | ServeFile MB/s | Media req/s | ServeFile req/s | Media ÷ ServeFile |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- |\n")
	for i, run := range r.runs {
		fmt.Fprintf(&b, "| %d | %.0f | %.0f | %.0f | %.0f | %.3f |\n", i+1, run.mediaMBps, run.bareMBps, run.mediaRPS, run.bareRPS, run.ratio)
	}
	medianRatio := median(r.runs, func(run result) float64 { return run.ratio })
	fmt.Fprintf(&b, "| Median | %.0f | %.0f | %.0f | %.0f | %.3f |\n\n",
		median(r.runs, func(run result) float64 { return run.mediaMBps }), median(r.runs, func(run result) float64 { return run.bareMBps }),
		median(r.runs, func(run result) float64 { return run.mediaRPS }), median(r.runs, func(run result) float64 { return run.bareRPS }),
		medianRatio)
	verdict := "pass"
	if medianRatio < targetRatio {
		verdict = "miss"
	}
	fmt.Fprintf(&b, "Median ratio %.3f against the target of at least %.2f: %s. The lowest run was %.3f.\n\n", medianRatio, targetRatio, verdict,
		slices.MinFunc(r.runs, func(a, c result) int { return cmp.Compare(a.ratio, c.ratio) }).ratio)

	b.WriteString("### Method\n\n")
	notes := []string{
		"Two servers from `httptest.NewServer` run in the benchmark process on 127.0.0.1: one with `media.NewHandler` over `media.Local`, and one whose handler calls `http.ServeFile` on the same file. The media request carries a valid signed link, so each request checks the HMAC signature and the key, opens the file through `os.Root`, reads its first 512 bytes to detect the content type and sends the body with sendfile.",
		fmt.Sprintf("Each server gets 4 client goroutines with keep-alive connections. They read each body into a 256 KiB buffer and check its length. The clients run in the same process on the same %d cores, so part of each request's time is the client's. That time is the same for both servers, which brings the ratio closer to 1 than a remote client would.", runtime.NumCPU()),
		"A round sends 32 requests to one server and then 32 to the other, and the order flips every round, so that load from other processes falls on both. A server's throughput is its requests times the object size over the wall time of its rounds. The ratio is the media MB/s over the ServeFile MB/s of the same run.",
	}
	b.WriteString("- " + strings.Join(notes, "\n- ") + "\n")
	return b.String()
}

func median(runs []result, value func(result) float64) float64 {
	values := make([]float64, len(runs))
	for i, run := range runs {
		values[i] = value(run)
	}
	slices.Sort(values)
	if len(values)%2 == 1 {
		return values[len(values)/2]
	}
	return (values[len(values)/2-1] + values[len(values)/2]) / 2
}

// quoteArgs quotes the arguments that a shell would change.
func quoteArgs(args []string) []string {
	quoted := make([]string, len(args))
	for i, arg := range args {
		if strings.ContainsAny(arg, "^$*? ") {
			arg = "'" + arg + "'"
		}
		quoted[i] = arg
	}
	return quoted
}
