package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/mockupstream"
)

// TestMain lets the test binary act as the load generator process, as the
// gatewaybench command does, so that startProcessLoad can start it.
func TestMain(m *testing.M) {
	if len(os.Args) == 2 && os.Args[1] == loadGeneratorCommand {
		if err := serveLoadGenerator(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "load generator:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestLoadGeneratorWindow(t *testing.T) {
	const (
		rate     = 40
		duration = 500 * time.Millisecond
	)
	mock, err := mockupstream.Start("127.0.0.1:0", mockupstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mock.Close() })

	// Each target requests a different delay from the mock, so a sample
	// that lands in another target's window shows as a latency below the
	// delay of the window it landed in.
	delays := []time.Duration{5 * time.Millisecond, 20 * time.Millisecond, 35 * time.Millisecond}
	var targets []target
	for i, delay := range delays {
		targets = append(targets, target{
			name:   fmt.Sprintf("target %d", i),
			url:    mock.URL() + "/v1/chat/completions",
			header: http.Header{"X-Mock-Tokens": {"4"}, "X-Mock-Ttft-Ms": {fmt.Sprint(delay.Milliseconds())}},
		})
	}

	tests := []struct {
		name         string
		childProcess bool
		stream       bool
		targets      []target
		round        int
	}{
		{"in process, whole response, one target", false, false, targets[2:], 0},
		{"in process, stream, three targets", false, true, targets, 1},
		{"child process, whole response, one target", true, false, targets[2:], 0},
		{"child process, whole response, three targets", true, false, targets, 2},
		{"child process, stream, three targets", true, true, targets, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			load, err := startLoad(t.Context(), tt.childProcess)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := load.close(); err != nil {
					t.Errorf("close load generator: %v", err)
				}
			})

			spec := windowSpec{targets: tt.targets, stream: tt.stream, rate: rate, duration: duration, round: tt.round}
			windows, err := load.run(t.Context(), spec)
			if err != nil {
				t.Fatal(err)
			}
			if len(windows) != len(tt.targets) {
				t.Fatalf("got %d windows, want one per target, %d", len(windows), len(tt.targets))
			}
			for ti, w := range windows {
				checkWindow(t, tt.targets[ti], w, tt.stream, int(rate*duration.Seconds()))
			}
		})
	}
}

// checkWindow checks that w has want samples of tgt, each slower than the
// delay that tgt's X-Mock-Ttft-Ms header requests from the mock.
func checkWindow(t *testing.T, tgt target, w window, stream bool, want int) {
	t.Helper()
	if len(w.samples) != want || len(w.lag) != want {
		t.Fatalf("%s: got %d samples and %d lags, want %d each", tgt.name, len(w.samples), len(w.lag), want)
	}
	delayMS, err := strconv.Atoi(tgt.header.Get("X-Mock-Ttft-Ms"))
	if err != nil {
		t.Fatalf("%s: X-Mock-Ttft-Ms: %v", tgt.name, err)
	}
	delay := time.Duration(delayMS) * time.Millisecond

	for i, s := range w.samples {
		if s.failed {
			t.Fatalf("%s: sample %d failed", tgt.name, i)
		}
		if s.latency < delay {
			t.Errorf("%s: sample %d: latency %s is below the mock's delay %s for this target", tgt.name, i, s.latency, delay)
		}
		if stream && (s.firstChunk < delay || s.firstChunk > s.latency) {
			t.Errorf("%s: sample %d: first chunk at %s, want from %s to the latency %s", tgt.name, i, s.firstChunk, delay, s.latency)
		}
		if !stream && s.firstChunk != 0 {
			t.Errorf("%s: sample %d: first chunk %s for a whole response, want 0", tgt.name, i, s.firstChunk)
		}
		if s.overheadMS != -1 {
			t.Errorf("%s: sample %d: overhead %v without the gateway's header, want -1", tgt.name, i, s.overheadMS)
		}
	}
}

