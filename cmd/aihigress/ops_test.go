package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/aihigress/aihigress/internal/config"
)

// TestRunsSearchChecksFlags checks the flags of `runs search` before it
// connects to Temporal, which this test's empty configuration cannot reach.
func TestRunsSearchChecksFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"help", []string{"search", "-h"}, ""},
		{"unknown status", []string{"search", "-status", "bogus"}, "--status"},
		{"unknown kind", []string{"search", "-kind", "video"}, "--kind"},
		{"zero limit", []string{"search", "-limit", "0"}, "--limit"},
		{"no subcommand", nil, "usage"},
	}
	logger := slog.New(slog.DiscardHandler)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := runRuns(context.Background(), config.Config{}, tt.args, io.Discard, logger)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("runRuns(%q) = %v, want nil", tt.args, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("runRuns(%q) = %v, want an error naming %s", tt.args, err, tt.wantErr)
			}
		})
	}
}
