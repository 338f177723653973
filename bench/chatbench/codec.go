package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"time"

	"github.com/aihigress/aihigress/bench/internal/benchstack"
	"github.com/aihigress/aihigress/bench/internal/benchstat"
	"github.com/aihigress/aihigress/internal/benchdoc"
)

// minCodecRatio is the lowest accepted chat run throughput with the payload
// codec over the throughput without it.
const minCodecRatio = 0.9

// encryptedLogLine is the message that `serve` and `worker` log at start
// when a payload key is set.
const encryptedLogLine = "Temporal payloads are encrypted"

// codecSide is one of the two configurations of -codec compare.
type codecSide int

const (
	codecOff codecSide = iota
	codecOn
)

func (c codecSide) String() string {
	if c == codecOn {
		return "codec on"
	}
	return "codec off"
}

// codecResults holds the figures of -codec compare, indexed by codecSide.
type codecResults struct {
	settings   settings
	command    string
	revision   string
	started    time.Time
	backends   []string
	loadBefore string
	loadAfter  string

	rounds [2][]loadResult
	tally  [2]chatTally
	cpu    [2]phaseCPU
	cpuOK  [2]bool
}

// measureCodec runs the chat throughput load of runPhases with the service
// started without a payload key and with one, in rounds that alternate
// which side goes first. The service restarts whenever the side changes.
func measureCodec(ctx context.Context, s settings, st *stack, api *apiClient, conversations []string, r *codecResults, logger *slog.Logger) error {
	key := benchstack.RandomHex(32)
	sources := []cpuSource{
		pidSource("aihigress serve", func() int { return st.serve.PID() }),
		pidSource("aihigress worker", func() int { return st.worker.PID() }),
		pidSource("Temporal dev server", func() int { return st.temporalPID }),
	}
	meters := [2]*cpuMeter{newCPUMeter(sources), newCPUMeter(sources)}

	// The stack starts without a payload key.
	running := codecOff
	if err := checkCodecLogged(st, running); err != nil {
		return err
	}
	measure := func(round int, side codecSide) error {
		if side != running {
			logger.Info("restarting serve and worker", "side", side.String())
			payloadKey := ""
			if side == codecOn {
				payloadKey = key
			}
			if err := st.restartService(ctx, payloadKey); err != nil {
				return err
			}
			// The old processes closed their connections.
			api.http.CloseIdleConnections()
			running = side
			if err := checkCodecLogged(st, side); err != nil {
				return err
			}
		}
		if err := benchstack.WaitForQuiet(ctx, logger); err != nil {
			return err
		}

		logger.Info("chat throughput", "side", side.String(), "round", round, "of", s.rounds, "clients", s.concurrency, "ramp", s.ramp, "window", s.window)
		load := loadOptions{ramp: s.ramp, window: s.window, maxPerClient: maxIterationsPerClient,
			onWindowOpen: meters[side].open, onWindowClose: meters[side].close}
		result, tally, _ := measureChatThroughput(ctx, api, conversations, load, s.runTimeout)
		r.rounds[side] = append(r.rounds[side], result)
		r.tally[side].merge(tally)
		return ctx.Err()
	}

	for round := 1; round <= s.rounds; round++ {
		order := []codecSide{codecOff, codecOn}
		if round%2 == 0 {
			order = []codecSide{codecOn, codecOff}
		}
		for _, side := range order {
			if err := measure(round, side); err != nil {
				return err
			}
		}
	}

	for _, side := range []codecSide{codecOff, codecOn} {
		r.cpu[side], r.cpuOK[side] = meters[side].usage()
	}
	r.loadAfter = benchdoc.LoadAverage()
	return nil
}

// checkCodecLogged checks that the logs of the running serve and worker
// show the payload codec as side expects, so that a configuration that
// the service ignored cannot pass for a measurement.
func checkCodecLogged(st *stack, side codecSide) error {
	for _, c := range []*benchstack.Child{st.serve, st.worker} {
		raw, err := os.ReadFile(c.LogPath)
		if err != nil {
			return fmt.Errorf("read the log of %s: %w", c.Name, err)
		}
		logged := strings.Contains(string(raw), encryptedLogLine)
		if side == codecOn && !logged {
			return fmt.Errorf("%s should run with a payload key, but its log lacks %q; see %s", c.Name, encryptedLogLine, c.LogPath)
		}
		if side == codecOff && logged {
			return fmt.Errorf("%s should run without a payload key, but its log contains %q; see %s", c.Name, encryptedLogLine, c.LogPath)
		}
	}
	return nil
}

