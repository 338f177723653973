package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/aihigress/aihigress/bench/internal/benchstack"
	"github.com/aihigress/aihigress/bench/internal/benchstat"
	"github.com/aihigress/aihigress/internal/benchdoc"
)

// maxP99Ratio caps the p99 latency with metrics over the p99 without.
const maxP99Ratio = 1.05

// minQuietRounds is the fewest quiet rounds from which the p99 ratio is
// checked. Ten rounds of 3 s at 2,000 requests per second give 600 samples
// above each p99.
const minQuietRounds = 10

// Names of the two targets of -metrics compare.
const (
	metricsOn  = "metrics on"
	metricsOff = "metrics off"
)

// metricsWindow is one measurement window of one target.
type metricsWindow struct {
	samples []sample
	lag     []time.Duration
	// The provider metrics flushes that ended during the window; zero for
	// the gateway without metrics.
	flushes   int64
	rows      int64
	flushTime time.Duration
	// otherCores is the average number of cores that processes other than
	// the benchmark's kept busy during the window, or NaN when /proc could
	// not be read.
	otherCores float64
}

// sentRate is the rate at which the window's requests were sent: the
// request count over the time from the first send to the schedule slot
// after the last one. It is below the requested rate when the load
// generator fell behind its schedule.
func (w metricsWindow) sentRate(rate int) float64 {
	n := len(w.lag)
	if n == 0 {
		return 0
	}
	interval := time.Second / time.Duration(rate)
	span := time.Duration(n)*interval + w.lag[n-1]
	return float64(n) / span.Seconds()
}

// metricsResults holds the figures of -metrics compare.
type metricsResults struct {
	settings settings
	runInfo

	// rounds holds each round's window per target name.
	rounds []map[string]metricsWindow

	dropped           int64
	flushErrors       int64
	requestLogWritten int64
	requestLogDropped int64
}

// measureMetrics sends non-streaming requests at -rate to the gateway with
// metrics and to the one without, one window each per round, the gateway
// with metrics first in odd rounds and second in even rounds.
func measureMetrics(ctx context.Context, s settings, st *stack, load loadGenerator, run runInfo, logger *slog.Logger) (*metricsResults, error) {
	header := http.Header{"Authorization": {"Bearer " + st.apiKey}}
	targets := []target{
		{name: metricsOn, url: st.metricsOnURL + "/v1/chat/completions", header: header},
		{name: metricsOff, url: st.metricsOffURL + "/v1/chat/completions", header: header},
	}
	if err := warmUp(ctx, s, load, targets, false, false, logger); err != nil {
		return nil, err
	}

	aggregator := st.recorder.Aggregator()
	r := &metricsResults{settings: s, runInfo: run}
	logger.Info("measuring", "rounds", s.rounds, "rate", s.rate, "window", s.window)
	for round := range s.rounds {
		if round > 0 && round%10 == 0 {
			logger.Info("rounds done", "rounds", round, "of", s.rounds)
		}
		windows := map[string]metricsWindow{}
		for _, t := range rotate(targets, round) {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			logger.Debug("measuring", "round", round+1, "target", t.name, "rate", s.rate, "window", s.window)
			flushes, rows, flushTime := aggregator.Flushes(), aggregator.RowsWritten(), aggregator.FlushTime()
			before := takeCPUSnapshot(load.pid())
			measured, err := load.run(ctx, windowSpec{targets: []target{t}, rate: s.rate, duration: s.window})
			if err != nil {
				return nil, err
			}
			w := measured[0]
			windows[t.name] = metricsWindow{
				samples:    w.samples,
				lag:        w.lag,
				flushes:    aggregator.Flushes() - flushes,
				rows:       aggregator.RowsWritten() - rows,
				flushTime:  aggregator.FlushTime() - flushTime,
				otherCores: otherCores(before, takeCPUSnapshot(load.pid())),
			}
			// Flush takes the aggregator's flush lock, so it also waits for
			// a periodic flush in progress. No write of this window's
			// buckets then falls into the next window.
			flushCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err = aggregator.Flush(flushCtx)
			cancel()
			if err != nil {
				return nil, fmt.Errorf("flush provider metrics after a window: %w", err)
			}
		}
		r.rounds = append(r.rounds, windows)
	}

	r.dropped, r.flushErrors = aggregator.Dropped(), aggregator.FlushErrors()
	r.requestLogWritten, r.requestLogDropped = st.requestLog.Written(), st.requestLog.Dropped()
	r.loadAfter = benchdoc.LoadAverage()
	return r, nil
}

