package main

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/aihigress/aihigress/bench/internal/benchstack"
	"github.com/aihigress/aihigress/bench/internal/benchstat"
	"github.com/aihigress/aihigress/internal/benchdoc"
)

// Targets of the benchmark.
const (
	maxLatencyRatio    = 2.0 // our p50 over the baseline p50
	minThroughputRatio = 0.6 // see throughputRatio
	maxPeakRSSBytes    = 300_000_000
)

// results is everything one benchmark run measured.
type results struct {
	settings settings
	command  string
	revision string // the commit that was measured
	started  time.Time
	backends []string

	chatLatency     chatLatency
	baselineLatency baselineLatency
	latencyTally    chatTally

	// The throughput figures add up the rounds.
	chatThroughput         loadResult
	baselineThroughput     loadResult
	chatRounds             []loadResult
	baselineRounds         []loadResult
	throughputTally        chatTally
	chatThroughputTimeline timeline
	baselineErrors         []string

	// Temporal requests per run completed in the throughput windows.
	chatTemporal        map[string]float64
	chatTemporalErr     error
	baselineTemporal    map[string]float64
	baselineTemporalErr error

	memory      memoryResult
	chatCPU     phaseCPU
	chatCPUOK   bool
	baselineCPU phaseCPU
	baseCPUOK   bool
}

