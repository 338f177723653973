package main

import (
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/aihigress/aihigress/internal/benchdoc"
	"github.com/aihigress/aihigress/internal/devenv"
)

// stackTimeline is the workflow timeline of one stack.
type stackTimeline struct {
	stack    string
	timeline *timeline
}

// stackInfo describes one stack for the report.
type stackInfo struct {
	name string
	// config is the dev server's dynamic config beyond devenv's defaults,
	// and env the processes' environment beyond the default stack's.
	config, env []string
}

// label names the stack in the report's tables.
func (s stackInfo) label() string {
	if len(s.env) == 0 {
		return s.name + " dev server"
	}
	return "default dev server with `" + strings.Join(s.env, "`, `") + "`"
}

// settings lists the stack's whole dynamic config and extra environment.
func (s stackInfo) settings() string {
	text := "`" + strings.Join(devenv.DynamicConfig(s.config), "`, `") + "`"
	if len(s.env) > 0 {
		text += "; processes with `" + strings.Join(s.env, "`, `") + "`"
	}
	return text
}

type report struct {
	settings   settings
	command    string
	revision   string
	started    time.Time
	loadBefore string
	loadAfter  string
	backends   []string

	stacks    []stackInfo
	latency   *latencyResult
	timelines []stackTimeline
	memory    *memoryResult
}

// excess returns each sample's total time beyond the mock's latency.
func (r *report) excess(path int) []time.Duration {
	return field(r.latency.samples[path], func(s sample) time.Duration { return s.total - r.settings.latency })
}

// latencyRatio is the ratio of the p50 (or other percentile) excess of
// path to the direct path's, which is path 0.
func (r *report) latencyRatio(path int, p float64) float64 {
	direct := percentile(r.excess(0), p)
	if direct <= 0 {
		return 0
	}
	return float64(percentile(r.excess(path), p)) / float64(direct)
}

// missedTargets returns the targets that the results miss. The latency
// target applies to the default stack, path 1.
func (r *report) missedTargets() []string {
	var missed []string
	if r.latencyRatio(1, 50) > targetLatencyRatio {
		missed = append(missed, "latency")
	}
	if r.memory != nil && r.memory.ratio() >= targetMemoryRatio {
		missed = append(missed, "memory")
	}
	return missed
}