// cpuSnapshot holds the machine's busy and total CPU ticks and the ticks of
// the benchmark's processes: this one, the load generator, and every
// PostgreSQL and Redis process.
type cpuSnapshot struct {
	busy, total, own int64
	ok               bool
}

func takeCPUSnapshot(loadPID int) cpuSnapshot {
	busy, total, err := benchstack.MachineCPU()
	if err != nil {
		return cpuSnapshot{}
	}
	pids := []int{os.Getpid()}
	if loadPID != os.Getpid() {
		pids = append(pids, loadPID)
	}
	var own int64
	for _, pid := range pids {
		stat, err := benchstack.ReadProcStat(pid)
		if err != nil {
			return cpuSnapshot{}
		}
		own += stat.CPUTicks
	}
	for _, comm := range []string{"postgres", "redis-server"} {
		ticks, _, err := benchstack.CPUTicksByComm(comm)
		if err != nil {
			return cpuSnapshot{}
		}
		own += ticks
	}
	return cpuSnapshot{busy: busy, total: total, own: own, ok: true}
}

// otherCores returns the average number of cores that were busy between
// two snapshots with work outside the benchmark's processes, interrupt
// handling included.
func otherCores(before, after cpuSnapshot) float64 {
	if !before.ok || !after.ok || after.total <= before.total {
		return math.NaN()
	}
	ticksPerCore := float64(after.total-before.total) / float64(runtime.NumCPU())
	other := (after.busy - before.busy) - (after.own - before.own)
	return max(0, float64(other)) / ticksPerCore
}

// pooled returns the samples and the lags of a target in the given rounds.
func (r *metricsResults) pooled(name string, rounds []int) ([]sample, []time.Duration) {
	var samples []sample
	var lags []time.Duration
	for _, i := range rounds {
		samples = append(samples, r.rounds[i][name].samples...)
		lags = append(lags, r.rounds[i][name].lag...)
	}
	return samples, lags
}

// allRounds returns the index of every round.
func (r *metricsResults) allRounds() []int {
	rounds := make([]int, len(r.rounds))
	for i := range rounds {
		rounds[i] = i
	}
	return rounds
}

// quietRounds returns the rounds in which other processes kept at most
// -max-other-cores busy during both windows. Which rounds qualify depends
// only on the machine's load, never on the latencies.
func (r *metricsResults) quietRounds() []int {
	var rounds []int
	for i, round := range r.rounds {
		if round[metricsOn].otherCores <= r.settings.maxOtherCores && round[metricsOff].otherCores <= r.settings.maxOtherCores {
			rounds = append(rounds, i)
		}
	}
	return rounds
}

// p99Of returns the p99 of a target's samples in the given rounds.
func (r *metricsResults) p99Of(name string, rounds []int) time.Duration {
	samples, _ := r.pooled(name, rounds)
	return percentile(latencies(samples, false), 99)
}

// windowP99 returns the median over the rounds of a target's window p99.
func (r *metricsResults) windowP99(name string) time.Duration {
	p99s := make([]float64, len(r.rounds))
	for i, round := range r.rounds {
		p99s[i] = float64(percentile(latencies(round[name].samples, false), 99))
	}
	return time.Duration(benchstat.Median(p99s))
}

// p99Ratio is the checked figure: the p99 with metrics over the p99
// without, over the samples of the quiet rounds. It is NaN when fewer than
// minQuietRounds rounds were quiet.
func (r *metricsResults) p99Ratio() float64 {
	quiet := r.quietRounds()
	if len(quiet) < minQuietRounds {
		return math.NaN()
	}
	return ratio(r.p99Of(metricsOn, quiet), r.p99Of(metricsOff, quiet))
}

