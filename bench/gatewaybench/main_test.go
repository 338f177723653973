package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseSettingsModes(t *testing.T) {
	tests := []struct {
		name           string
		args           []string
		wantRate       int
		wantRounds     int
		wantInterleave bool
		wantErr        string
	}{
		{name: "overhead defaults", args: nil, wantRate: 500, wantRounds: 3, wantInterleave: true},
		{name: "overhead sequential", args: []string{"-interleave=false"}, wantRate: 500, wantRounds: 3, wantInterleave: false},
		{name: "metrics defaults", args: []string{"-metrics", "compare"}, wantRate: 2000, wantRounds: 80, wantInterleave: false},
		{name: "metrics with explicit rate", args: []string{"-metrics", "compare", "-rate", "800", "-rounds", "2"}, wantRate: 800, wantRounds: 2, wantInterleave: false},
		{name: "metrics with interleave off", args: []string{"-metrics", "compare", "-interleave=false"}, wantRate: 2000, wantRounds: 80, wantInterleave: false},
		{name: "metrics with interleave on", args: []string{"-metrics", "compare", "-interleave"}, wantErr: "-interleave applies only"},
		{name: "unknown metrics mode", args: []string{"-metrics", "on"}, wantErr: "-metrics must be"},
		{name: "flush interval above half the window", args: []string{"-metrics", "compare", "-window", "10s", "-flush-interval", "6s"}, wantErr: "-flush-interval"},
		{name: "flush interval above half the default window", args: []string{"-metrics", "compare", "-flush-interval", "2s"}, wantErr: "-flush-interval"},
		{name: "flush interval below 1s", args: []string{"-metrics", "compare", "-flush-interval", "500ms"}, wantErr: "-flush-interval"},
		{name: "negative rate", args: []string{"-rate", "-5"}, wantErr: "-rate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := parseSettings(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.rate != tt.wantRate {
				t.Errorf("rate = %d, want %d", s.rate, tt.wantRate)
			}
			if s.rounds != tt.wantRounds {
				t.Errorf("rounds = %d, want %d", s.rounds, tt.wantRounds)
			}
			if s.interleave != tt.wantInterleave {
				t.Errorf("interleave = %t, want %t", s.interleave, tt.wantInterleave)
			}
		})
	}
}

func TestSentRate(t *testing.T) {
	tests := []struct {
		name string
		lag  []time.Duration
		want float64
	}{
		{"on schedule", make([]time.Duration, 100), 100},
		// 100 requests whose last one left 1s late span 2s.
		{"last request 1s late", append(make([]time.Duration, 99), time.Second), 50},
		{"no requests", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (metricsWindow{lag: tt.lag}).sentRate(100); got != tt.want {
				t.Errorf("sentRate = %g, want %g", got, tt.want)
			}
		})
	}
}

// syntheticRound returns a round whose windows have the given other-process
// load and n samples each, the slowest of which takes tail.
func syntheticRound(otherOn, otherOff float64, n int, tailOn, tailOff time.Duration) map[string]metricsWindow {
	window := func(other float64, tail time.Duration) metricsWindow {
		samples := make([]sample, n)
		for i := range samples {
			samples[i] = sample{latency: 20 * time.Millisecond}
		}
		samples[n-1].latency = tail
		return metricsWindow{samples: samples, otherCores: other}
	}
	return map[string]metricsWindow{metricsOn: window(otherOn, tailOn), metricsOff: window(otherOff, tailOff)}
}

func TestQuietRoundsDecideRatio(t *testing.T) {
	r := &metricsResults{settings: settings{maxOtherCores: 0.2}}
	// Ten quiet rounds, where the gateway with metrics has the slower
	// tail, and two loaded rounds, where the gateway without has it.
	for range minQuietRounds {
		r.rounds = append(r.rounds, syntheticRound(0.1, 0.05, 50, 30*time.Millisecond, 25*time.Millisecond))
	}
	r.rounds = append(r.rounds, syntheticRound(0.1, 1.2, 50, 30*time.Millisecond, 900*time.Millisecond))
	r.rounds = append(r.rounds, syntheticRound(math.NaN(), 0.1, 50, 30*time.Millisecond, 900*time.Millisecond))

	if got := len(r.quietRounds()); got != minQuietRounds {
		t.Errorf("quiet rounds = %d, want %d", got, minQuietRounds)
	}
	if got := r.p99Ratio(); math.Abs(got-1.2) > 1e-9 {
		t.Errorf("p99 ratio = %g, want 1.2 from the quiet rounds alone", got)
	}
	if missed := r.missedTargets(); len(missed) == 0 || !strings.Contains(missed[0], "p99") {
		t.Errorf("missed targets = %v, want the p99", missed)
	}

	r.rounds = r.rounds[1:]
	if got := r.p99Ratio(); !math.IsNaN(got) {
		t.Errorf("p99 ratio from %d quiet rounds = %g, want NaN", minQuietRounds-1, got)
	}
}

func TestRoundSummaryListsOutliers(t *testing.T) {
	r := &metricsResults{settings: settings{maxOtherCores: 0.2, rate: 100}}
	for i := range maxListedRounds + 3 {
		r.rounds = append(r.rounds, syntheticRound(0.1, 0.1, 50, time.Duration(30+i)*time.Millisecond, 30*time.Millisecond))
	}
	summary := r.roundSummary()
	if !strings.Contains(summary, "highest ratios") {
		t.Fatalf("summary of %d rounds lists no outliers:\n%s", len(r.rounds), summary)
	}
	if got := strings.Count(summary, "\n| "); got != 2+2*outlierRounds {
		t.Errorf("table lines = %d, want a header, a rule and %d rounds", got, 2*outlierRounds)
	}
	// Round 15 has the slowest tail with metrics, so it comes first.
	if !strings.Contains(summary, "| --- |\n| 15 | ") {
		t.Errorf("the round with the highest ratio is not listed first:\n%s", summary)
	}
}

