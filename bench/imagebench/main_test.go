package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	historypb "go.temporal.io/api/history/v1"
	sdkpb "go.temporal.io/api/sdk/v1"
)

func TestParseSettings(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "defaults", args: nil},
		{name: "no tuned stack", args: []string{"-tuned-config", ""}},
		{name: "zero rounds", args: []string{"-rounds", "0"}, wantErr: "-rounds"},
		{name: "negative latency", args: []string{"-latency", "-1s"}, wantErr: "-latency"},
		{name: "tiny image", args: []string{"-image-bytes", "10"}, wantErr: "-image-bytes"},
		{name: "n does not divide", args: []string{"-memory-images", "15", "-memory-n", "10"}, wantErr: "-memory-n"},
		{name: "n too large", args: []string{"-memory-images", "20", "-memory-n", "20"}, wantErr: "-memory-n"},
		{name: "unknown format", args: []string{"-memory-format", "png"}, wantErr: "-memory-format"},
		{name: "config without value", args: []string{"-tuned-config", "history.x"}, wantErr: "KEY=VALUE"},
		{name: "variant stack", args: []string{"-variant-env", "IMAGE_WORKER_IN_API=true"}},
		{name: "variant without value", args: []string{"-variant-env", "IMAGE_WORKER_IN_API"}, wantErr: "-variant-env"},
		{name: "extra argument", args: []string{"now"}, wantErr: "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseSettings(tt.args)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("parseSettings(%q) error = %v", tt.args, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("parseSettings(%q) error = %v, want one about %s", tt.args, err, tt.wantErr)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	values := []time.Duration{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	tests := []struct {
		p    float64
		want time.Duration
	}{
		{p: 50, want: 5},
		{p: 90, want: 9},
		{p: 99, want: 10},
		{p: 100, want: 10},
		{p: 1, want: 1},
	}
	for _, tt := range tests {
		if got := percentile(values, tt.p); got != tt.want {
			t.Errorf("percentile(p%v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(nil) = %v, want 0", got)
	}
}

func TestReadGCTrace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "worker.log")
	log := "ignored before the offset\n" +
		"gc 1 @0.012s 2%: 0.015+0.5+0.003 ms clock, 0.03+0.1/0.2/0.3+0.006 ms cpu, 4->4->1 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P\n" +
		"time=2026 level=INFO msg=\"image attempt succeeded\"\n" +
		"gc 2 @9.1s 3%: 0.1+5+0.01 ms clock, 0.2+1/2/3+0.02 ms cpu, 396->396->313 MB, 397 MB goal, 0 MB stacks, 0 MB globals, 2 P\n"
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := readGCTrace(path, int64(len("ignored before the offset\n")))
	if err != nil {
		t.Fatal(err)
	}
	want := gcSummary{collections: 2, maxHeapAtStart: 396 << 20, maxLiveAfterwards: 313 << 20}
	if got != want {
		t.Errorf("readGCTrace = %+v, want %+v", got, want)
	}
}

func TestCountFilesSkipsTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	nested := filepath.Join(dir, "aihigress", "images", "2026")
	if err := os.MkdirAll(nested, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a.png", "b.png", ".tmp-123"} {
		if err := os.WriteFile(filepath.Join(nested, name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := countFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got != 2 {
		t.Errorf("countFiles = %d, want 2", got)
	}
}

// testReport is a report with made-up figures: the direct path's excess is
// 10 ms, ours is 40 ms, and the worker grew by twice the bytes in flight.
func testReport(t *testing.T) *report {
	t.Helper()
	s, err := parseSettings(nil)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 1, 2, 3, 5, 0, 0, time.UTC)
	samples := func(excess time.Duration) []sample {
		var out []sample
		for i := range 10 {
			total := s.latency + excess
			sent := base.Add(time.Duration(i) * time.Second)
			out = append(out, sample{
				total: total, generate: total - time.Millisecond, readBack: time.Millisecond,
				prompt: fmt.Sprintf("imagebench round %d", i), sent: sent, responded: sent.Add(total - time.Millisecond),
			})
		}
		return out
	}
	// Each workflow of the default stack starts 8 ms after its POST, and
	// its activity 12 ms after that.
	runs := map[string]runTimes{}
	for i := range 10 {
		started := base.Add(time.Duration(i)*time.Second + 8*time.Millisecond)
		runs[fmt.Sprintf("imagebench round %d", i)] = runTimes{started: started, activityStarted: started.Add(12 * time.Millisecond)}
	}
	return &report{
		settings: s,
		command:  "go run ./bench/imagebench",
		started:  time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC),
		latency: &latencyResult{
			paths:    []string{"direct", "ours (default)", "ours (tuned)", "ours (variant)"},
			samples:  [][]sample{samples(10 * time.Millisecond), samples(40 * time.Millisecond), samples(12 * time.Millisecond), samples(30 * time.Millisecond)},
			failures: []int{0, 0, 0, 0},
		},
		stacks: []stackInfo{
			{name: "default"},
			{name: "tuned", config: []string{"history.transferProcessorMaxPollRPS=1000"}},
			{name: "variant", env: []string{"IMAGE_WORKER_IN_API=true"}},
		},
		timelines: []stackTimeline{{stack: "default", timeline: &timeline{
			workflows: 1, steps: []string{"workflow completed"},
			offsets:       map[string][]time.Duration{"workflow completed": {230 * time.Millisecond}},
			durations:     []time.Duration{230 * time.Millisecond},
			workflowTasks: []int{2}, activityTasks: []int{1}, localActivities: []int{2},
			dispatchWaits: []time.Duration{5 * time.Millisecond}, workflowTaskTimes: []time.Duration{15 * time.Millisecond},
			activityTimes: []time.Duration{215 * time.Millisecond},
			runs:          runs,
		}}},
		memory: &memoryResult{
			requests: 100, imagesPerRequest: 1, imageBytes: 4 << 20, responseFormat: "b64_json", peakInFlight: 50,
			workerGC: gcSummary{collections: 3, maxHeapAtStart: 400 << 20, maxLiveAfterwards: 60 * (4 << 20)},
			processes: []processMemory{
				{name: "serve", baseline: 50e6, peak: 50e6, hwmReset: true},
				{name: "worker", baseline: 50e6, peak: 50e6 + 2*50*(4<<20), hwmReset: true},
			},
		},
	}
}

