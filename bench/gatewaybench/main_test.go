package main

import (
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
		{name: "metrics defaults", args: []string{"-metrics", "compare"}, wantRate: 2000, wantRounds: 40},
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