// overheadRound returns a round in which every request to each target
// takes the given latency, so the round's p50s are these latencies.
func overheadRound(direct, proxy, gateway time.Duration) map[string][]sample {
	samples := func(latency time.Duration) []sample {
		return []sample{{latency: latency, firstChunk: latency}, {latency: latency, firstChunk: latency}, {latency: latency, firstChunk: latency}}
	}
	return map[string][]sample{"direct": samples(direct), "proxy": samples(proxy), "gateway": samples(gateway)}
}

func TestMedianRoundRatio(t *testing.T) {
	const ms = time.Millisecond
	// adds returns a round whose proxy adds proxy and whose gateway adds
	// gateway to a direct p50 of 20 ms.
	adds := func(proxy, gateway time.Duration) map[string][]sample {
		return overheadRound(20*ms, 20*ms+proxy, 20*ms+gateway)
	}
	tests := []struct {
		name   string
		rounds []map[string][]sample
		want   float64
		render string
	}{
		{"odd count", []map[string][]sample{adds(ms/10, ms/10), adds(ms/10, 3*ms/10), adds(ms/10, 2*ms/10)}, 2, "2.00×"},
		{"even count averages the middle two", []map[string][]sample{adds(ms/10, ms/10), adds(ms/10, 4*ms/10), adds(ms/10, 2*ms/10), adds(ms/10, 3*ms/10)}, 2.5, "2.50×"},
		{"round without proxy cost ranks highest", []map[string][]sample{adds(0, ms/10), adds(ms/10, ms/10), adds(ms/10, 3*ms/10)}, 3, "3.00×"},
		{"mostly without proxy cost", []map[string][]sample{adds(-ms/20, ms/10), adds(0, ms/10), adds(ms/10, ms/10)}, math.Inf(1), "undefined"},
		{"gateway faster than direct", []map[string][]sample{adds(ms/10, -ms/10)}, -1, "-1.00×"},
		{"no rounds", nil, math.NaN(), "undefined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, firstChunk := range []bool{false, true} {
				got := medianRoundRatio(tt.rounds, firstChunk)
				same := got == tt.want || (math.IsNaN(got) && math.IsNaN(tt.want)) || math.Abs(got-tt.want) < 1e-9
				if !same {
					t.Errorf("firstChunk %t: median ratio = %g, want %g", firstChunk, got, tt.want)
				}
				if rendered := formatRatio(got); rendered != tt.render {
					t.Errorf("firstChunk %t: rendered %q, want %q", firstChunk, rendered, tt.render)
				}
			}
		})
	}
}

func TestDetailsListRoundRatios(t *testing.T) {
	const ms = time.Millisecond
	rounds := []map[string][]sample{
		overheadRound(20*ms, 20*ms+ms/10, 20*ms+ms/10),
		overheadRound(20*ms, 20*ms+ms/10, 20*ms+3*ms/10),
		overheadRound(20*ms, 20*ms, 20*ms+ms/10),
	}
	pooled := map[string][]sample{}
	for _, round := range rounds {
		for name, samples := range round {
			pooled[name] = append(pooled[name], samples...)
		}
	}
	tests := []struct {
		name   string
		stream bool
		want   []string
	}{
		{"whole response", false, []string{
			"Round 1, p50 whole response: direct 20.000 ms, proxy adds 0.100 ms, gateway adds 0.100 ms, ratio 1.00×.",
			"Round 3, p50 whole response: direct 20.000 ms, proxy adds 0.000 ms, gateway adds 0.100 ms, ratio undefined.",
			"Median of the 3 per-round p50 ratios (gateway adds ÷ proxy adds): whole response 3.00×.",
		}},
		{"stream", true, []string{
			"Round 2, p50 first chunk: direct 20.000 ms, proxy adds 0.100 ms, gateway adds 0.300 ms, ratio 3.00×;",
			"Median of the 3 per-round p50 ratios (gateway adds ÷ proxy adds): first chunk 3.00×; through [DONE] 3.00×.",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &results{kinds: []kindResult{{stream: tt.stream, samples: pooled, rounds: rounds}}}
			details := r.details()
			for _, line := range tt.want {
				if !strings.Contains(details, line) {
					t.Errorf("details lack %q:\n%s", line, details)
				}
			}
		})
	}
}

func TestSectionDescribesSchedule(t *testing.T) {
	tests := []struct {
		name       string
		interleave bool
		want       []string
		notWant    string
	}{
		{"interleaved", true, []string{"500 requests per second to each target (1500 in all), interleaved in one 10s window per round", "1500 evenly spaced arrivals per second", "reverse order"}, "one window per target"},
		{"sequential", false, []string{"3 rounds of 10s windows per request kind, one window per target (`-interleave=false`)", "rounds rotate the order of the three targets"}, "interleaved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &results{settings: settings{rate: 500, rounds: 3, window: 10 * time.Second, interleave: tt.interleave, loadProcess: true}}
			section := r.section()
			for _, want := range tt.want {
				if !strings.Contains(section, want) {
					t.Errorf("section lacks %q:\n%s", want, section)
				}
			}
			if strings.Contains(section, tt.notWant) {
				t.Errorf("section contains %q, which belongs to the other mode:\n%s", tt.notWant, section)
			}
		})
	}
}
