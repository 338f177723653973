package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"time"
)

// loadGeneratorCommand as the only argument makes the command a load
// generator process: it reads window requests from stdin as JSON values and
// writes each window's samples to stdout as one JSON value.
const loadGeneratorCommand = "load-generator"

// loadGenerator sends the requests of measurement windows.
type loadGenerator interface {
	// run measures one window and returns one window of samples per
	// target, in the order of spec.targets.
	run(ctx context.Context, spec windowSpec) ([]window, error)
	close() error
	// pid is the process that sends the requests.
	pid() int
}

// localLoad sends requests from this process, whose Go scheduler the mock
// upstream, the proxy and the gateway also use.
type localLoad struct {
	client *http.Client
}

func (l localLoad) run(ctx context.Context, spec windowSpec) ([]window, error) {
	return runWindow(ctx, l.client, spec), nil
}

func (l localLoad) pid() int { return os.Getpid() }

func (l localLoad) close() error {
	l.client.CloseIdleConnections()
	return nil
}

// windowRequest is the request for one window that the load generator
// process reads.
type windowRequest struct {
	Targets []wireTarget `json:"targets"`
	Stream  bool         `json:"stream"`
	// Rate is the requests per second to each target.
	Rate     int           `json:"rate"`
	Duration time.Duration `json:"duration"`
	Round    int           `json:"round"`
}

// wireTarget is a target as the load generator process reads it.
type wireTarget struct {
	// Name only labels debug output.
	Name   string      `json:"name"`
	URL    string      `json:"url"`
	Header http.Header `json:"header"`
}

// windowReply is one window measured by the load generator process, with
// one entry per requested target, in the request's order.
type windowReply struct {
	Targets []wireWindow `json:"targets"`
}

// wireWindow is the samples of one target in a windowReply.
type wireWindow struct {
	Samples []wireSample    `json:"samples"`
	Lag     []time.Duration `json:"lag"`
}

// wireSample is a sample as the load generator process sends it.
type wireSample struct {
	Latency    time.Duration `json:"latency"`
	FirstChunk time.Duration `json:"first_chunk,omitempty"`
	OverheadMS float64       `json:"overhead_ms"`
	Failed     bool          `json:"failed,omitempty"`
}

// processLoad sends requests from a child process that runs this command as
// a load generator.
type processLoad struct {
	ctx      context.Context
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	requests *json.Encoder
	replies  *json.Decoder
}

// startProcessLoad starts this command's executable as a load generator
// process. ctx ending kills it.
func startProcessLoad(ctx context.Context) (*processLoad, error) {
	executable, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the executable to start the load generator process: %w", err)
	}
	cmd := exec.CommandContext(ctx, executable, loadGeneratorCommand)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("connect to the load generator process: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("connect to the load generator process: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the load generator process: %w", err)
	}

	return &processLoad{
		ctx:      ctx,
		cmd:      cmd,
		stdin:    stdin,
		requests: json.NewEncoder(stdin),
		replies:  json.NewDecoder(bufio.NewReader(stdout)),
	}, nil
}

func (l *processLoad) run(ctx context.Context, spec windowSpec) ([]window, error) {
	request := windowRequest{Stream: spec.stream, Rate: spec.rate, Duration: spec.duration, Round: spec.round}
	for _, t := range spec.targets {
		request.Targets = append(request.Targets, wireTarget{Name: t.name, URL: t.url, Header: t.header})
	}
	if err := l.requests.Encode(request); err != nil {
		return nil, fmt.Errorf("send window request to the load generator process: %w", err)
	}

	var reply windowReply
	if err := l.replies.Decode(&reply); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("read window reply from the load generator process: %w", err)
	}
	if len(reply.Targets) != len(spec.targets) {
		return nil, fmt.Errorf("invalid window reply from the load generator process: %d targets, want %d", len(reply.Targets), len(spec.targets))
	}

	windows := make([]window, len(reply.Targets))
	for i, wire := range reply.Targets {
		windows[i] = window{samples: make([]sample, len(wire.Samples)), lag: wire.Lag}
		for j, s := range wire.Samples {
			windows[i].samples[j] = sample{latency: s.Latency, firstChunk: s.FirstChunk, overheadMS: s.OverheadMS, failed: s.Failed}
		}
	}
	return windows, nil
}

func (l *processLoad) pid() int { return l.cmd.Process.Pid }

// close ends the load generator process by closing its stdin and waits for
// it. A process that the end of the start context killed is no error.
func (l *processLoad) close() error {
	closeErr := l.stdin.Close()
	waitErr := l.cmd.Wait()
	if l.ctx.Err() != nil {
		return nil
	}
	if waitErr != nil {
		return fmt.Errorf("load generator process: %w", waitErr)
	}
	return closeErr
}

// serveLoadGenerator runs one window for each request read from in and
// writes its reply to out, until in ends. It is the whole work of a load
// generator process.
func serveLoadGenerator(ctx context.Context, in io.Reader, out io.Writer) error {
	client := newLoadClient()
	defer client.CloseIdleConnections()

	requests := json.NewDecoder(in)
	replies := json.NewEncoder(out)
	for {
		var req windowRequest
		err := requests.Decode(&req)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("decode window request: %w", err)
		}
		if len(req.Targets) == 0 || req.Rate < 1 || req.Duration <= 0 || req.Round < 0 {
			return fmt.Errorf("invalid window request: %d targets, rate %d, duration %s, round %d (want at least 1 target, a rate of at least 1, a positive duration and a round of at least 0)",
				len(req.Targets), req.Rate, req.Duration, req.Round)
		}

		spec := windowSpec{stream: req.Stream, rate: req.Rate, duration: req.Duration, round: req.Round}
		for _, t := range req.Targets {
			spec.targets = append(spec.targets, target{name: t.Name, url: t.URL, header: t.Header})
		}
		windows := runWindow(ctx, client, spec)

		reply := windowReply{Targets: make([]wireWindow, len(windows))}
		for i, w := range windows {
			reply.Targets[i] = wireWindow{Samples: make([]wireSample, len(w.samples)), Lag: w.lag}
			for j, s := range w.samples {
				reply.Targets[i].Samples[j] = wireSample{Latency: s.latency, FirstChunk: s.firstChunk, OverheadMS: s.overheadMS, Failed: s.failed}
			}
		}
		if err := replies.Encode(reply); err != nil {
			return fmt.Errorf("write window reply: %w", err)
		}
	}
}
