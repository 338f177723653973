package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
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
		timeToFirstToken = 5 * time.Millisecond
		rate             = 40
		duration         = 500 * time.Millisecond
	)
	mock, err := mockupstream.Start("127.0.0.1:0", mockupstream.Options{TimeToFirstToken: timeToFirstToken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mock.Close() })
	tgt := target{name: "direct", url: mock.URL() + "/v1/chat/completions", header: http.Header{"X-Mock-Tokens": {"4"}}}

	tests := []struct {
		name         string
		childProcess bool
		stream       bool
	}{
		{"in process, whole response", false, false},
		{"in process, stream", false, true},
		{"child process, whole response", true, false},
		{"child process, stream", true, true},
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

			w, err := load.run(t.Context(), tgt, tt.stream, rate, duration)
			if err != nil {
				t.Fatal(err)
			}
			if want := int(rate * duration.Seconds()); len(w.samples) != want || len(w.lag) != want {
				t.Fatalf("got %d samples and %d lags, want %d each", len(w.samples), len(w.lag), want)
			}
			for i, s := range w.samples {
				if s.failed {
					t.Fatalf("sample %d failed", i)
				}
				if s.latency < timeToFirstToken {
					t.Errorf("sample %d: latency %s is below the mock's delay %s", i, s.latency, timeToFirstToken)
				}
				if tt.stream && (s.firstChunk < timeToFirstToken || s.firstChunk > s.latency) {
					t.Errorf("sample %d: first chunk at %s, want from %s to the latency %s", i, s.firstChunk, timeToFirstToken, s.latency)
				}
				if !tt.stream && s.firstChunk != 0 {
					t.Errorf("sample %d: first chunk %s for a whole response, want 0", i, s.firstChunk)
				}
				if s.overheadMS != -1 {
					t.Errorf("sample %d: overhead %v without the gateway's header, want -1", i, s.overheadMS)
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
		{"zero rate", `{"url":"http://127.0.0.1:1/","rate":0,"duration":1000000}` + "\n", "invalid window request"},
		{"no duration", `{"url":"http://127.0.0.1:1/","rate":10}` + "\n", "invalid window request"},
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