// medianRate is the median of a side's per-round runs per second.
func (r *codecResults) medianRate(side codecSide) float64 {
	rates := make([]float64, len(r.rounds[side]))
	for i, round := range r.rounds[side] {
		rates[i] = round.perSecond()
	}
	if len(rates) == 0 {
		return 0
	}
	return benchstat.Median(rates)
}

// ratio is the median rate with the codec over the median rate without.
func (r *codecResults) ratio() float64 {
	off := r.medianRate(codecOff)
	if off == 0 {
		return 0
	}
	return r.medianRate(codecOn) / off
}

// roundRatios returns each round's rate with the codec over its rate
// without.
func (r *codecResults) roundRatios() []float64 {
	var ratios []float64
	for i := range min(len(r.rounds[codecOff]), len(r.rounds[codecOn])) {
		if off := r.rounds[codecOff][i].perSecond(); off > 0 {
			ratios = append(ratios, r.rounds[codecOn][i].perSecond()/off)
		}
	}
	return ratios
}

func (r *codecResults) missedTargets() []string {
	var missed []string
	if r.ratio() < minCodecRatio {
		missed = append(missed, "throughput with the payload codec")
	}
	for _, side := range []codecSide{codecOff, codecOn} {
		t := r.tally[side]
		if t.failed != 0 || t.textMismatches != 0 || t.lost != 0 || t.duplicated != 0 {
			missed = append(missed, "failed runs, text mismatches, lost or duplicated events with the "+side.String())
		}
	}
	return missed
}

// table renders the throughput and the CPU per run of both sides.
func (r *codecResults) table() string {
	var b strings.Builder
	b.WriteString("| Figure | Codec off | Codec on | On ÷ off | Target | Result |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- |\n")
	fmt.Fprintf(&b, "| Throughput, %d concurrent, median of %d rounds | %.1f runs/s | %.1f runs/s | %.0f%% | ≥ %.0f%% | %s |\n",
		r.settings.concurrency, r.settings.rounds, r.medianRate(codecOff), r.medianRate(codecOn), 100*r.ratio(), 100*minCodecRatio, verdict(r.ratio() >= minCodecRatio))
	for _, name := range []string{"aihigress serve", "aihigress worker", "Temporal dev server"} {
		off, offOK := r.cpuPerRun(codecOff, name)
		on, onOK := r.cpuPerRun(codecOn, name)
		if !offOK || !onOK {
			fmt.Fprintf(&b, "| CPU per completed run, %s | n/a | n/a | – | none | – |\n", name)
			continue
		}
		fmt.Fprintf(&b, "| CPU per completed run, %s | %.2f ms | %.2f ms | %.0f%% | none | – |\n", name, off, on, 100*on/off)
	}
	for _, side := range []codecSide{codecOff, codecOn} {
		t := r.tally[side]
		fmt.Fprintf(&b, "| Failed runs / text mismatches / lost / duplicated events, %s (%d runs) | %s | – | 0 / 0 / 0 / 0 | %s |\n",
			side, t.runs, sideCells(side, fmt.Sprintf("%d / %d / %d / %d", t.failed, t.textMismatches, t.lost, t.duplicated)),
			verdict(t.failed == 0 && t.textMismatches == 0 && t.lost == 0 && t.duplicated == 0))
	}
	return b.String()
}

// sideCells puts text in the column of side and a dash in the other.
func sideCells(side codecSide, text string) string {
	if side == codecOn {
		return "– | " + text
	}
	return text + " | –"
}

// cpuPerRun is the CPU time of one process in milliseconds per run
// completed in the side's windows.
func (r *codecResults) cpuPerRun(side codecSide, name string) (float64, bool) {
	runs := sumLoads(r.rounds[side]).inWindow
	if !r.cpuOK[side] || runs == 0 {
		return 0, false
	}
	for _, usage := range r.cpu[side].processes {
		if usage.name == name {
			return 1000 * usage.coreSeconds / float64(runs), true
		}
	}
	return 0, false
}

