package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseSettingsModes(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantRate   int
		wantRounds int
		wantErr    string
	}{
		{name: "overhead defaults", args: nil, wantRate: 500, wantRounds: 3},
		{name: "metrics defaults", args: []string{"-metrics", "compare"}, wantRate: 2000, wantRounds: 80},
		{name: "metrics with explicit rate", args: []string{"-metrics", "compare", "-rate", "800", "-rounds", "2"}, wantRate: 800, wantRounds: 2},
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
