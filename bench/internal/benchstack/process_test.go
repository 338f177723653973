package benchstack

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func TestMarkerWriterSplitMarker(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   bool
	}{
		{"marker in one write", []string{"x HTTP API listening y"}, true},
		{"marker split over two writes", []string{"level=INFO msg=\"HTTP A", "PI listening\""}, true},
		{"marker split over three writes", []string{"HTTP", " API lis", "tening"}, true},
		{"no marker", []string{"HTTP API", " stopped"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			found := make(chan struct{})
			w := &markerWriter{dst: &out, marker: []byte("HTTP API listening"), found: found}
			for _, text := range tt.writes {
				if _, err := w.Write([]byte(text)); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case <-found:
				if !tt.want {
					t.Error("marker reported, want none")
				}
			default:
				if tt.want {
					t.Error("marker not reported")
				}
			}
			if out.String() != strings.Join(tt.writes, "") {
				t.Errorf("output = %q, want every write copied", out.String())
			}
		})
	}
}

func TestReadProcStatSelf(t *testing.T) {
	stat, err := ReadProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if stat.PPID != os.Getppid() {
		t.Errorf("PPID = %d, want %d", stat.PPID, os.Getppid())
	}
	if stat.Comm == "" {
		t.Error("Comm is empty")
	}
}

func TestChildReadyAndStop(t *testing.T) {
	dir := t.TempDir()
	c, err := StartChild("sleeper", "/bin/sh", []string{"-c", "echo sleeper ready; exec sleep 30"}, nil, dir, "sleeper ready")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}

	started := time.Now()
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if elapsed := time.Since(started); elapsed > 5*time.Second {
		t.Errorf("Stop took %s, want the child to end at SIGTERM", elapsed)
	}
	raw, err := os.ReadFile(c.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), "sleeper ready") {
		t.Errorf("log %s = %q, want the child's output", c.LogPath, raw)
	}
}

func TestChildExitsBeforeReady(t *testing.T) {
	c, err := StartChild("quitter", "/bin/sh", []string{"-c", "exit 3"}, nil, t.TempDir(), "never printed")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = c.WaitReady(ctx)
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") {
		t.Errorf("WaitReady = %v, want an error saying the child exited", err)
	}
}