// percentile returns the nearest-rank percentile p (0 to 100) of samples.
func percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func milliseconds(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func megabytes(bytes int64) string {
	return fmt.Sprintf("%.0f MB", float64(bytes)/1e6)
}

func verdict(pass bool) string {
	if pass {
		return "pass"
	}
	return "**FAIL**"
}

// missedTargets lists the targets that the results miss.
func (r *results) missedTargets() []string {
	var missed []string
	ours, base := percentile(r.chatLatency.firstDelta, 50), percentile(r.baselineLatency.received, 50)
	if float64(ours) > maxLatencyRatio*float64(base) {
		missed = append(missed, "latency p50")
	}
	if r.throughputRatio() < minThroughputRatio {
		missed = append(missed, "throughput")
	}
	if r.allTally().lost != 0 || r.allTally().duplicated != 0 {
		missed = append(missed, "lost or duplicated events")
	}
	if r.allTally().failed != 0 || r.allTally().textMismatches != 0 {
		missed = append(missed, "failed runs or text mismatches")
	}
	if r.memory.total() > maxPeakRSSBytes {
		missed = append(missed, "peak RSS")
	}
	return missed
}

// throughputRatio is the median over the rounds of our rate divided by the
// baseline's rate in the same round. One round whose baseline window
// collapses, as happens now and then on the dev server, moves the median
// less than it moves the ratio of the summed rates.
func (r *results) throughputRatio() float64 {
	var ratios []float64
	for i := range min(len(r.chatRounds), len(r.baselineRounds)) {
		if base := r.baselineRounds[i].perSecond(); base > 0 {
			ratios = append(ratios, r.chatRounds[i].perSecond()/base)
		}
	}
	if len(ratios) == 0 {
		return 0
	}
	return benchstat.Median(ratios)
}

func (r *results) allTally() chatTally {
	all := r.latencyTally
	all.merge(r.throughputTally)
	return all
}

// summaryTable is the main markdown table: one row per figure.
func (r *results) summaryTable() string {
	var b strings.Builder
	b.WriteString("| Figure | Ours | Baseline | Ratio | Target | Result |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- |\n")

	ours50, base50 := percentile(r.chatLatency.firstDelta, 50), percentile(r.baselineLatency.received, 50)
	ours99, base99 := percentile(r.chatLatency.firstDelta, 99), percentile(r.baselineLatency.received, 99)
	latencyRatio := float64(ours50) / float64(base50)
	fmt.Fprintf(&b, "| Latency p50, POST to first `message.delta` (%d runs) | %s | %s | %.2f× | ≤ %.0f× baseline | %s |\n",
		len(r.chatLatency.firstDelta), milliseconds(ours50), milliseconds(base50), latencyRatio, maxLatencyRatio, verdict(latencyRatio <= maxLatencyRatio))
	fmt.Fprintf(&b, "| Latency p99 | %s | %s | %.2f× | none | – |\n",
		milliseconds(ours99), milliseconds(base99), float64(ours99)/float64(base99))

	ours, base := r.chatThroughput.perSecond(), r.baselineThroughput.perSecond()
	throughputRatio := r.throughputRatio()
	fmt.Fprintf(&b, "| Throughput, %d concurrent (ratio: median of %d rounds) | %.1f runs/s | %.1f workflows/s | %.0f%% | ≥ %.0f%% of baseline | %s |\n",
		r.settings.concurrency, len(r.chatRounds), ours, base, 100*throughputRatio, 100*minThroughputRatio, verdict(throughputRatio >= minThroughputRatio))

	all := r.allTally()
	fmt.Fprintf(&b, "| Lost / duplicated events (%d runs) | %d / %d | – | – | 0 / 0 | %s |\n",
		all.runs, all.lost, all.duplicated, verdict(all.lost == 0 && all.duplicated == 0))
	fmt.Fprintf(&b, "| Failed runs / text mismatches (%d runs) | %d / %d | %d failed workflows | – | 0 / 0 | %s |\n",
		all.runs, all.failed, all.textMismatches, r.baselineThroughput.errors, verdict(all.failed == 0 && all.textMismatches == 0))

	parts := make([]string, len(r.memory.names))
	for i, name := range r.memory.names {
		parts[i] = name + " " + megabytes(r.memory.peaks[i])
	}
	fmt.Fprintf(&b, "| Peak RSS, serve + worker, %d-stream phase | %s (%s) | – | – | ≤ %s | %s |\n",
		r.settings.concurrency, megabytes(r.memory.total()), strings.Join(parts, ", "), megabytes(maxPeakRSSBytes), verdict(r.memory.total() <= maxPeakRSSBytes))
	return b.String()
}

// latencyTimelineTable lists when each step of a sequential run happens,
// as offsets from the start, to show where the latency goes.
func (r *results) latencyTimelineTable() string {
	var b strings.Builder
	b.WriteString("| Step | p50 since start | p99 since start |\n| --- | --- | --- |\n")
	for _, step := range chatSteps {
		samples := r.chatLatency.timeline[step]
		fmt.Fprintf(&b, "| ours: %s | %s | %s |\n", step, milliseconds(percentile(samples, 50)), milliseconds(percentile(samples, 99)))
	}
	for _, step := range baselineSteps {
		samples := r.baselineLatency.timeline[step]
		fmt.Fprintf(&b, "| baseline: %s | %s | %s |\n", step, milliseconds(percentile(samples, 50)), milliseconds(percentile(samples, 99)))
	}
	return b.String()
}

// throughputTimelineTable lists the same steps for the runs of the chat
// throughput rounds, to show where runs wait under load.
func (r *results) throughputTimelineTable() string {
	var b strings.Builder
	fmt.Fprintf(&b, "| Step (%d runs) | p50 since POST | p99 since POST |\n| --- | --- | --- |\n", len(r.chatThroughputTimeline[stepDoneSeen]))
	for _, step := range chatSteps {
		samples := r.chatThroughputTimeline[step]
		fmt.Fprintf(&b, "| %s | %s | %s |\n", step, milliseconds(percentile(samples, 50)), milliseconds(percentile(samples, 99)))
	}
	return b.String()
}

// temporalTable shows the Temporal RPCs and database operations that each
// completed run or workflow caused in the throughput windows.
func (r *results) temporalTable() string {
	if r.chatTemporalErr != nil || r.baselineTemporalErr != nil {
		return fmt.Sprintf("Not available: %v\n", errors.Join(r.chatTemporalErr, r.baselineTemporalErr))
	}

	type row struct {
		kind, countMetric, secondsMetric string
	}
	kinds := []row{
		{"RPC", metricServiceRequests, ""},
		{"database", metricPersistenceRequests, metricPersistenceSeconds},
		{"visibility database", metricVisibilityRequests, metricVisibilityRequestsSeconds},
	}

	var b strings.Builder
	b.WriteString("| Kind | Service | Operation | Ours: count per run | Baseline: count per workflow | Ours: ms per run | Baseline: ms per workflow |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, kind := range kinds {
		var operations []string
		for _, counters := range []map[string]float64{r.chatTemporal, r.baselineTemporal} {
			for key, value := range counters {
				operation, ok := strings.CutPrefix(key, kind.countMetric+" ")
				if ok && value >= 0.05 && !slices.Contains(operations, operation) {
					operations = append(operations, operation)
				}
			}
		}
		slices.Sort(operations)

		var totals [4]float64
		for _, operation := range operations {
			service, name, _ := strings.Cut(operation, " ")
			values := [4]float64{
				r.chatTemporal[kind.countMetric+" "+operation],
				r.baselineTemporal[kind.countMetric+" "+operation],
				1000 * r.chatTemporal[kind.secondsMetric+" "+operation],
				1000 * r.baselineTemporal[kind.secondsMetric+" "+operation],
			}
			for i := range totals {
				totals[i] += values[i]
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %.2f | %.2f | %s | %s |\n", kind.kind, service, name, values[0], values[1],
				secondsCell(kind.secondsMetric, values[2]), secondsCell(kind.secondsMetric, values[3]))
		}
		fmt.Fprintf(&b, "| %s | all | **total** | %.1f | %.1f | %s | %s |\n", kind.kind, totals[0], totals[1],
			secondsCell(kind.secondsMetric, totals[2]), secondsCell(kind.secondsMetric, totals[3]))
	}
	return b.String()
}

func secondsCell(metric string, milliseconds float64) string {
	if metric == "" {
		return "–"
	}
	return fmt.Sprintf("%.2f", milliseconds)
}

// cpuTable shows the CPU use of each process in the throughput windows of
// each kind.
func (r *results) cpuTable() string {
	var b strings.Builder
	b.WriteString("| Process | Ours: core-seconds | Ours: % of one core | Baseline: core-seconds | Baseline: % of one core |\n")
	b.WriteString("| --- | --- | --- | --- | --- |\n")

	var names []string
	for _, usage := range append(slices.Clone(r.chatCPU.processes), r.baselineCPU.processes...) {
		if !slices.Contains(names, usage.name) {
			names = append(names, usage.name)
		}
	}
	cell := func(phase phaseCPU, ok bool, name string) string {
		if !ok {
			return "n/a | n/a"
		}
		for _, usage := range phase.processes {
			if usage.name == name {
				return fmt.Sprintf("%.1f | %.0f%%", usage.coreSeconds, usage.percentOfCore)
			}
		}
		return "– | –"
	}
	for _, name := range names {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", name, cell(r.chatCPU, r.chatCPUOK, name), cell(r.baselineCPU, r.baseCPUOK, name))
	}
	fmt.Fprintf(&b, "| whole machine, busy share of %d cores | | %.0f%% | | %.0f%% |\n", runtime.NumCPU(), r.chatCPU.machineBusy, r.baselineCPU.machineBusy)
	return b.String()
}

// details lists the counts behind the table and the first errors.
func (r *results) details() string {
	var b strings.Builder
	fmt.Fprintf(&b, "- Chat throughput: %d runs completed in %s of windows; %d runs started in total, %d failed.\n",
		r.chatThroughput.inWindow, r.chatThroughput.window, r.chatThroughput.total, r.chatThroughput.errors)
	fmt.Fprintf(&b, "- Baseline throughput: %d workflows completed in %s of windows; %d started in total, %d failed.\n",
		r.baselineThroughput.inWindow, r.baselineThroughput.window, r.baselineThroughput.total, r.baselineThroughput.errors)
	lowest, highest := math.Inf(1), math.Inf(-1)
	for i := range min(len(r.chatRounds), len(r.baselineRounds)) {
		ours, base := r.chatRounds[i].perSecond(), r.baselineRounds[i].perSecond()
		fmt.Fprintf(&b, "- Round %d: baseline %.1f workflows/s, ours %.1f runs/s (%.0f%%).\n", i+1, base, ours, 100*ours/base)
		lowest, highest = min(lowest, ours/base), max(highest, ours/base)
	}
	if len(r.chatRounds) > 1 && lowest <= minThroughputRatio && highest >= minThroughputRatio {
		fmt.Fprintf(&b, "- The per-round ratios range from %.0f%% to %.0f%% and so lie on both sides of the %.0f%% target: the throughput result is not settled, and another run may reach the other verdict.\n",
			100*lowest, 100*highest, 100*minThroughputRatio)
	}
	if r.memory.fromHWM {
		b.WriteString("- Peak RSS is VmHWM, reset through /proc/<pid>/clear_refs when the first chat throughput round started.\n")
	} else {
		fmt.Fprintf(&b, "- Peak RSS is the highest VmRSS sampled every %s, because resetting VmHWM through /proc/<pid>/clear_refs failed.\n", memorySampleInterval)
	}
	for _, message := range r.allTally().firstErrors {
		fmt.Fprintf(&b, "- Chat run error: %s\n", message)
	}
	for _, message := range r.baselineErrors {
		fmt.Fprintf(&b, "- Baseline error: %s\n", message)
	}
	return b.String()
}

// terminalReport renders the tables that the tool prints.
func (r *results) terminalReport() string {
	var b strings.Builder
	b.WriteString("\n## Results\n\n")
	b.WriteString(r.summaryTable())
	b.WriteString("\n## Latency timeline\n\n")
	b.WriteString(r.latencyTimelineTable())
	b.WriteString("\n## Chat run timeline under load\n\n")
	b.WriteString(r.throughputTimelineTable())
	b.WriteString("\n## CPU during the throughput windows\n\n")
	b.WriteString(r.cpuTable())
	b.WriteString("\n## Temporal requests per completed run\n\n")
	b.WriteString(r.temporalTable())
	b.WriteString("\n")
	b.WriteString(r.details())
	return b.String()
}

// document renders docs/benchmarks.md.
func (r *results) document() string {
	s := r.settings
	var b strings.Builder
	b.WriteString("# Benchmarks\n\n")
	b.WriteString("`bench/chatbench` measures the cost of running a chat turn as a Temporal workflow: how long a streaming client waits for the first token, how many runs per second the service completes under load, and how much memory it needs. Each figure is compared with a bare Temporal workflow on the same dev server, so the ratio shows what the service adds on top of Temporal itself.\n\n")

	b.WriteString("## Command\n\n")
	fmt.Fprintf(&b, "```\n%s\n```\n\n", r.command)
	b.WriteString("`make bench` runs the same tool with the default flags. It needs the Temporal CLI at `TEMPORAL_CLI_PATH` or `./bin/temporal`, and by default PostgreSQL and Redis on 127.0.0.1 (`-sqlite` and `-embedded-redis` remove that need).\n\n")

	b.WriteString("## Machine\n\n")
	b.WriteString(machineList(r.started, r.revision, r.backends, s.tokensPerSecond))
	b.WriteString("\n")

	b.WriteString("## Results\n\n")
	b.WriteString(r.summaryTable())
	b.WriteString("\n")
	b.WriteString(r.details())

	b.WriteString("\n### Latency timeline\n\n")
	b.WriteString("Offsets from the start of a run: for ours, from just before the POST; for the baseline, from just before ExecuteWorkflow. The database and worker timestamps come from the same machine clock as the client's.\n\n")
	b.WriteString(r.latencyTimelineTable())

	b.WriteString("\n### Chat run timeline under load\n\n")
	fmt.Fprintf(&b, "The same steps for every successful run of the %d-client throughput phase, including the ramp.\n\n", s.concurrency)
	b.WriteString(r.throughputTimelineTable())

	b.WriteString("\n### CPU during the throughput windows\n\n")
	b.WriteString("User plus system CPU time from /proc/<pid>/stat, over each measurement window. PostgreSQL and Redis are summed over every process of that name on the machine.\n\n")
	b.WriteString(r.cpuTable())

	b.WriteString("\n### Temporal requests per completed run\n\n")
	b.WriteString("The increase of the dev server's Prometheus counters over each throughput window, divided by the runs or workflows completed in it: `service_requests` for RPCs, `persistence_requests` and `persistence_latency_sum` for database operations, and their `visibility_persistence_` counterparts for the visibility store. The times include waiting for the database, so they grow with contention. Operations below 0.05 per run in both columns are left out.\n\n")
	b.WriteString(r.temporalTable())

	b.WriteString("\n## Method\n\n")
	b.WriteString(r.methodNotes())
	return b.String()
}

func (r *results) methodNotes() string {
	s := r.settings
	notes := []string{
		"The tool builds `./cmd/aihigress` with `go build`, starts a Temporal dev server with an in-memory database and the mock upstream, and runs `aihigress serve` and `aihigress worker` as two child processes configured only through environment variables. All traffic stays on loopback. Every run uses a fresh database and a fresh Redis key prefix, which the tool drops and deletes at the end.",
		fmt.Sprintf("**Latency.** %d runs one after another, after %d warmup runs, each posting `{\"content\": ..., \"streaming\": true}` to the next of %d conversations and reading the SSE response until `done`. The figure is the time from sending the POST to parsing the first `message.delta` frame. The baseline is a workflow with one activity that publishes one Redis message, run in a worker inside the benchmark process on its own task queue. Its figure is the time from the ExecuteWorkflow call to a Redis subscriber receiving the message. The baseline phase runs first, with the same number of warmup runs.", s.runs, s.warmup, s.concurrency),
		fmt.Sprintf("**Throughput.** %d clients in a closed loop, each on its own conversation so that no two runs share a conversation's sequence numbers. Each client posts a streaming message and reads the SSE response until `done`, then starts the next run. After a %s ramp, a round counts the runs whose `done` frame arrived within a %s window. Runs still open when the window closes finish but do not count. The baseline is a workflow with the activities of a successful chat run (one local activity, then two activities, all doing nothing), started and awaited by %d concurrent clients in the same way. The rates add up %d rounds, each with one window of each kind, and the ratio is the median of the per-round ratios. Odd rounds measure the baseline first and even rounds ours first, because the dev server's in-memory database slows as it grows. Every window starts after the machine has been less than %d%% busy for a second (waiting up to %s), because Temporal keeps working for a while after a load ends. Single windows vary from round to round, so compare the per-round figures under the table before trusting a ratio near its target.", s.concurrency, s.ramp, s.window, s.concurrency, s.rounds, benchstack.QuietBusyPercent, benchstack.QuietMaxWait),
		"**Checks.** For every chat run, the run events in the stream must carry seq 1, 2, 3, … with the frame id equal to seq. A skipped number counts as lost, and a repeated or earlier number as duplicated. After the load, `GET /v1/runs/{id}` must return status `succeeded`, a `last_seq` equal to the last seq the client saw (any shortfall also counts as lost), and an `output_text` equal to the text rebuilt from the deltas, honouring `message.reset`. In the throughput rounds the checks run after the load of the round has ended, so they add no load to the window.",
		"**Memory.** Peak RSS is read from VmHWM in /proc/<pid>/status of the serve and worker processes after the last throughput round. The peak is reset through /proc/<pid>/clear_refs when the first chat throughput round starts, so it covers the throughput rounds only. MB means 10^6 bytes.",
		"**What the baseline leaves out.** The chat workflow also starts with five search attributes and a static summary, upserts the run status search attribute twice, gives each activity a summary, registers a query handler and sends activity heartbeats. The API process adds authentication, the database transaction that creates the turn, and the SSE fan-out through Redis. These costs are part of what the ratios measure.",
		"**Limits.** The service, Temporal, PostgreSQL, Redis, the mock upstream and the clients share the machine's cores, so the figures show the cost of the whole stack on one machine, not the capacity of a deployment. The Temporal dev server is not a production cluster.",
	}
	return "- " + strings.Join(notes, "\n- ") + "\n"
}

// machineList lists the date, the commit, the machine, the backends and
// the upstream of a run as markdown list items.
func machineList(started time.Time, revision string, backends []string, tokensPerSecond float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "- Date: %s\n", started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Commit: %s\n", revision)
	fmt.Fprintf(&b, "- CPU: %d cores (%s), %s\n", runtime.NumCPU(), benchdoc.CPUModel(), benchdoc.KernelRelease())
	fmt.Fprintf(&b, "- Go: %s, %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	for _, backend := range backends {
		fmt.Fprintf(&b, "- Backend: %s\n", backend)
	}
	fmt.Fprintf(&b, "- Upstream: the mock upstream in the benchmark process, time to first token 0, %s, 20 to 40 tokens per reply\n", tokensPerSecondText(tokensPerSecond))
	return b.String()
}

func tokensPerSecondText(tps float64) string {
	if tps == 0 {
		return "tokens sent without pacing"
	}
	return fmt.Sprintf("%g tokens per second", tps)
}
