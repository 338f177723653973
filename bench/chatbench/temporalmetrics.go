package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The dev server serves Prometheus metrics on a random port, which the
// benchmark finds among the ports that the server process listens on. The
// counters below measure what a run costs Temporal: RPCs by service and
// operation, and the count and total time of the database operations
// behind them.
const (
	metricServiceRequests           = "service_requests"
	metricPersistenceRequests       = "persistence_requests"
	metricPersistenceSeconds        = "persistence_latency_sum"
	metricVisibilityRequests        = "visibility_persistence_requests"
	metricVisibilityRequestsSeconds = "visibility_persistence_latency_sum"
)

var scrapedMetrics = []string{
	metricServiceRequests, metricPersistenceRequests, metricPersistenceSeconds,
	metricVisibilityRequests, metricVisibilityRequestsSeconds,
}

// findMetricsURL returns the /metrics URL of the process, trying each TCP
// port it listens on.
func findMetricsURL(ctx context.Context, pid int) (string, error) {
	ports, err := listeningPorts(pid)
	if err != nil {
		return "", err
	}
	client := &http.Client{Timeout: 2 * time.Second}
	for _, port := range ports {
		metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
		counters, err := scrapeTemporalMetrics(ctx, client, metricsURL)
		if err == nil && len(counters) > 0 {
			return metricsURL, nil
		}
	}
	return "", fmt.Errorf("none of the %d ports that process %d listens on serves Temporal metrics", len(ports), pid)
}

// listeningPorts returns the TCP ports on which the process has listening
// sockets, from /proc/<pid>/fd and /proc/<pid>/net/tcp.
func listeningPorts(pid int) ([]int, error) {
	fds, err := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	if err != nil {
		return nil, fmt.Errorf("list descriptors of process %d: %w", pid, err)
	}
	inodes := make(map[string]bool)
	for _, fd := range fds {
		target, err := os.Readlink(fd)
		if err != nil {
			continue
		}
		if inode, ok := strings.CutPrefix(target, "socket:["); ok {
			inodes[strings.TrimSuffix(inode, "]")] = true
		}
	}

	var ports []int
	for _, table := range []string{"tcp", "tcp6"} {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(raw), "\n")[1:] {
			fields := strings.Fields(line)
			// Field 1 is local_address as hex IP:port, 3 the state (0A is
			// LISTEN) and 9 the inode.
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] {
				continue
			}
			_, hexPort, _ := strings.Cut(fields[1], ":")
			if port, err := strconv.ParseInt(hexPort, 16, 32); err == nil {
				ports = append(ports, int(port))
			}
		}
	}
	return ports, nil
}

// scrapeTemporalMetrics returns the counters in scrapedMetrics, keyed by
// "<metric> <service> <operation>" and summed over all other labels.
func scrapeTemporalMetrics(ctx context.Context, client *http.Client, metricsURL string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return nil, fmt.Errorf("build request for %s: %w", metricsURL, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", metricsURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", metricsURL, resp.StatusCode)
	}

	counters := make(map[string]float64)
	scanner := bufio.NewScanner(io.LimitReader(resp.Body, 64<<20))
	scanner.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for scanner.Scan() {
		line := scanner.Text()
		metric, _, ok := strings.Cut(line, "{")
		if !ok || !slices.Contains(scrapedMetrics, metric) {
			continue
		}
		labels, value, ok := strings.Cut(line[len(metric)+1:], "} ")
		if !ok {
			continue
		}
		n, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			continue
		}
		key := metric + " " + labelValue(labels, "service_name") + " " + labelValue(labels, "operation")
		counters[key] += n
	}
	if err := scanner.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", metricsURL, err)
	}
	return counters, nil
}

// labelValue returns the value of one label in a Prometheus label list.
// Temporal's operation and service names contain no quotes or commas.
func labelValue(labels, name string) string {
	_, rest, ok := strings.Cut(","+labels, ","+name+"=\"")
	if !ok {
		return ""
	}
	value, _, _ := strings.Cut(rest, "\"")
	return value
}

// temporalMeter adds up the increase of the counters over one or more
// windows, each from a call of open to the next call of close.
type temporalMeter struct {
	metricsURL string
	client     *http.Client

	mu      sync.Mutex
	start   map[string]float64
	deltas  map[string]float64
	windows int
	err     error
}

func newTemporalMeter(metricsURL string) *temporalMeter {
	return &temporalMeter{
		metricsURL: metricsURL,
		client:     &http.Client{Timeout: 5 * time.Second},
		deltas:     make(map[string]float64),
	}
}

func (m *temporalMeter) scrape() map[string]float64 {
	if m.metricsURL == "" {
		return nil
	}
	counters, err := scrapeTemporalMetrics(context.Background(), m.client, m.metricsURL)
	if err != nil {
		m.mu.Lock()
		m.err = err
		m.mu.Unlock()
		return nil
	}
	return counters
}

func (m *temporalMeter) open() {
	counters := m.scrape()
	m.mu.Lock()
	m.start = counters
	m.mu.Unlock()
}

func (m *temporalMeter) close() {
	end := m.scrape()
	m.mu.Lock()
	defer m.mu.Unlock()
	start := m.start
	m.start = nil
	if start == nil || end == nil {
		return
	}
	for key, value := range end {
		m.deltas[key] += value - start[key]
	}
	m.windows++
}

// perCompletion returns each counter's increase over the windows divided
// by completions.
func (m *temporalMeter) perCompletion(completions int64) (map[string]float64, error) {
	if m.metricsURL == "" {
		return nil, errors.New("the Temporal metrics endpoint was not found")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return nil, m.err
	}
	if m.windows == 0 || completions == 0 {
		return nil, errors.New("no measurement window completed")
	}
	rates := make(map[string]float64)
	for key, value := range m.deltas {
		if value > 0 {
			rates[key] = value / float64(completions)
		}
	}
	return rates, nil
}