// roundRatios returns each round's p99 with metrics over its p99 without.
func (r *metricsResults) roundRatios() []float64 {
	ratios := make([]float64, len(r.rounds))
	for i, round := range r.rounds {
		ratios[i] = ratio(percentile(latencies(round[metricsOn].samples, false), 99), percentile(latencies(round[metricsOff].samples, false), 99))
	}
	return ratios
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

// minFlushes is the fewest flushes that a window of the gateway with
// metrics saw.
func (r *metricsResults) minFlushes() int64 {
	fewest := int64(math.MaxInt64)
	for _, round := range r.rounds {
		fewest = min(fewest, round[metricsOn].flushes)
	}
	return fewest
}

func (r *metricsResults) sectionName() string { return "metricsbench" }

// missedTargets checks the p99 ratio, that every window of the
// gateway with metrics saw two flushes, and that the flushes wrote
// everything.
func (r *metricsResults) missedTargets() []string {
	var missed []string
	switch ratio := r.p99Ratio(); {
	case math.IsNaN(ratio):
		missed = append(missed, fmt.Sprintf("p99 with metrics (fewer than %d quiet rounds)", minQuietRounds))
	case ratio > maxP99Ratio:
		missed = append(missed, "p99 with metrics")
	}
	if r.minFlushes() < 2 || r.flushErrors > 0 || r.dropped > 0 {
		missed = append(missed, "provider metrics flushes")
	}
	return missed
}

// table renders the p50 and p99 of both targets, pooled over the rounds.
func (r *metricsResults) table() string {
	all, quiet := r.allRounds(), r.quietRounds()
	onAll, _ := r.pooled(metricsOn, all)
	offAll, _ := r.pooled(metricsOff, all)

	var b strings.Builder
	b.WriteString("| Latency, whole response | Metrics on | Metrics off | On ÷ off | Target | Result |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- |\n")
	rows := []struct {
		label   string
		on, off time.Duration
	}{
		{fmt.Sprintf("p50, all %d rounds", len(all)), percentile(latencies(onAll, false), 50), percentile(latencies(offAll, false), 50)},
		{fmt.Sprintf("p99, all %d rounds", len(all)), r.p99Of(metricsOn, all), r.p99Of(metricsOff, all)},
		{fmt.Sprintf("p99, median of the %d window p99s", len(all)), r.windowP99(metricsOn), r.windowP99(metricsOff)},
	}
	for _, row := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %.3f | none | – |\n", row.label, ms(row.on), ms(row.off), ratio(row.on, row.off))
	}

	label := fmt.Sprintf("p99, the %d quiet rounds (other processes ≤ %.2f cores)", len(quiet), r.settings.maxOtherCores)
	target := fmt.Sprintf("≤ %.2f", maxP99Ratio)
	if p99Ratio := r.p99Ratio(); math.IsNaN(p99Ratio) {
		fmt.Fprintf(&b, "| %s | – | – | – | %s, from %d quiet rounds | not measured |\n", label, target, minQuietRounds)
	} else {
		result := "miss"
		if p99Ratio <= maxP99Ratio {
			result = "pass"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.3f | %s | %s |\n", label, ms(r.p99Of(metricsOn, quiet)), ms(r.p99Of(metricsOff, quiet)), p99Ratio, target, result)
	}
	return b.String()
}

// details renders the counts, the load generator's pace, the flushes and
// the rounds.
func (r *metricsResults) details() string {
	s := r.settings
	var b strings.Builder
	b.WriteString("\n")
	for _, name := range []string{metricsOn, metricsOff} {
		samples, lags := r.pooled(name, r.allRounds())
		failed := 0
		for _, sample := range samples {
			if sample.failed {
				failed++
			}
		}
		lowest := math.Inf(1)
		for _, round := range r.rounds {
			lowest = min(lowest, round[name].sentRate(s.rate))
		}
		fmt.Fprintf(&b, "- %s: %d requests, %d failed. Sent at %.0f requests per second or more in every window; requests started late against the schedule by p99 %s, max %s.\n",
			capitalize(name), len(samples), failed, lowest, ms(percentile(lags, 99)), ms(percentile(lags, 100)))
	}

	var flushes, rows int64
	var flushTime time.Duration
	for _, round := range r.rounds {
		flushes += round[metricsOn].flushes
		rows += round[metricsOn].rows
		flushTime += round[metricsOn].flushTime
	}
	meanFlush := time.Duration(0)
	if flushes > 0 {
		meanFlush = flushTime / time.Duration(flushes)
	}
	fmt.Fprintf(&b, "- Provider metrics flushes during the windows with metrics: %d (at least %d per window), %d rows upserted, %s per flush on average. Over the whole run: %d requests dropped at the bucket limit, %d failed flushes.\n",
		flushes, r.minFlushes(), rows, ms(meanFlush), r.dropped, r.flushErrors)

	fmt.Fprintf(&b, "- Request log: %d rows written, %d dropped.\n", r.requestLogWritten, r.requestLogDropped)
	b.WriteString(r.roundSummary())
	return b.String()
}

// maxListedRounds is the most rounds that the report lists one by one.
// Beyond it, the report lists outlierRounds rounds at each end of the
// ratios.
const (
	maxListedRounds = 12
	outlierRounds   = 3
)

// roundSummary renders the spread of the per-round p99 ratios and the
// load of other processes, and a table of every round, or of the outlier
// rounds when there are many.
func (r *metricsResults) roundSummary() string {
	var b strings.Builder
	ratios := r.roundRatios()
	var otherOn, otherOff []float64
	for _, round := range r.rounds {
		otherOn = append(otherOn, round[metricsOn].otherCores)
		otherOff = append(otherOff, round[metricsOff].otherCores)
	}

	fmt.Fprintf(&b, "- Window p99 on ÷ off per round: median %.3f, middle half from %.3f to %.3f, all from %.3f to %.3f.\n",
		benchstat.Median(ratios), percentileFloat(ratios, 25), percentileFloat(ratios, 75), percentileFloat(ratios, 0), percentileFloat(ratios, 100))
	fmt.Fprintf(&b, "- Other processes on the machine kept %.2f cores busy during the median window with metrics and %.2f during the median window without. %d of %d rounds were quiet (at most %.2f cores in both windows).\n",
		benchstat.Median(otherOn), benchstat.Median(otherOff), len(r.quietRounds()), len(r.rounds), r.settings.maxOtherCores)

	listed := r.allRounds()
	if len(listed) > maxListedRounds {
		// The rounds with the highest and the lowest ratios show whether
		// the outliers came with other load.
		slices.SortStableFunc(listed, func(a, b int) int { return cmp.Compare(ratios[b], ratios[a]) })
		listed = append(listed[:outlierRounds], listed[len(listed)-outlierRounds:]...)
		fmt.Fprintf(&b, "\nThe %d rounds with the highest ratios and the %d with the lowest:\n\n", outlierRounds, outlierRounds)
	} else {
		b.WriteString("\nEvery round:\n\n")
	}

	b.WriteString("| Round | First | p99 on | p99 off | On ÷ off | Flushes | Rows | Other cores, on | Other cores, off | Latest start, on | Latest start, off |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, i := range listed {
		on, off := r.rounds[i][metricsOn], r.rounds[i][metricsOff]
		first := metricsOn
		if i%2 == 1 {
			first = metricsOff
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %.3f | %d | %d | %.2f | %.2f | %s | %s |\n", i+1, first,
			ms(percentile(latencies(on.samples, false), 99)), ms(percentile(latencies(off.samples, false), 99)), ratios[i],
			on.flushes, on.rows, on.otherCores, off.otherCores, ms(percentile(on.lag, 100)), ms(percentile(off.lag, 100)))
	}
	return b.String()
}

func capitalize(text string) string {
	if text == "" {
		return text
	}
	return strings.ToUpper(text[:1]) + text[1:]
}

func (r *metricsResults) terminal() string {
	return r.table() + r.details()
}

// section renders the "## Metrics on the gateway path" section of
// docs/benchmarks.md.
func (r *metricsResults) section() string {
	s := r.settings
	var b strings.Builder
	b.WriteString("## Metrics on the gateway path\n\n")
	b.WriteString("`bench/gatewaybench -metrics compare` measures what metrics cost the non-streaming gateway path (`POST /v1/chat/completions`): the p99 latency of a gateway with metrics, whose provider buckets are flushed to the database while the load runs, over that of a gateway with `METRICS_ENABLED=off`. Both figures come from the same run.\n\n")

	b.WriteString("### Command\n\n")
	fmt.Fprintf(&b, "```\n%s\n```\n\n", r.command)
	b.WriteString("By default it needs PostgreSQL and Redis on 127.0.0.1; `-sqlite` and `-embedded-redis` remove that need. It does not need Temporal.\n\n")

	b.WriteString(r.machine(s))

	b.WriteString("### Results\n\n")
	fmt.Fprintf(&b, "%d requests per second to each gateway, %d rounds of one %s window per gateway, provider buckets flushed every %s.\n\n", s.rate, s.rounds, s.window, s.flushInterval)
	b.WriteString(r.table())
	b.WriteString(r.details())

	b.WriteString("\n### Method\n\n")
	notes := []string{
		"Both gateways are `api.Server` as `aihigress serve` builds it, in one process with the mock upstream, and share the database, Redis, the router and the batched request log writer, as two `serve` processes would share them. " +
			"The gateway with metrics has the Prometheus middleware and collectors on the recorder's registry and records every upstream attempt into its per-minute provider buckets. " +
			"Its recorder flushes the buckets with a batched upsert into `provider_metrics_minute` every `-flush-interval`, a shorter interval than the production default of 30s so that every window sees at least two flushes. " +
			"The gateway without metrics is what `METRICS_ENABLED=off` builds: no collectors, no recorder and no `/metrics` route. Nothing scrapes `/metrics` during the run.",
		fmt.Sprintf("The load generator is a second process (`gatewaybench load-generator`). Each window sends non-streaming requests at a fixed arrival rate of %d per second, each in its own goroutine, whether or not earlier responses have ended (an open loop). A request's latency runs from the client sending it to reading the end of the body. The sent rate is the request count over the time from the first send to the slot after the last one, so it shows whether the load generator kept its schedule.", s.rate),
		fmt.Sprintf("The gateways take turns: %d rounds of one %s window each, the gateway with metrics first in odd rounds and second in even rounds. A warmup window per gateway runs before the rounds and is not counted. The windows are short so that a build or test that another program starts on the shared machine, which lasts seconds to minutes, slows both gateways alike. After each window the benchmark flushes the remaining buckets itself, so that no write of one window's requests falls into the next. The checked ratio divides the p99 with metrics by the p99 without, over the samples of the quiet rounds: those in which other processes kept at most %.2f cores busy during both windows (`-max-other-cores`). Which rounds count depends only on the machine's load, never on the latencies, and the check needs %d of them. Single %s windows have too few samples in their tail for a p99 of their own, so the per-round ratios are listed only to show how much they vary.", s.rounds, s.window, s.maxOtherCores, minQuietRounds, s.window),
		"Each window also records the cores that processes other than the benchmark's kept busy (\"other cores\"). It is the machine's busy time from /proc/stat, interrupt handling included, minus the CPU time of the benchmark process, the load generator and every PostgreSQL and Redis process. It therefore also leaves out work that other programs gave PostgreSQL and Redis. \"Latest start\" is how late against its schedule the load generator sent the latest request of a window, which grows when the whole machine stalls.",
		"The flush figures come from the aggregator's counters: flushes that wrote at least one bucket, rows upserted and the time from taking the buckets to the commit. One provider and one logical model make one row per minute bucket, so a flush writes one or two rows however many requests it sums.",
	}
	b.WriteString("- " + strings.Join(notes, "\n- ") + "\n")
	return b.String()
}
