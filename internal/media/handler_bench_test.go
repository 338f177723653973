package media

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	// benchWorkers is the number of clients per server, each with its own
	// keep-alive connection.
	benchWorkers = 4
	// benchRoundRequests is the number of requests that one round sends to
	// each server.
	benchRoundRequests = 32
)

// BenchmarkMediaVersusServeFile compares the throughput of the media
// handler over Local storage with a bare http.ServeFile of the same 1 MiB
// PNG file. Both servers run in this process on 127.0.0.1 and get
// benchWorkers keep-alive clients each. Every iteration is one round that
// sends benchRoundRequests requests to each server, one server after the
// other, and the order flips each round so that noise from other processes
// falls on both. The reported ratio is media MB/s divided by ServeFile MB/s.
func BenchmarkMediaVersusServeFile(b *testing.B) {
	local, dir := newTestLocal(b)
	signer := newTestSigner(b, time.Hour)
	key := "aihigress/images/2026/12/05/6f1d1c8e-5a0b-4c1e-9a55-2f0b8d3e7c41.png"
	// 512×512 random RGBA pixels barely compress, so the PNG is a little
	// over 1 MiB.
	data := testPNG(b, 512, 512, 40)
	putObject(b, local, key, data)
	path := filepath.Join(dir, filepath.FromSlash(key))

	mediaServer := httptest.NewServer(NewHandler(local, signer, nil))
	defer mediaServer.Close()
	bareServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, path)
	}))
	defer bareServer.Close()

	media := newBenchTarget(mediaServer.URL+signer.Path(key, time.Now()), len(data))
	bare := newBenchTarget(bareServer.URL+"/image.png", len(data))
	for _, target := range []*benchTarget{media, bare} {
		if err := target.check(data); err != nil {
			b.Fatal(err)
		}
	}

	b.ResetTimer()
	round := 0
	for b.Loop() {
		if round%2 == 0 {
			media.runRound(b)
			bare.runRound(b)
		} else {
			bare.runRound(b)
			media.runRound(b)
		}
		round++
	}
	b.StopTimer()

	mediaMBps, bareMBps := media.megabytesPerSecond(), bare.megabytesPerSecond()
	b.ReportMetric(mediaMBps, "media-MB/s")
	b.ReportMetric(bareMBps, "servefile-MB/s")
	b.ReportMetric(media.requestsPerSecond(), "media-req/s")
	b.ReportMetric(bare.requestsPerSecond(), "servefile-req/s")
	b.ReportMetric(mediaMBps/bareMBps, "ratio")
	b.ReportMetric(float64(len(data)), "object-bytes")
}

// benchTarget is one server with its clients and the time spent on it.
type benchTarget struct {
	url      string
	size     int
	client   *http.Client
	buffers  [benchWorkers][]byte
	elapsed  time.Duration
	requests int
}

func newBenchTarget(url string, size int) *benchTarget {
	transport := &http.Transport{
		MaxIdleConns:        benchWorkers,
		MaxIdleConnsPerHost: benchWorkers,
		DisableCompression:  true,
	}
	target := &benchTarget{url: url, size: size, client: &http.Client{Transport: transport}}
	for i := range target.buffers {
		// Reading 256 KiB at a time keeps the clients' share of the CPU
		// small, so the servers' differences show in the ratio.
		target.buffers[i] = make([]byte, 256<<10)
	}
	return target
}

// check fetches the object once and compares it with data.
func (t *benchTarget) check(data []byte) error {
	resp, err := t.client.Get(t.url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
		return fmt.Errorf("GET %s: status %d and %d bytes, want 200 and the %d stored bytes", t.url, resp.StatusCode, len(body), len(data))
	}
	return nil
}

// runRound sends benchRoundRequests requests from benchWorkers goroutines
// and adds the wall time to the target's total.
func (t *benchTarget) runRound(b *testing.B) {
	var next atomic.Int64
	var workers sync.WaitGroup
	start := time.Now()
	for worker := range benchWorkers {
		buffer := t.buffers[worker]
		workers.Go(func() {
			for next.Add(1) <= benchRoundRequests {
				if err := t.fetch(buffer); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	workers.Wait()
	t.elapsed += time.Since(start)
	t.requests += benchRoundRequests
}

func (t *benchTarget) fetch(buffer []byte) error {
	resp, err := t.client.Get(t.url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	received := 0
	for {
		n, err := resp.Body.Read(buffer)
		received += n
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("GET %s: read body: %w", t.url, err)
		}
	}
	if resp.StatusCode != http.StatusOK || received != t.size {
		return fmt.Errorf("GET %s: status %d and %d bytes, want 200 and %d", t.url, resp.StatusCode, received, t.size)
	}
	return nil
}

func (t *benchTarget) megabytesPerSecond() float64 {
	return float64(t.requests) * float64(t.size) / 1e6 / t.elapsed.Seconds()
}

func (t *benchTarget) requestsPerSecond() float64 {
	return float64(t.requests) / t.elapsed.Seconds()
}
