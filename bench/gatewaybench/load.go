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

// window is the samples of one fixed-rate window of one target.
type window struct {
	samples []sample
	// lag is how late each request started against its schedule, which
	// shows whether the load generator kept up.
	lag []time.Duration
}

// requestBody returns the chat completion body that every target gets.
func requestBody(stream bool) []byte {
	return fmt.Appendf(nil, `{"model":%q,"messages":[{"role":"user","content":"Measure the gateway overhead please"}],"stream":%t}`, benchModel, stream)
}

// runWindow sends requests to t at a fixed arrival rate for duration, each
// in its own goroutine, so that a slow response does not delay the next
// request (an open loop). It returns when every response has ended.
func runWindow(ctx context.Context, client *http.Client, t target, stream bool, rate int, duration time.Duration) window {
	count := int(float64(rate) * duration.Seconds())
	interval := time.Second / time.Duration(rate)
	body := requestBody(stream)
	w := window{samples: make([]sample, count), lag: make([]time.Duration, count)}

	var wg sync.WaitGroup
	start := time.Now()
	for i := range count {
		due := start.Add(time.Duration(i) * interval)
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		if ctx.Err() != nil {
			w.samples, w.lag = w.samples[:i], w.lag[:i]
			break
		}
		w.lag[i] = time.Since(due)
		wg.Go(func() {
			w.samples[i] = send(ctx, client, t, body, stream)
		})
	}
	wg.Wait()
	return w
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