func TestInterleavedScheduleOrder(t *testing.T) {
	tests := []struct {
		name                          string
		targetCount, perTarget, round int
		want                          []int
	}{
		{"one target", 1, 3, 2, []int{0, 0, 0}},
		{"three targets, round 0", 3, 2, 0, []int{0, 1, 2, 2, 1, 0}},
		{"three targets, round 1", 3, 4, 1, []int{1, 2, 0, 1, 2, 0, 0, 2, 1, 0, 2, 1}},
		{"three targets, round 5", 3, 2, 5, []int{2, 0, 1, 1, 0, 2}},
		{"odd cycle count", 3, 3, 0, []int{0, 1, 2, 2, 1, 0, 2, 1, 0}},
		{"single cycle runs reversed", 3, 1, 0, []int{2, 1, 0}},
		{"two targets", 2, 3, 1, []int{1, 0, 0, 1, 0, 1}},
		{"no arrivals", 3, 0, 0, []int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := interleavedSchedule(tt.targetCount, tt.perTarget, tt.round)
			if !slices.Equal(got, tt.want) {
				t.Errorf("interleavedSchedule(%d, %d, %d) = %v, want %v", tt.targetCount, tt.perTarget, tt.round, got, tt.want)
			}
		})
	}
}

// TestInterleavedScheduleBalance checks the schedule's properties at the
// benchmark's own size, 500 requests per second for 10 s to three targets.
func TestInterleavedScheduleBalance(t *testing.T) {
	const targetCount, perTarget = 3, 5000
	for round := range 2 * targetCount {
		t.Run(fmt.Sprintf("round %d", round), func(t *testing.T) {
			slots := interleavedSchedule(targetCount, perTarget, round)
			if len(slots) != targetCount*perTarget {
				t.Fatalf("got %d slots, want %d", len(slots), targetCount*perTarget)
			}

			counts := make([]int, targetCount)
			for _, target := range slots {
				counts[target]++
			}
			for target, count := range counts {
				if count != perTarget {
					t.Errorf("target %d: %d arrivals, want %d", target, count, perTarget)
				}
			}

			// Each cycle has one slot per target, so the targets' arrivals
			// span the same time.
			for cycle := range perTarget {
				seen := make([]bool, targetCount)
				for _, target := range slots[cycle*targetCount : (cycle+1)*targetCount] {
					seen[target] = true
				}
				if slices.Contains(seen, false) {
					t.Fatalf("cycle %d is %v, want each target once", cycle, slots[cycle*targetCount:(cycle+1)*targetCount])
				}
			}

			if first := slots[0]; first != round%targetCount {
				t.Errorf("first slot goes to target %d, want %d for round %d", first, round%targetCount, round)
			}

			// predecessors[b][a] counts the slots of target b right after
			// a slot of target a.
			predecessors := make([][]int, targetCount)
			for i := range predecessors {
				predecessors[i] = make([]int, targetCount)
			}
			for i := 1; i < len(slots); i++ {
				predecessors[slots[i]][slots[i-1]]++
			}
			for target, before := range predecessors {
				var others []int
				for other, count := range before {
					if other != target {
						others = append(others, count)
					}
				}
				if spread := slices.Max(others) - slices.Min(others); spread > 1 {
					t.Errorf("target %d follows the other targets %v times, want counts within 1 of each other", target, others)
				}
			}
		})
	}
}

func TestServeLoadGeneratorInvalidRequest(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		wantErr string
	}{
		{"not JSON", "{\n", "decode window request"},
		{"zero rate", `{"targets":[{"url":"http://127.0.0.1:1/"}],"rate":0,"duration":1000000}` + "\n", "invalid window request"},
		{"no duration", `{"targets":[{"url":"http://127.0.0.1:1/"}],"rate":10}` + "\n", "invalid window request"},
		{"no targets", `{"targets":[],"rate":10,"duration":1000000}` + "\n", "invalid window request"},
		{"old single-target shape", `{"url":"http://127.0.0.1:1/","rate":10,"duration":1000000}` + "\n", "invalid window request"},
		{"negative round", `{"targets":[{"url":"http://127.0.0.1:1/"}],"rate":10,"duration":1000000,"round":-1}` + "\n", "invalid window request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := serveLoadGenerator(t.Context(), strings.NewReader(tt.input), &out)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("serveLoadGenerator error = %v, want one containing %q", err, tt.wantErr)
			}
			if out.Len() != 0 {
				t.Errorf("wrote %q for an invalid request, want nothing", out.String())
			}
		})
	}
}

func TestServeLoadGeneratorEmptyInput(t *testing.T) {
	var out bytes.Buffer
	if err := serveLoadGenerator(t.Context(), strings.NewReader(""), &out); err != nil {
		t.Fatalf("serveLoadGenerator on empty input: %v", err)
	}
	if out.Len() != 0 {
		t.Errorf("wrote %q without a request, want nothing", out.String())
	}
}
