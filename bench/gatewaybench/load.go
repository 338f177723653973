package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/aihigress/aihigress/api"
)

// target is one of the three servers that the benchmark drives.
type target struct {
	name string
	url  string
	// header is sent with every request.
	header http.Header
}

// sample is the outcome of one request.
type sample struct {
	// latency runs from sending the request to reading the end of the body.
	latency time.Duration
	// firstChunk runs from sending the request to reading the first SSE
	// data line; streams only.
	firstChunk time.Duration
	// overheadMS is the gateway's X-Aihigress-Overhead-Ms, or -1.
	overheadMS float64
	failed     bool
}

// window is the samples of one target in one fixed-rate window.
type window struct {
	samples []sample
	// lag is how late each request started against its schedule, which
	// shows whether the load generator kept up.
	lag []time.Duration
}

// windowSpec describes one measurement window. All of its targets share
// the window, each at rate.
type windowSpec struct {
	targets []target
	stream  bool
	// rate is the requests per second sent to each target.
	rate     int
	duration time.Duration
	// round picks the order of the targets in the schedule, as
	// interleavedSchedule describes.
	round int
}

// requestBody returns the chat completion body that every target gets.
func requestBody(stream bool) []byte {
	return fmt.Appendf(nil, `{"model":%q,"messages":[{"role":"user","content":"Measure the gateway overhead please"}],"stream":%t}`, benchModel, stream)
}

// interleavedSchedule returns, for each arrival slot of a window, the index
// of the target that the slot's request goes to. The window has
// targetCount*perTarget evenly spaced slots in cycles of targetCount slots,
// and each cycle has one slot per target. So every target gets perTarget
// arrivals, its j-th arrival is in cycle j, and all targets span the same
// time: a change in the machine's speed during the window reaches them
// alike.
//
// The first half of the cycles takes the targets in the order rotated by
// round, and the second half in the reverse of that order. In one fixed
// cyclic order each target would always follow the same neighbor, for
// example the direct target always just after a gateway request, whose
// extra CPU work then lands on it alone. Rotating a cyclic order does not
// change who follows whom, but reversing it does: each target follows the
// target before it in the order for half the window and the target after
// it for the other half. The rotation by round only changes which target
// starts the window and each cycle.
func interleavedSchedule(targetCount, perTarget, round int) []int {
	order := make([]int, targetCount)
	for i := range order {
		order[i] = (round + i) % targetCount
	}

	slots := make([]int, 0, targetCount*perTarget)
	for cycle := range perTarget {
		for position := range targetCount {
			if cycle < perTarget/2 {
				slots = append(slots, order[position])
			} else {
				slots = append(slots, order[targetCount-1-position])
			}
		}
	}
	return slots
}

// runWindow sends spec.rate requests per second to each target of spec for
// spec.duration, with the arrivals of all targets interleaved on one
// fixed-rate schedule (see interleavedSchedule). Each request runs in its
// own goroutine, so that a slow response does not delay the next request
// (an open loop). It returns one window per target, in the order of
// spec.targets, when every response has ended.
func runWindow(ctx context.Context, client *http.Client, spec windowSpec) []window {
	targetCount := len(spec.targets)
	perTarget := int(float64(spec.rate) * spec.duration.Seconds())
	slots := interleavedSchedule(targetCount, perTarget, spec.round)
	arrivalRate := int64(spec.rate) * int64(targetCount)
	body := requestBody(spec.stream)

	windows := make([]window, targetCount)
	for i := range windows {
		windows[i] = window{samples: make([]sample, perTarget), lag: make([]time.Duration, perTarget)}
	}
	sent := make([]int, targetCount)

	var wg sync.WaitGroup
	start := time.Now()
	for slot, targetIndex := range slots {
		// The offset is computed from the slot number and not summed from
		// a rounded interval, so that the schedule does not drift.
		due := start.Add(time.Duration(int64(slot) * int64(time.Second) / arrivalRate))
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		if ctx.Err() != nil {
			break
		}
		t, samples, i := spec.targets[targetIndex], windows[targetIndex].samples, sent[targetIndex]
		windows[targetIndex].lag[i] = time.Since(due)
		sent[targetIndex]++
		wg.Go(func() {
			samples[i] = send(ctx, client, t, body, spec.stream)
		})
	}
	wg.Wait()

	for i := range windows {
		windows[i].samples = windows[i].samples[:sent[i]]
		windows[i].lag = windows[i].lag[:sent[i]]
	}
	return windows
}

// send makes one request and reads its whole response.
func send(ctx context.Context, client *http.Client, t target, body []byte, stream bool) sample {
	result := sample{overheadMS: -1}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		result.failed = true
		return result
	}
	req.Header = t.header.Clone()
	req.Header.Set("Content-Type", "application/json")

	began := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		result.failed = true
		return result
	}
	defer resp.Body.Close()

	if stream {
		reader := bufio.NewReaderSize(resp.Body, 4096)
		for {
			line, err := reader.ReadSlice('\n')
			if bytes.HasPrefix(line, []byte("data: ")) && result.firstChunk == 0 {
				result.firstChunk = time.Since(began)
			}
			if bytes.Equal(bytes.TrimSpace(line), []byte("data: [DONE]")) {
				break
			}
			if err != nil {
				result.failed = true
				if os.Getenv("GWBENCH_DEBUG") != "" {
					fmt.Fprintf(os.Stderr, "DEBUG %s status %d: %v; last line %q\n", t.name, resp.StatusCode, err, line)
				}
				break
			}
		}
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		result.failed = true
	}
	result.latency = time.Since(began)

	if resp.StatusCode != http.StatusOK {
		result.failed = true
	}
	if value := resp.Header.Get(api.OverheadHeader); value != "" {
		if overhead, err := strconv.ParseFloat(value, 64); err == nil {
			result.overheadMS = overhead
		}
	}
	return result
}

// newLoadClient returns an HTTP client with enough idle connections for the
// requests that overlap at the benchmark's rate.
func newLoadClient() *http.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = 2048
	transport.MaxIdleConnsPerHost = 1024
	transport.DisableCompression = true
	return &http.Client{Transport: transport, Timeout: time.Minute}
}
