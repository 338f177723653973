package main

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/aihigress/aihigress/internal/benchdoc"
)

// Targets, checked on the p50 rows.
const (
	// maxAddedRatio caps the gateway's added p50 over the proxy's.
	maxAddedRatio = 2.0
	// maxAddedP50 caps the gateway's added p50.
	maxAddedP50 = time.Millisecond
)

const sectionHeading = "## Gateway overhead"

// results is everything one benchmark run measured.
type results struct {
	settings settings
	runInfo

	kinds []kindResult

	requestLogWritten int64
	requestLogDropped int64
}

// kindResult holds the samples of one request kind, pooled over the rounds
// and keyed by target name.
type kindResult struct {
	stream  bool
	samples map[string][]sample
	lag     map[string][]time.Duration
	// rounds has each round's samples by target.
	rounds []map[string][]sample
}

func (k kindResult) name() string {
	if k.stream {
		return "Streaming"
	}
	return "Non-streaming"
}

// figure is one latency row of the table: which duration of the samples
// and which percentile.
type figure struct {
	label      string
	firstChunk bool
	percentile float64
	checked    bool
}

func (k kindResult) figures() []figure {
	if !k.stream {
		return []figure{
			{"whole response, p50", false, 50, true},
			{"whole response, p99", false, 99, false},
		}
	}
	return []figure{
		{"first chunk, p50", true, 50, true},
		{"first chunk, p99", true, 99, false},
		{"through [DONE], p50", false, 50, true},
		{"through [DONE], p99", false, 99, false},
	}
}

// latencies returns the durations of the successful samples.
func latencies(samples []sample, firstChunk bool) []time.Duration {
	out := make([]time.Duration, 0, len(samples))
	for _, s := range samples {
		if s.failed {
			continue
		}
		if firstChunk {
			out = append(out, s.firstChunk)
		} else {
			out = append(out, s.latency)
		}
	}
	return out
}

// percentile returns the nearest-rank percentile p (0 to 100) of samples.
func percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	rank := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(rank, 0)]
}

func percentileFloat(values []float64, p float64) float64 {
	if len(values) == 0 {
		return 0
	}
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	rank := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(rank, 0)]
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond))
}

// row is one computed line of the table.
type row struct {
	kind, label              string
	direct, proxy, gateway   time.Duration
	proxyAdded, gatewayAdded time.Duration
	// ratio is gatewayAdded over proxyAdded, defined when proxyAdded > 0.
	ratio        float64
	ratioDefined bool
	checked      bool
	pass         bool
}

func (r *results) rows() []row {
	var rows []row
	for _, k := range r.kinds {
		for _, f := range k.figures() {
			direct := percentile(latencies(k.samples["direct"], f.firstChunk), f.percentile)
			proxy := percentile(latencies(k.samples["proxy"], f.firstChunk), f.percentile)
			gateway := percentile(latencies(k.samples["gateway"], f.firstChunk), f.percentile)
			line := row{
				kind: k.name(), label: f.label, direct: direct, proxy: proxy, gateway: gateway,
				proxyAdded: proxy - direct, gatewayAdded: gateway - direct, checked: f.checked,
			}
			if line.proxyAdded > 0 {
				line.ratio = float64(line.gatewayAdded) / float64(line.proxyAdded)
				line.ratioDefined = true
			}
			line.pass = line.gatewayAdded <= maxAddedP50 && line.ratioDefined && line.ratio <= maxAddedRatio
			rows = append(rows, line)
		}
	}
	return rows
}

// missedTargets names the checked rows that miss a target.
func (r *results) missedTargets() []string {
	var missed []string
	for _, line := range r.rows() {
		if line.checked && !line.pass {
			missed = append(missed, line.kind+" "+line.label)
		}
	}
	return missed
}

