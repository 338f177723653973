package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aihigress/aihigress/bench/internal/benchstack"
)

// rssSampleInterval is how often the memory phase reads VmRSS, as a check
// on VmHWM.
const rssSampleInterval = 10 * time.Millisecond

// processMemory is the memory of one process over the memory phase, in
// bytes.
type processMemory struct {
	name     string
	baseline int64 // VmRSS when the phase started
	peak     int64 // the larger of VmHWM after the phase and the highest sampled VmRSS
	// hwmReset reports whether VmHWM was reset at the start of the phase.
	// Without the reset, peak may come from before the phase.
	hwmReset bool
}

func (p processMemory) growth() int64 { return max(p.peak-p.baseline, 0) }

// memoryResult is the outcome of the memory phase.
type memoryResult struct {
	requests, imagesPerRequest, imageBytes int
	responseFormat                         string
	processes                              []processMemory
	// peakUpstream is the most image requests that the mock served at once.
	peakUpstream int64
	// peakInFlight is the most images that were between the start of
	// their upstream request and their file in the media folder at one
	// sample.
	peakInFlight int64
	duration     time.Duration
	// workerGC is the worker's garbage collections during the phase.
	workerGC gcSummary
}

// gcSummary sums up the runtime's gctrace lines: the count of collections,
// the largest heap when a collection started and the largest live heap
// that a collection left, in bytes.
type gcSummary struct {
	collections       int
	maxHeapAtStart    int64
	maxLiveAfterwards int64
}

// gctraceLine matches the heap sizes of a gctrace line, such as
// "gc 5 @9.1s 2%: ... ms cpu, 396->396->313 MB, 397 MB goal, ...".
var gctraceLine = regexp.MustCompile(`^gc \d+ @.* (\d+)->(\d+)->(\d+) MB, \d+ MB goal`)

// readGCTrace reads the gctrace lines of the log at path from offset on.
func readGCTrace(path string, offset int64) (gcSummary, error) {
	var summary gcSummary
	file, err := os.Open(path)
	if err != nil {
		return summary, err
	}
	defer file.Close()
	if _, err := file.Seek(offset, io.SeekStart); err != nil {
		return summary, err
	}
	scanner := bufio.NewScanner(file)
	scanner.Buffer(make([]byte, 64<<10), 1<<20)
	for scanner.Scan() {
		match := gctraceLine.FindStringSubmatch(scanner.Text())
		if match == nil {
			continue
		}
		atStart, _ := strconv.ParseInt(match[1], 10, 64)
		live, _ := strconv.ParseInt(match[3], 10, 64)
		summary.collections++
		// gctrace's MB is 2^20 bytes.
		summary.maxHeapAtStart = max(summary.maxHeapAtStart, atStart<<20)
		summary.maxLiveAfterwards = max(summary.maxLiveAfterwards, live<<20)
	}
	return summary, scanner.Err()
}

func (m *memoryResult) images() int { return m.requests * m.imagesPerRequest }

// requestedBytes is the size of all images of the phase, which were
// requested at once.
func (m *memoryResult) requestedBytes() int64 { return int64(m.images()) * int64(m.imageBytes) }

// inFlightBytes is the size of the most images that the worker held at one
// sample.
func (m *memoryResult) inFlightBytes() int64 { return m.peakInFlight * int64(m.imageBytes) }

func (m *memoryResult) totalGrowth() int64 {
	var total int64
	for _, p := range m.processes {
		total += p.growth()
	}
	return total
}

// ratio is the peak RSS growth of both processes over the in-flight bytes.
func (m *memoryResult) ratio() float64 {
	return float64(m.totalGrowth()) / float64(max(m.inFlightBytes(), 1))
}