func TestReportVerdicts(t *testing.T) {
	r := testReport(t)
	if got := r.latencyRatio(1, 50); got != 4 {
		t.Errorf("latency ratio = %v, want 4", got)
	}
	if got := r.memory.ratio(); got != 2 {
		t.Errorf("memory ratio = %v, want 2", got)
	}
	missed := r.missedTargets()
	if len(missed) != 1 || missed[0] != "latency" {
		t.Errorf("missed targets = %v, want [latency]", missed)
	}

	section := r.section()
	for _, want := range []string{
		"## Image generation",
		"| Time beyond the mock's latency, p50, default dev server | 40.0 ms | 10.0 ms | 4.0× | ≤ 1.5× | miss |",
		"| Time beyond the mock's latency, p50, tuned dev server | 12.0 ms | 10.0 ms | 1.2× | none | – |",
		"at most 50 in flight) | 419 MB | 210 MB in flight | 2.00× | < 3× | pass |",
		"our path adds 30.0 ms at p50 to the direct path's 10.0 ms, and the target allows 15.0 ms in all.",
		"| Workflow run, start event to close event, which comes after the response | 230.0 ms |",
		"| POST sent to the workflow's start event: the API's checks and run row, and the start call until the server recorded the start | 8.0 ms |",
		"| Start event to GenerateImages started: the first workflow task and the activity's dispatch | 12.0 ms |",
		"minus the direct path's POST until the decoded image (209.0 ms), so negative when our part is shorter: the upstream call, run reads and writes, storage write, events, the run's finalization, the wake on its terminal event and the response | 10.0 ms |",
		"from the 10 of 10 samples whose workflow the prompt in its summary identifies",
		"At p50 our path spends 8.0 ms before the workflow's start event, on the API's checks",
		"it spends 10.0 ms more than the direct path's POST until the decoded image.",
		"| Time beyond the mock's latency, p50, default dev server with `IMAGE_WORKER_IN_API=true` | 30.0 ms | 10.0 ms | 3.0× | none | – |",
		"#### Where our time goes, default dev server (`system.enableActivityEagerExecution=true`)",
		"The worker's RSS grew by 2.00× the bytes in flight, against the 2.33×",
		"Its Go heap held at most 252 MB of live data after any of the phase's 3 collections (1.20× the bytes in flight)",
	} {
		if !strings.Contains(section, want) {
			t.Errorf("section lacks %q:\n%s", want, section)
		}
	}
}

func TestSummaryPrompt(t *testing.T) {
	tests := []struct {
		name    string
		summary string
		want    string
	}{
		{"run summary", `"image bench-image-latency: imagebench round 7"`, "imagebench round 7"},
		{"prompt with a colon", `"image m: a: b"`, "a: b"},
		{"no separator", `"image m"`, ""},
		{"not a string", `42`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			event := &historypb.HistoryEvent{UserMetadata: &sdkpb.UserMetadata{Summary: &commonpb.Payload{Data: []byte(tt.summary)}}}
			if got := summaryPrompt(event); got != tt.want {
				t.Errorf("summaryPrompt(%s) = %q, want %q", tt.summary, got, tt.want)
			}
		})
	}
}