func verdict(pass bool) string {
	if pass {
		return "pass"
	}
	return "miss"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func mb(bytes int64) string { return fmt.Sprintf("%.0f MB", float64(bytes)/1e6) }

func mib(bytes int) string { return fmt.Sprintf("%g MiB", float64(bytes)/(1<<20)) }

func (r *report) section() string {
	var b strings.Builder
	b.WriteString("## Image generation\n\n")
	fmt.Fprintf(&b, "`bench/imagebench` measures the time that AI Higress adds to an image generation, against calling the mock upstream directly and writing the file, and the memory that the service needs while it generates many large images. Targets: our time beyond the mock's fixed latency is at most %.1f× the direct path's at p50, and the peak RSS growth stays below %.0f× the bytes of the images in flight.\n\n", targetLatencyRatio, targetMemoryRatio)

	b.WriteString("### Command\n\n")
	fmt.Fprintf(&b, "```\n%s\n```\n\n", r.command)
	b.WriteString("It needs the Temporal CLI at `TEMPORAL_CLI_PATH` or `./bin/temporal`, and by default PostgreSQL and Redis on 127.0.0.1 (`-sqlite` and `-embedded-redis` remove that need). `-tuned-config ''` skips the second dev server, `-variant-env KEY=VALUE,...` adds a stack whose processes get those variables, and `-memory-images 0` skips the memory phase.\n\n")

	b.WriteString("### Machine\n\n")
	fmt.Fprintf(&b, "- Date: %s\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Commit: %s\n", r.revision)
	fmt.Fprintf(&b, "- CPU: %d cores (%s), %s\n", runtime.NumCPU(), benchdoc.CPUModel(), benchdoc.KernelRelease())
	fmt.Fprintf(&b, "- Go: %s, %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	for _, backend := range r.backends {
		fmt.Fprintf(&b, "- Backend: %s\n", backend)
	}
	b.WriteString("- Storage: `media.Local` (`IMAGE_LOCAL_DIR`) in a temporary folder on the same disk as the direct path's files\n")
	fmt.Fprintf(&b, "- Load average (1, 5, 15 min) before: %s, after: %s. Other processes shared the cores during the run.\n\n", r.loadBefore, r.loadAfter)

	r.writeResults(&b)
	r.writeLatencySteps(&b)
	r.writeTimelines(&b)
	r.writeMemory(&b)
	r.writeMethod(&b)
	return b.String()
}

func (r *report) writeResults(b *strings.Builder) {
	s := r.settings
	b.WriteString("### Results\n\n")
	fmt.Fprintf(b, "Latency: %d rounds after %d warmup rounds, %d client(s), %s PNG images, mock latency %s subtracted from every sample. Each round generates one image on every path.\n\n",
		len(r.latency.samples[0]), s.warmup, s.concurrency, mib(s.imageBytes), s.latency)

	b.WriteString("| Figure | Ours | Direct | Ratio | Target | Result |\n| --- | --- | --- | --- | --- | --- |\n")
	direct := r.excess(0)
	for path := 1; path < len(r.latency.paths); path++ {
		ours := r.excess(path)
		stack := r.stackLabel(strings.TrimSuffix(strings.TrimPrefix(r.latency.paths[path], "ours ("), ")"))
		target, result := "none", "–"
		if path == 1 {
			target = fmt.Sprintf("≤ %.1f×", targetLatencyRatio)
			result = verdict(r.latencyRatio(path, 50) <= targetLatencyRatio)
		}
		fmt.Fprintf(b, "| Time beyond the mock's latency, p50, %s | %s | %s | %.1f× | %s | %s |\n",
			stack, ms(percentile(ours, 50)), ms(percentile(direct, 50)), r.latencyRatio(path, 50), target, result)
		fmt.Fprintf(b, "| Time beyond the mock's latency, p99, %s | %s | %s | %.1f× | none | – |\n",
			stack, ms(percentile(ours, 99)), ms(percentile(direct, 99)), r.latencyRatio(path, 99))
	}

	if m := r.memory; m != nil {
		fmt.Fprintf(b, "| Peak RSS growth, serve + worker, over the bytes of the images in flight (%d images of %s requested at once, at most %d in flight) | %s | %s in flight | %.2f× | < %.0f× | %s |\n",
			m.images(), mib(m.imageBytes), m.peakInFlight, mb(m.totalGrowth()), mb(m.inFlightBytes()), m.ratio(), targetMemoryRatio, verdict(m.ratio() < targetMemoryRatio))
	}
	b.WriteString("\n")

	for i, name := range r.latency.paths {
		if r.latency.failures[i] > 0 {
			fmt.Fprintf(b, "- %s: %d failed samples, left out of the figures.\n", name, r.latency.failures[i])
		}
	}
	if r.latency.firstError != "" {
		fmt.Fprintf(b, "- First failure: %s\n", r.latency.firstError)
	}
	fmt.Fprintf(b, "- The latency rounds took %s.\n", r.latency.duration.Round(time.Second))
	r.writeLatencyNote(b)
	r.writeMemoryNote(b)
	b.WriteString("\n")
}

// writeLatencyNote sums up what our path adds on the default stack, from its
// timeline.
func (r *report) writeLatencyNote(b *strings.Builder) {
	if len(r.timelines) == 0 || r.timelines[0].timeline.workflows == 0 {
		return
	}
	p50 := func(values []time.Duration) time.Duration { return percentile(values, 50) }
	direct, ours := p50(r.excess(0)), p50(r.excess(1))
	verdictText := "meets"
	if r.latencyRatio(1, 50) > targetLatencyRatio {
		verdictText = "misses"
	}
	fmt.Fprintf(b, "- The latency figure %s its target. On the default dev server our path adds %s at p50 to the direct path's %s, and the target allows %s in all.",
		verdictText, ms(ours-direct), ms(direct), ms(time.Duration(float64(direct)*targetLatencyRatio)))
	seg := r.segments(r.timelines[0].stack, r.timelines[0].timeline)
	if len(seg.beforeStart) > 0 {
		fmt.Fprintf(b, " At p50 our path spends %s before the workflow's start event, on the API's checks, the run row and the start call. It spends %s from the start event to the start of GenerateImages, on the first workflow task and the activity's dispatch.",
			ms(p50(seg.beforeStart)), ms(p50(seg.toActivity)))
		// The activity decodes the upstream's response faster than the
		// direct path does, so this part can be shorter than the direct
		// path's POST.
		rest := p50(seg.activityToResponse) - seg.directGenerate
		comparison := "more"
		if rest < 0 {
			rest, comparison = -rest, "less"
		}
		fmt.Fprintf(b, " From there to the response, with the upstream call, run writes, storage, events, the run's finalization, the wake on its terminal event and the response, it spends %s %s than the direct path's POST until the decoded image.",
			ms(rest), comparison)
	}
	b.WriteString(" The breakdown below has the details.\n")
}

// runSegments are per-run parts of our path on one stack, from the samples
// joined with their workflows by prompt.
type runSegments struct {
	// beforeStart is from sending the POST to the workflow's start event,
	// toActivity from the start event to GenerateImages' started event,
	// and activityToResponse from there to reading the POST's response.
	beforeStart, toActivity, activityToResponse []time.Duration
	// directGenerate is the direct path's p50 POST until the decoded
	// image.
	directGenerate time.Duration
}

func (r *report) segments(stack string, t *timeline) runSegments {
	seg := runSegments{directGenerate: percentile(field(r.latency.samples[0], func(s sample) time.Duration { return s.generate }), 50)}
	path := r.pathIndex("ours (" + stack + ")")
	if path < 0 {
		return seg
	}
	for _, s := range r.latency.samples[path] {
		times, ok := t.runs[s.prompt]
		if !ok || times.activityStarted.IsZero() {
			continue
		}
		seg.beforeStart = append(seg.beforeStart, times.started.Sub(s.sent))
		seg.toActivity = append(seg.toActivity, times.activityStarted.Sub(times.started))
		seg.activityToResponse = append(seg.activityToResponse, s.responded.Sub(times.activityStarted))
	}
	return seg
}

// writeMemoryNote compares the worker's growth and its largest live heap
// per byte in flight with what the provider client needs for one base64
// response: the body, 4/3 of the image, and the decoded image.
func (r *report) writeMemoryNote(b *strings.Builder) {
	m := r.memory
	if m == nil || m.inFlightBytes() == 0 {
		return
	}
	const bodyAndImage = 4.0/3 + 1
	for _, p := range m.processes {
		if p.name != "worker" {
			continue
		}
		perImage := float64(p.growth()) / float64(m.inFlightBytes())
		fmt.Fprintf(b, "- The worker's RSS grew by %.2f× the bytes in flight, against the %.2f× that one upstream response's base64 body and its decoded image take together.", perImage, bodyAndImage)
	}
	if gc := m.workerGC; gc.collections > 0 {
		live := float64(gc.maxLiveAfterwards) / float64(m.inFlightBytes())
		fmt.Fprintf(b, " Its Go heap held at most %s of live data after any of the phase's %d collections (%.2f× the bytes in flight) and reached %s when a collection started. The rest of the RSS is garbage awaiting the next collection, which GOGC=100 lets grow to the size of the live heap, and memory that the runtime has not yet returned to the OS.",
			mb(gc.maxLiveAfterwards), gc.collections, live, mb(gc.maxHeapAtStart))
	}
	b.WriteString("\n")
}

func (r *report) writeLatencySteps(b *strings.Builder) {
	b.WriteString("#### Steps of each path\n\n")
	b.WriteString("Medians over the latency samples, with the mock's latency still included in the first step.\n\n")
	b.WriteString("| Path | Total p50 | Total p99 | POST until response read, p50 | File write and fsync, p50 | Read back, p50 |\n| --- | --- | --- | --- | --- | --- |\n")
	for i, name := range r.latency.paths {
		samples := r.latency.samples[i]
		store := "inside the POST"
		if i == 0 {
			store = ms(percentile(field(samples, func(s sample) time.Duration { return s.store }), 50))
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", name,
			ms(percentile(field(samples, func(s sample) time.Duration { return s.total }), 50)),
			ms(percentile(field(samples, func(s sample) time.Duration { return s.total }), 99)),
			ms(percentile(field(samples, func(s sample) time.Duration { return s.generate }), 50)),
			store,
			ms(percentile(field(samples, func(s sample) time.Duration { return s.readBack }), 50)))
	}
	b.WriteString("\n")
}

func (r *report) writeTimelines(b *strings.Builder) {
	for _, st := range r.timelines {
		t := st.timeline
		if t.workflows == 0 {
			continue
		}
		info := r.stackInfo(st.stack)
		fmt.Fprintf(b, "#### Where our time goes, %s (%s)\n\n", info.label(), info.settings())
		fmt.Fprintf(b, "From the histories of the %d image workflows of the latency rounds and the samples of the same rounds. Medians per run: workflow tasks %d, activity tasks %d, local activities %d. Medians of parts do not add up exactly to the median of the whole.\n\n",
			t.workflows, medianCount(t.workflowTasks), medianCount(t.activityTasks), medianCount(t.localActivities))
		r.writeBreakdown(b, st.stack, t)
		b.WriteString("The workflow's events, as offsets from its start event:\n\n")
		b.WriteString("| Event | p50 since start | p99 since start |\n| --- | --- | --- |\n")
		for _, step := range t.orderedSteps() {
			fmt.Fprintf(b, "| %s | %s | %s |\n", step, ms(percentile(t.offsets[step], 50)), ms(percentile(t.offsets[step], 99)))
		}
		b.WriteString("\n")
	}
}

// writeBreakdown splits the p50 time of our path on stack into its parts.
func (r *report) writeBreakdown(b *strings.Builder, stack string, t *timeline) {
	path := r.pathIndex("ours (" + stack + ")")
	if path < 0 {
		return
	}
	p50 := func(values []time.Duration) time.Duration { return percentile(values, 50) }
	ours := r.latency.samples[path]
	direct := r.latency.samples[0]
	seg := r.segments(stack, t)

	type row struct {
		part  string
		value string
	}
	var rows []row
	if len(seg.beforeStart) > 0 {
		rows = append(rows,
			row{"POST sent to the workflow's start event: the API's checks and run row, and the start call until the server recorded the start", ms(p50(seg.beforeStart))},
			row{"Start event to GenerateImages started: the first workflow task and the activity's dispatch", ms(p50(seg.toActivity))},
			row{"GenerateImages started to the POST's response read, minus the direct path's POST until the decoded image (" + ms(seg.directGenerate) + "), so negative when our part is shorter: the upstream call, run reads and writes, storage write, events, the run's finalization, the wake on its terminal event and the response", ms(p50(seg.activityToResponse) - seg.directGenerate)},
		)
	}
	rows = append(rows,
		row{"Read back through `/media/images`, against " + ms(p50(field(direct, func(s sample) time.Duration { return s.readBack }))) + " through `http.ServeFile`", ms(p50(field(ours, func(s sample) time.Duration { return s.readBack })))},
		row{fmt.Sprintf("Waits from a task's scheduled event to its started event, summed over the run's %d workflow and %d activity tasks", medianCount(t.workflowTasks), medianCount(t.activityTasks)), ms(p50(t.dispatchWaits))},
		row{"Workflow tasks from started to completed, summed, with their local activities", ms(p50(t.workflowTaskTimes))},
		row{"GenerateImages activity, started to completed, with the upstream call and the run's finalization", ms(p50(t.activityTimes))},
		row{"Workflow run, start event to close event, which comes after the response", ms(p50(t.durations))},
	)
	fmt.Fprintf(b, "The first rows are medians of each run's parts, from the %d of %d samples whose workflow the prompt in its summary identifies. The other rows come from the histories alone.\n\n", len(seg.beforeStart), len(ours))
	b.WriteString("| Part of our path | p50 |\n| --- | --- |\n")
	for _, row := range rows {
		fmt.Fprintf(b, "| %s | %s |\n", row.part, row.value)
	}
	b.WriteString("\n")
}

// stackInfo returns the description of the stack called name.
func (r *report) stackInfo(name string) stackInfo {
	for _, st := range r.stacks {
		if st.name == name {
			return st
		}
	}
	return stackInfo{name: name}
}

func (r *report) stackLabel(name string) string { return r.stackInfo(name).label() }

func (r *report) pathIndex(name string) int {
	for i, p := range r.latency.paths {
		if p == name {
			return i
		}
	}
	return -1
}

func (r *report) writeMemory(b *strings.Builder) {
	m := r.memory
	if m == nil {
		return
	}
	b.WriteString("#### Memory\n\n")
	fmt.Fprintf(b, "%d requests of n=%d sent at once to the default stack, %d images of %s (%s) in all, with response_format `%s`. The mock served at most %d image requests at the same time, at most %d images (%s) were in flight at one sample, and the phase took %s.\n\n",
		m.requests, m.imagesPerRequest, m.images(), mib(m.imageBytes), mb(m.requestedBytes()), m.responseFormat, m.peakUpstream, m.peakInFlight, mb(m.inFlightBytes()), m.duration.Round(100*time.Millisecond))
	b.WriteString("| Process | RSS before | Peak RSS | Growth | Growth ÷ bytes in flight | Growth ÷ bytes requested |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, p := range m.processes {
		note := ""
		if !p.hwmReset {
			note = " (VmHWM not reset, peak from samples only)"
		}
		fmt.Fprintf(b, "| %s%s | %s | %s | %s | %.2f× | %.2f× |\n", p.name, note, mb(p.baseline), mb(p.peak), mb(p.growth()),
			float64(p.growth())/float64(max(m.inFlightBytes(), 1)), float64(p.growth())/float64(m.requestedBytes()))
	}
	fmt.Fprintf(b, "| both | | | %s | %.2f× | %.2f× |\n\n", mb(m.totalGrowth()), m.ratio(), float64(m.totalGrowth())/float64(m.requestedBytes()))
}

func (r *report) writeMethod(b *strings.Builder) {
	s := r.settings
	b.WriteString("### Method\n\n")
	notes := []string{
		"The tool builds `./cmd/aihigress` with `go build` and runs `aihigress serve` and `aihigress worker` as child processes, configured only through environment variables, with `IMAGE_LOCAL_DIR` selecting the local media storage and a `PROVIDERS_FILE` that points two logical models at the mock upstream. The mock runs in the benchmark process and sends real PNGs of the requested size as `b64_json`; a provider header (`X-Mock-Image-Bytes`) sets the size. Every stack has a fresh database, Redis key prefix and media folder. All traffic stays on loopback.",
		fmt.Sprintf("**Direct path.** POST `{\"n\": 1, \"response_format\": \"b64_json\"}` to the mock's `/v1/images/generations` and decode the JSON and the base64 image. Write the image to a new file and fsync it. Then GET it from an `http.ServeFile` server in the benchmark process and read the %s body. This is the least that any service must do to generate an image and serve it back from local storage.", mib(s.imageBytes)),
		"**Our path.** POST `{\"n\": 1, \"response_format\": \"url\"}` with an API key to `/v1/images/generations`, which waits for the run, then GET the signed `/media/images` link of the response and read the body. The API process checks the API key and the rate limit, plans the run's candidates, and starts the workflow on Temporal while it stores the run row. The worker decodes the mock's base64 with the lanes' decoder, which lifts the base64 text out of the JSON, while the direct path uses encoding/json (see \"Image response decoding\"). It then waits for the run's terminal event on Redis or the workflow result, whichever comes first, and writes the response. The workflow runs the GenerateImages activity, which calls the mock, stores the image with fsync, records the run's events and finalizes the run, and then the FinalizeRun local activity, which finds the run finalized. The GET checks the link's signature and serves the file.",
		fmt.Sprintf("**Latency figure.** Each sample's time from sending the POST to reading the last byte back, minus the mock's fixed %s. The ratio divides our percentile by the direct path's. The paths alternate within each round and the order turns every round, so load from other processes falls on all paths alike.", s.latency),
		"**Dev servers.** Every dev server runs with eager activity execution (`" + devenv.EagerActivityConfig + "`), as the ones of `aihigress dev` and of the tests do, and otherwise with Temporal's default dynamic config. A worker that schedules an activity then receives its task in the response to the workflow task. The tuned one also raises the history transfer queue's read rate (`history.transferProcessorMaxPollRPS`, 20 per shard by default). On a one-shard dev server that limit can delay a new workflow or activity task by up to 50 ms when tasks follow each other closely. Both are settings of the Temporal cluster, not of AI Higress, so the tuned rows show the service's own cost on a cluster that does not throttle a single workflow's tasks. With `-variant-env`, a further stack runs on a dev server like the default one, and its serve and worker processes get the listed environment variables, such as `IMAGE_WORKER_IN_API=true`.",
		"**Timeline.** After the latency rounds the tool reads the histories of that phase's image workflows through the Temporal client. Event times come from the dev server's clock, which is the machine's clock, as the samples' times do. Every round has its own prompt, and the workflow's summary contains it, which joins each sample of our path with its workflow.",
		fmt.Sprintf("**Memory.** Before the phase the tool reads VmRSS of the serve and worker processes and resets their VmHWM through /proc/<pid>/clear_refs. It then sends all requests at once and decodes and checks every image of the responses. Peak RSS is the larger of VmHWM after the phase and the highest VmRSS sampled every %s. An image is in flight from the moment its upstream request reaches the mock until its file appears in the media folder, which the local storage does by a rename after the fsync. Every sample counts the requests that reached the mock minus the files in the folder, and the figure divides by the highest count, which is stricter than dividing by all images requested. Both processes run with `GODEBUG=gctrace=1`, and the tool reads the worker's heap sizes at each collection of the phase from its log. MB means 10^6 bytes.", rssSampleInterval),
		"**Limits.** The service, Temporal, PostgreSQL, Redis, the mock and the clients share the machine's cores, and other work ran on the machine at the same time. A Temporal dev server is not a production cluster.",
	}
	b.WriteString("- " + strings.Join(notes, "\n- ") + "\n")
}
