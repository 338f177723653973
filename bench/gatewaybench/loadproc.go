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
	run(ctx context.Context, t target, stream bool, rate int, duration time.Duration) (window, error)
	close() error
	// pid is the process that sends the requests.
	pid() int
}

// localLoad sends requests from this process, whose Go scheduler the mock
// upstream, the proxy and the gateway also use.
type localLoad struct {
	client *http.Client
}

func (l localLoad) run(ctx context.Context, t target, stream bool, rate int, duration time.Duration) (window, error) {
	return runWindow(ctx, l.client, t, stream, rate, duration), nil
}

func (l localLoad) pid() int { return os.Getpid() }

func (l localLoad) close() error {
	l.client.CloseIdleConnections()
	return nil
}

// windowRequest is the request for one window that the load generator
// process reads.
type windowRequest struct {
	URL      string        `json:"url"`
	Header   http.Header   `json:"header"`
	Stream   bool          `json:"stream"`
	Rate     int           `json:"rate"`
	Duration time.Duration `json:"duration"`
}

// windowReply is one window measured by the load generator process.
type windowReply struct {
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

func (l *processLoad) run(ctx context.Context, t target, stream bool, rate int, duration time.Duration) (window, error) {
	request := windowRequest{URL: t.url, Header: t.header, Stream: stream, Rate: rate, Duration: duration}
	if err := l.requests.Encode(request); err != nil {
		return window{}, fmt.Errorf("send window request to the load generator process: %w", err)
	}

	var reply windowReply
	if err := l.replies.Decode(&reply); err != nil {
		if ctx.Err() != nil {
			return window{}, ctx.Err()
		}
		return window{}, fmt.Errorf("read window reply from the load generator process: %w", err)
	}
	w := window{samples: make([]sample, len(reply.Samples)), lag: reply.Lag}
	for i, s := range reply.Samples {
		w.samples[i] = sample{latency: s.Latency, firstChunk: s.FirstChunk, overheadMS: s.OverheadMS, failed: s.Failed}
	}
	return w, nil
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
		if req.Rate < 1 || req.Duration <= 0 {
			return fmt.Errorf("invalid window request: rate %d, duration %s", req.Rate, req.Duration)
		}

		w := runWindow(ctx, client, target{url: req.URL, header: req.Header}, req.Stream, req.Rate, req.Duration)
		reply := windowReply{Samples: make([]wireSample, len(w.samples)), Lag: w.lag}
		for i, s := range w.samples {
			reply.Samples[i] = wireSample{Latency: s.latency, FirstChunk: s.firstChunk, OverheadMS: s.overheadMS, Failed: s.failed}
		}
		if err := replies.Encode(reply); err != nil {
			return fmt.Errorf("write window reply: %w", err)
		}
	}
}