// measureMemory sends requests concurrent image generations of
// imagesPerRequest images each to the stack, reads every image back in the
// response format, and records the serve and worker processes' RSS.
func measureMemory(ctx context.Context, st *serviceStack, mock *mockServer, httpClient *http.Client, s settings) (*memoryResult, error) {
	result := &memoryResult{
		requests: s.memoryImages / s.memoryPerRequest, imagesPerRequest: s.memoryPerRequest,
		imageBytes: s.memoryImageBytes, responseFormat: s.memoryFormat,
	}
	pids := []struct {
		name string
		pid  int
	}{{"serve", st.serve.PID()}, {"worker", st.worker.PID()}}
	for _, p := range pids {
		rss, err := benchstack.ProcStatus(p.pid, "VmRSS")
		if err != nil {
			return nil, err
		}
		result.processes = append(result.processes, processMemory{name: p.name, baseline: rss, peak: rss, hwmReset: benchstack.ResetPeakRSS(p.pid) == nil})
	}

	logInfo, err := os.Stat(st.worker.LogPath)
	if err != nil {
		return nil, fmt.Errorf("read the worker's log size: %w", err)
	}
	startedBefore := mock.started.Load()
	storedBefore, err := countFiles(st.mediaDir)
	if err != nil {
		return nil, err
	}
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var sampler sync.WaitGroup
	sampler.Go(func() {
		ticker := time.NewTicker(rssSampleInterval)
		defer ticker.Stop()
		for {
			for i, p := range pids {
				if rss, err := benchstack.ProcStatus(p.pid, "VmRSS"); err == nil {
					result.processes[i].peak = max(result.processes[i].peak, rss)
				}
			}
			// The count of stored files is read after the count of
			// started requests, so an image that finishes in between
			// lowers the figure rather than raising it.
			started := (mock.started.Load() - startedBefore) * int64(s.memoryPerRequest)
			if stored, err := countFiles(st.mediaDir); err == nil {
				result.peakInFlight = max(result.peakInFlight, started-int64(stored-storedBefore))
			}
			select {
			case <-sampleCtx.Done():
				return
			case <-ticker.C:
			}
		}
	})

	mock.resetPeak()
	started := time.Now()
	errs := make(chan error, result.requests)
	var clients sync.WaitGroup
	for i := range result.requests {
		clients.Go(func() {
			runCtx, cancel := context.WithTimeout(ctx, s.runTimeout)
			defer cancel()
			errs <- generateForMemory(runCtx, st, httpClient, s, fmt.Sprintf("imagebench memory %d", i))
		})
	}
	clients.Wait()
	result.duration = time.Since(started)
	result.peakUpstream = mock.resetPeak()
	stopSampling()
	sampler.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return nil, fmt.Errorf("memory phase: %w", err)
		}
	}

	for i, p := range pids {
		if hwm, err := benchstack.ProcStatus(p.pid, "VmHWM"); err == nil && result.processes[i].hwmReset {
			result.processes[i].peak = max(result.processes[i].peak, hwm)
		}
	}
	result.workerGC, err = readGCTrace(st.worker.LogPath, logInfo.Size())
	if err != nil {
		return nil, fmt.Errorf("read the worker's gctrace lines: %w", err)
	}
	return result, nil
}

// countFiles counts the regular files under dir whose names do not start
// with a dot, which the local media storage uses for files being written.
func countFiles(dir string) (int, error) {
	count := 0
	err := filepath.WalkDir(dir, func(path string, entry fs.DirEntry, err error) error {
		if err != nil {
			// A folder that the storage creates or removes meanwhile.
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if entry.Type().IsRegular() && !strings.HasPrefix(entry.Name(), ".") {
			count++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count files in %s: %w", dir, err)
	}
	return count, nil
}

// generateForMemory makes one request of the memory phase and checks every
// image that it returns.
func generateForMemory(ctx context.Context, st *serviceStack, httpClient *http.Client, s settings, prompt string) error {
	if s.memoryFormat == "url" {
		ours := &ourPath{http: httpClient, apiURL: st.apiURL, apiKey: st.apiKey, model: memoryModel, imageBytes: s.memoryImageBytes}
		links, err := ours.generate(ctx, prompt, s.memoryPerRequest)
		if err != nil {
			return err
		}
		for _, link := range links {
			if err := readBack(ctx, httpClient, link, s.memoryImageBytes); err != nil {
				return err
			}
		}
		return nil
	}

	body, err := json.Marshal(map[string]any{"model": memoryModel, "prompt": prompt, "n": s.memoryPerRequest, "response_format": "b64_json"})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, st.apiURL+"/v1/images/generations", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+st.apiKey)
	resp, err := httpClient.Do(req)
	if err != nil {
		return fmt.Errorf("POST /v1/images/generations: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		text, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("POST /v1/images/generations: status %d: %s", resp.StatusCode, text)
	}
	var answer struct {
		Data []struct {
			B64JSON string `json:"b64_json"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return fmt.Errorf("decode images response: %w", err)
	}
	if len(answer.Data) != s.memoryPerRequest {
		return fmt.Errorf("images response has %d images, want %d", len(answer.Data), s.memoryPerRequest)
	}
	for i, datum := range answer.Data {
		image, err := base64.StdEncoding.DecodeString(datum.B64JSON)
		if err != nil {
			return fmt.Errorf("decode image %d: %w", i, err)
		}
		if len(image) != s.memoryImageBytes {
			return fmt.Errorf("image %d has %d bytes, want %d", i, len(image), s.memoryImageBytes)
		}
	}
	return nil
}