// details lists the rounds and the first errors.
func (r *codecResults) details() string {
	var b strings.Builder
	ratios := r.roundRatios()
	fmt.Fprintf(&b, "- Per-round ratio on ÷ off: median %.0f%%.\n", 100*benchstat.Median(ratios))
	lowest, highest := math.Inf(1), math.Inf(-1)
	for i, ratio := range ratios {
		first := codecOff
		if i%2 == 1 {
			first = codecOn
		}
		fmt.Fprintf(&b, "  - Round %d (%s first): codec off %.1f runs/s, codec on %.1f runs/s (%.0f%%).\n",
			i+1, first, r.rounds[codecOff][i].perSecond(), r.rounds[codecOn][i].perSecond(), 100*ratio)
		lowest, highest = min(lowest, ratio), max(highest, ratio)
	}
	if len(ratios) > 1 && lowest < minCodecRatio && highest >= minCodecRatio {
		fmt.Fprintf(&b, "- The per-round ratios range from %.0f%% to %.0f%% and so lie on both sides of the %.0f%% target: single rounds do not settle the result.\n",
			100*lowest, 100*highest, 100*minCodecRatio)
	}
	for _, side := range []codecSide{codecOff, codecOn} {
		sum := sumLoads(r.rounds[side])
		fmt.Fprintf(&b, "- %s: %d runs completed in %s of windows; %d runs started in total, %d failed.\n",
			strings.ToUpper(side.String()[:1])+side.String()[1:], sum.inWindow, sum.window, sum.total, sum.errors)
		for _, message := range r.tally[side].firstErrors {
			fmt.Fprintf(&b, "  - Error: %s\n", message)
		}
	}
	return b.String()
}

func (r *codecResults) terminalReport() string {
	return "\n" + r.table() + "\n" + r.details()
}

// section renders the "## Payload codec" section of docs/benchmarks.md.
func (r *codecResults) section() string {
	s := r.settings
	var b strings.Builder
	b.WriteString("## Payload codec\n\n")
	b.WriteString("`bench/chatbench -codec compare` measures what encrypting Temporal payloads (`TEMPORAL_PAYLOAD_KEY`, the AES-256-GCM codec of `internal/payloadcodec`) costs chat run throughput: the runs per second of the chat throughput load of `bench/chatbench` with the codec on, over the same load with the codec off. Both figures come from the same run.\n\n")

	b.WriteString("### Command\n\n")
	fmt.Fprintf(&b, "```\n%s\n```\n\n", r.command)
	b.WriteString("It needs the Temporal CLI at `TEMPORAL_CLI_PATH` or `./bin/temporal`, and by default PostgreSQL and Redis on 127.0.0.1 (`-sqlite` and `-embedded-redis` remove that need).\n\n")

	b.WriteString("### Machine\n\n")
	b.WriteString(machineList(r.started, r.revision, r.backends, s.tokensPerSecond))
	fmt.Fprintf(&b, "- Load average (1, 5, 15 min): %s before the run, %s after it. Other processes shared the cores during the run.\n\n", r.loadBefore, r.loadAfter)

	b.WriteString("### Results\n\n")
	b.WriteString(r.table())
	b.WriteString("\n")
	b.WriteString(r.details())

	b.WriteString("\n### Method\n\n")
	notes := []string{
		"The stack is the one of `bench/chatbench`: `aihigress serve` and `aihigress worker` as child processes, a Temporal dev server with an in-memory database, and the mock upstream. Both sides use the same dev server, database and Redis. The tool restarts `serve` and `worker` whenever the side changes, with `TEMPORAL_PAYLOAD_KEY` set to a random key for the codec side and unset for the other, and checks that both processes logged the codec as expected.",
		fmt.Sprintf("The load is the throughput phase of `bench/chatbench`: %d clients in a closed loop, each posting a streaming message to its own conversation and reading the SSE response until `done`. After a %s ramp, a window counts the runs whose `done` frame arrived within %s. Every run is then checked against `GET /v1/runs/{id}` as in the main benchmark.", s.concurrency, s.ramp, s.window),
		fmt.Sprintf("Each of %d rounds has one window per side. Odd rounds measure the codec off first and even rounds the codec on first, because the dev server's in-memory database slows as it grows. Every window starts after the machine has been less than %d%% busy for a second (waiting up to %s). The checked ratio divides the median of the per-round rates with the codec by the median without it.", s.rounds, benchstack.QuietBusyPercent, benchstack.QuietMaxWait),
		"CPU per completed run is the user plus system CPU time of each process over the windows of a side, from /proc/<pid>/stat, divided by the runs completed in those windows.",
	}
	b.WriteString("- " + strings.Join(notes, "\n- ") + "\n")
	return b.String()
}