// table renders the results table.
func (r *results) table() string {
	var b strings.Builder
	b.WriteString("| Request | Latency | Direct | Bare proxy | Gateway | Proxy adds | Gateway adds | Gateway ÷ proxy | Target | Result |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, line := range r.rows() {
		ratio := "–"
		if line.ratioDefined {
			ratio = fmt.Sprintf("%.2f×", line.ratio)
		}
		target, result := "none", "–"
		if line.checked {
			target = fmt.Sprintf("gateway adds ≤ %.0f× proxy and ≤ %s", maxAddedRatio, ms(maxAddedP50))
			result = "miss"
			if line.pass {
				result = "pass"
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			line.kind, line.label, ms(line.direct), ms(line.proxy), ms(line.gateway),
			ms(line.proxyAdded), ms(line.gatewayAdded), ratio, target, result)
	}
	return b.String()
}

// details renders the counts, the self-reported overhead and the rounds.
func (r *results) details() string {
	var b strings.Builder
	b.WriteString("\n")
	for _, k := range r.kinds {
		var overhead []float64
		for _, s := range k.samples["gateway"] {
			if !s.failed && s.overheadMS >= 0 {
				overhead = append(overhead, s.overheadMS)
			}
		}
		fmt.Fprintf(&b, "- %s: %s.", k.name(), r.counts(k))
		fmt.Fprintf(&b, " The gateway's own `X-Aihigress-Overhead-Ms` header: p50 %.3f ms, p99 %.3f ms.", percentileFloat(overhead, 50), percentileFloat(overhead, 99))
		var lags []time.Duration
		for _, name := range []string{"direct", "proxy", "gateway"} {
			lags = append(lags, k.lag[name]...)
		}
		fmt.Fprintf(&b, " Requests started late against the fixed schedule by p99 %s, max %s.\n", ms(percentile(lags, 99)), ms(percentile(lags, 100)))
		for i, round := range k.rounds {
			fmt.Fprintf(&b, "  - Round %d, p50", i+1)
			if k.stream {
				fmt.Fprintf(&b, " first chunk: %s;", roundAdded(round, true))
			}
			fmt.Fprintf(&b, " %s: %s.\n", wholeOrDone(k), roundAdded(round, false))
		}
		if len(k.rounds) > 1 {
			fmt.Fprintf(&b, "  - Median of the %d per-round p50 ratios (gateway adds ÷ proxy adds):", len(k.rounds))
			if k.stream {
				fmt.Fprintf(&b, " first chunk %s;", formatRatio(medianRoundRatio(k.rounds, true)))
			}
			fmt.Fprintf(&b, " %s %s.\n", wholeOrDone(k), formatRatio(medianRoundRatio(k.rounds, false)))
		}
	}
	fmt.Fprintf(&b, "- Request log: %d rows written, %d dropped.\n", r.requestLogWritten, r.requestLogDropped)
	return b.String()
}

func wholeOrDone(k kindResult) string {
	if k.stream {
		return "through [DONE]"
	}
	return "whole response"
}

// roundAdded renders one round's direct p50, what the proxy and the
// gateway add to it, and the ratio of the two.
func roundAdded(round map[string][]sample, firstChunk bool) string {
	p50 := func(name string) time.Duration { return percentile(latencies(round[name], firstChunk), 50) }
	direct := p50("direct")
	return fmt.Sprintf("direct %s, proxy adds %s, gateway adds %s, ratio %s",
		ms(direct), ms(p50("proxy")-direct), ms(p50("gateway")-direct), formatRatio(roundRatio(round, firstChunk)))
}

// roundRatio returns the p50 that the gateway adds in one round over the
// p50 that the proxy adds. It is +Inf when the proxy adds nothing or less,
// because then no ratio bounds the gateway's share.
func roundRatio(round map[string][]sample, firstChunk bool) float64 {
	p50 := func(name string) time.Duration { return percentile(latencies(round[name], firstChunk), 50) }
	direct := p50("direct")
	proxyAdded, gatewayAdded := p50("proxy")-direct, p50("gateway")-direct
	if proxyAdded <= 0 {
		return math.Inf(1)
	}
	return float64(gatewayAdded) / float64(proxyAdded)
}

// medianRoundRatio returns the median of the rounds' ratios (see
// roundRatio), the mean of the middle two for an even count. Rounds in
// which the proxy added nothing count as +Inf, so they pull the median up.
func medianRoundRatio(rounds []map[string][]sample, firstChunk bool) float64 {
	if len(rounds) == 0 {
		return math.NaN()
	}
	ratios := make([]float64, len(rounds))
	for i, round := range rounds {
		ratios[i] = roundRatio(round, firstChunk)
	}
	slices.Sort(ratios)
	middle := len(ratios) / 2
	if len(ratios)%2 == 1 {
		return ratios[middle]
	}
	return (ratios[middle-1] + ratios[middle]) / 2
}

// formatRatio renders a ratio, or "undefined" for +Inf and NaN.
func formatRatio(ratio float64) string {
	if math.IsInf(ratio, 0) || math.IsNaN(ratio) {
		return "undefined"
	}
	return fmt.Sprintf("%.2f×", ratio)
}

func (r *results) counts(k kindResult) string {
	var parts []string
	for _, name := range []string{"direct", "proxy", "gateway"} {
		failed := 0
		for _, s := range k.samples[name] {
			if s.failed {
				failed++
			}
		}
		parts = append(parts, fmt.Sprintf("%s %d requests (%d failed)", name, len(k.samples[name]), failed))
	}
	return strings.Join(parts, ", ")
}

func (r *results) sectionName() string { return "gatewaybench" }

// terminal renders the table and the details.
func (r *results) terminal() string {
	return r.table() + r.details()
}

// section renders the "## Gateway overhead" section of docs/benchmarks.md.
func (r *results) section() string {
	s := r.settings
	var b strings.Builder
	b.WriteString(sectionHeading + "\n\n")
	b.WriteString("`bench/gatewaybench` measures the latency that the synchronous gateway (`POST /v1/chat/completions`) adds on top of its upstream, next to what a bare `httputil.ReverseProxy` adds in front of the same upstream. Both figures come from the same run.\n\n")

	b.WriteString("### Command\n\n")
	fmt.Fprintf(&b, "```\n%s\n```\n\n", r.command)
	b.WriteString("By default it needs PostgreSQL and Redis on 127.0.0.1; `-sqlite` and `-embedded-redis` remove that need. It does not need Temporal.\n\n")

	b.WriteString(r.machine(s))

	b.WriteString("### Results\n\n")
	if s.interleave {
		fmt.Fprintf(&b, "%d requests per second to each target (%d in all), interleaved in one %s window per round, %d rounds per request kind.\n\n", s.rate, 3*s.rate, s.window, s.rounds)
	} else {
		fmt.Fprintf(&b, "%d requests per second to each target, %d rounds of %s windows per request kind, one window per target (`-interleave=false`).\n\n", s.rate, s.rounds, s.window)
	}
	b.WriteString(r.table())
	b.WriteString(r.details())

	b.WriteString("\n### Method\n\n")
	notes := []string{
		loadNote(s.loadProcess) + " The proxy is `httputil.ReverseProxy` with `FlushInterval: -1` and a transport with the same idle pool sizes as the gateway's upstream client.",
		"The gateway is `api.Server` as `aihigress serve` builds it. It authenticates API keys through its in-process and Redis cache. It runs " + rateLimitNote(s.rateLimit) + ". It also has the Prometheus middleware, the router with its cooldown mirror, the upstream client and the batched request log writer. Temporal is not started, because the synchronous path does not use it.",
		fmt.Sprintf("Each target gets requests at a fixed arrival rate of %d per second, each in its own goroutine, whether or not earlier responses have ended (an open loop). A request's latency runs from the client sending it to reading the end of the body, or for streams to reading the first `data:` line and the `data: [DONE]` line. Every target gets the same body; the direct and proxy requests carry `X-Mock-Tokens`, and the gateway's provider sends the same header.", s.rate),
		scheduleNote(s),
		"The added latency is the gateway's (or proxy's) percentile minus the direct percentile over all rounds, so it compares distributions, not individual requests. The table checks the ratio of these pooled p50 differences. Each round's line gives the same figures for that round alone, and the median of the per-round ratios follows, where a round in which the proxy added nothing counts as an unbounded ratio.",
		"The gateway sends a stream's response headers as soon as the upstream's headers arrive, before the first event. It may still fail over until the first event, because every candidate responds with a 200 event stream. The bare proxy sends the headers together with the first chunk. The streaming request does not request usage, so the gateway adds `stream_options.include_usage` upstream and drops the extra usage chunk.",
		"`X-Aihigress-Overhead-Ms` is the gateway's own measure: the time from the start of its gateway middleware until the response headers are written, minus upstream waits. It leaves out the HTTP server, the client and the network, which the added latency includes.",
	}
	b.WriteString("- " + strings.Join(notes, "\n- ") + "\n")
	return b.String()
}

// scheduleNote renders the Method note on how the rounds' windows share
// the arrivals among the targets.
func scheduleNote(s settings) string {
	if !s.interleave {
		return "Each round has one window per target, one after another (`-interleave=false`), and rounds rotate the order of the three targets. A warmup window per target and request kind runs before the rounds and is not counted. " +
			"A change in the machine's speed from one window to the next moves one target's figures and not the others'. In earlier sequential runs the direct p50 moved by up to 0.1 ms from round to round, which is as much as the proxy added in some of them."
	}
	return fmt.Sprintf("Each round is one window in which the load generator sends to all three targets at once, from one fixed schedule of %d evenly spaced arrivals per second. The arrivals go in cycles of three, one per target, so each target gets the same number of requests spread over the same time, and a change in the machine's speed during the window reaches all three alike. ", 3*s.rate) +
		"The first half of the window takes the targets in one order and the second half in the reverse order, so that each target follows each of the other two for half the window. This keeps the extra work of a gateway request from always landing on the same neighbor. Rounds rotate the starting target of the order. " +
		"During a window the servers handle three times the rate of one target, so the figures are not comparable one to one with a run with `-interleave=false`, where each window carries one target. " +
		"A warmup window with all three targets per request kind runs before the rounds and is not counted."
}

// loadNote describes where the servers and the load generator run and how
// that shapes the streaming figures.
func loadNote(childProcess bool) string {
	if !childProcess {
		return "The mock upstream, the bare proxy, the gateway and the load generator run in one process (`-load-process=false`) and talk over loopback, so they share the Go runtime, its garbage collector and the machine's cores. " +
			"A client goroutine whose chunk has arrived then often runs only when a server goroutine parks, so a stream's first-chunk figure includes the time the proxy or the gateway takes to relay the rest of the mock's burst of chunks."
	}
	return "The mock upstream, the bare proxy and the gateway run in one process and talk over loopback, so they share the Go runtime, its garbage collector and the machine's cores. " +
		"The load generator is a second process (`gatewaybench load-generator`), so its goroutines do not wait for the Go scheduler of the servers. " +
		"It still shares the two cores with them: a relay that keeps a core busy after it wrote a chunk delays the client's read of that chunk."
}

func rateLimitNote(enabled bool) string {
	if enabled {
		return "the per-key rate limit check (a Redis round trip that reserves up to 60 slots for the next requests, with a limit no request reaches)"
	}
	return "no rate limit check (`-rate-limit=false`)"
}

// machine renders the "### Machine" part of a section.
func (r runInfo) machine(s settings) string {
	var b strings.Builder
	b.WriteString("### Machine\n\n")
	fmt.Fprintf(&b, "- Date: %s\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Commit: %s\n", r.revision)
	fmt.Fprintf(&b, "- CPU: %d cores (%s), %s\n", runtime.NumCPU(), benchdoc.CPUModel(), benchdoc.KernelRelease())
	fmt.Fprintf(&b, "- Load average (1, 5, 15 min): %s before the run, %s after it. Other processes shared the cores during the run.\n", r.loadBefore, r.loadAfter)
	fmt.Fprintf(&b, "- Go: %s, %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	for _, backend := range r.backends {
		fmt.Fprintf(&b, "- Backend: %s\n", backend)
	}
	fmt.Fprintf(&b, "- Upstream: the mock upstream in the benchmark process, %s before the first token, %d tokens per reply, streamed without pacing\n\n", s.upstreamLatency, s.tokens)
	return b.String()
}
