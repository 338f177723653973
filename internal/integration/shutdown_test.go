package integration

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/mockupstream"
)

// startServeProcess runs `aihigress serve` on a free loopback port and
// returns the process and its base URL once it listens. extraEnv adds or
// overrides variables as "NAME=value".
func startServeProcess(t *testing.T, binary string, s *stack, logPath string, extraEnv ...string) (*exec.Cmd, string) {
	t.Helper()
	env := append([]string{"HTTP_ADDR=127.0.0.1:0", "LOG_FORMAT=json", "ADMIN_PASSWORD=integration-admin-password"}, extraEnv...)
	cmd := startProcess(t, binary, "serve", s, logPath, env...)

	var addr string
	waitFor(t, 60*time.Second, "serve to log its listen address in "+logPath, func() bool {
		addr = listenAddrIn(t, logPath)
		return addr != ""
	})
	return cmd, "http://" + addr
}

// listenAddrIn returns the address of the "HTTP API listening" line of a
// JSON log, or "" while there is none. It fails the test when serve logged
// that it failed.
func listenAddrIn(t *testing.T, logPath string) string {
	t.Helper()
	file, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	scanner := bufio.NewScanner(file)
	for scanner.Scan() {
		var line struct {
			Msg   string `json:"msg"`
			Addr  string `json:"addr"`
			Error string `json:"error"`
		}
		if json.Unmarshal(scanner.Bytes(), &line) != nil {
			continue
		}
		switch line.Msg {
		case "HTTP API listening":
			return line.Addr
		case "serve failed":
			t.Fatalf("serve failed at start: %s", line.Error)
		}
	}
	return ""
}

// waitForWorkerStart waits until the worker that logs to logPath has
// started polling. Processes on one SQLite file start one after the other,
// because two that seed the catalog at once can get SQLITE_BUSY.
func waitForWorkerStart(t *testing.T, logPath string) {
	t.Helper()
	waitFor(t, 60*time.Second, "the worker to start in "+logPath, func() bool {
		data, err := os.ReadFile(logPath)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), `msg="worker failed"`) {
			t.Fatalf("worker failed at start:\n%s", data)
		}
		return strings.Contains(string(data), `msg="workers started"`)
	})
}

// readyzOf returns the status and the body of GET /readyz on baseURL.
func readyzOf(t *testing.T, baseURL string) (int, readyz) {
	t.Helper()
	resp, err := http.Get(baseURL + "/readyz")
	if err != nil {
		t.Fatalf("GET %s/readyz: %v", baseURL, err)
	}
	defer resp.Body.Close()
	var body readyz
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("decode %s/readyz: %v", baseURL, err)
	}
	return resp.StatusCode, body
}

type readyz struct {
	Status string `json:"status"`
	Checks map[string]struct {
		Status    string  `json:"status"`
		LatencyMS float64 `json:"latency_ms"`
	} `json:"checks"`
}

// dumpLogsOnFailure logs the files of logs at the end of a failed test.
func dumpLogsOnFailure(t *testing.T, logs map[string]string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for name, path := range logs {
			if data, err := os.ReadFile(path); err == nil {
				t.Logf("%s log:\n%s", name, data)
			}
		}
	})
}

// waitExit waits for cmd to exit and sends its Wait error and the time of
// the exit.
func waitExit(cmd *exec.Cmd) <-chan processExit {
	exited := make(chan processExit, 1)
	go func() {
		err := cmd.Wait()
		exited <- processExit{err: err, at: time.Now()}
	}()
	return exited
}

type processExit struct {
	err error
	at  time.Time
}

// sameJSON reports whether a and b encode the same JSON value.
func sameJSON(t *testing.T, a, b string) bool {
	t.Helper()
	var valueA, valueB any
	if err := json.Unmarshal([]byte(a), &valueA); err != nil {
		t.Fatalf("decode %q: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &valueB); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
	return reflect.DeepEqual(valueA, valueB)
}

// TestServeShutdownResumesStreamElsewhere sends SIGTERM to one of two API
// processes while it streams a run. The stream must end with a reconnect
// frame whose id is the last event sent, the process must exit within
// SHUTDOWN_TIMEOUT, and the other process must deliver the rest from that
// id. Together the two streams carry every event of the run once, in
// order, the same as a replay from the start.
func TestServeShutdownResumesStreamElsewhere(t *testing.T) {
	const (
		shutdownTimeout = 5 * time.Second
		drainDelay      = time.Second
	)
	// At 5 tokens per second a reply of 20 to 40 tokens streams for 4 to
	// 8 seconds, which outlasts the drain of serve A.
	s := newStack(t, stackOptions{noWorker: true, mock: mockupstream.Options{TokensPerSecond: 5}})
	binary := buildBinary(t)
	dir := t.TempDir()
	logs := map[string]string{"worker": filepath.Join(dir, "worker.log"), "serve A": filepath.Join(dir, "serve-a.log"),
		"serve B": filepath.Join(dir, "serve-b.log")}
	dumpLogsOnFailure(t, logs)

	startWorkerProcess(t, binary, s, logs["worker"])
	waitForWorkerStart(t, logs["worker"])
	serveA, urlA := startServeProcess(t, binary, s, logs["serve A"],
		"SHUTDOWN_TIMEOUT="+shutdownTimeout.String(), "SHUTDOWN_DRAIN_DELAY="+drainDelay.String())
	_, urlB := startServeProcess(t, binary, s, logs["serve B"])
	for name, url := range map[string]string{"A": urlA, "B": urlB} {
		status, body := readyzOf(t, url)
		if status != http.StatusOK || body.Status != "ok" {
			t.Fatalf("serve %s: GET /readyz = %d %+v, want 200 ok", name, status, body)
		}
		for _, check := range []string{"database", "redis", "temporal"} {
			if body.Checks[check].Status != "ok" {
				t.Errorf("serve %s: readiness check %s = %+v, want ok", name, check, body.Checks[check])
			}
		}
	}

	alice := s.newUser()
	convID := alice.conversation("mock-gpt")
	stream := alice.at(urlA).postStreaming("/v1/conversations/"+convID+"/messages", map[string]any{"content": "hand over the stream", "streaming": true})
	defer stream.close()
	var fromA []frame
	for range 3 {
		fromA = append(fromA, stream.readUntil(t, "message.delta")...)
	}
	runID := runIDOf(t, runEvents(fromA)[0])

	// A synchronous post on serve A waits for its run when the signal
	// arrives, and it must get 202 instead of being cut.
	syncConv := alice.conversation("mock-gpt")
	type syncResponse struct {
		status   int
		location string
	}
	syncDone := make(chan syncResponse, 1)
	syncRequest, err := http.NewRequest("POST", urlA+"/v1/conversations/"+syncConv+"/messages", strings.NewReader(`{"content": "wait for me"}`))
	if err != nil {
		t.Fatal(err)
	}
	syncRequest.Header.Set("Authorization", "Bearer "+alice.token)
	syncRequest.Header.Set("Content-Type", "application/json")
	go func() {
		resp, err := (&http.Client{Timeout: time.Minute}).Do(syncRequest)
		if err != nil {
			syncDone <- syncResponse{status: -1}
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		syncDone <- syncResponse{status: resp.StatusCode, location: resp.Header.Get("Location")}
	}()
	waitFor(t, 20*time.Second, "the synchronous run to start", func() bool {
		var page struct {
			Items []struct {
				Role string     `json:"role"`
				Run  *runDetail `json:"run"`
			} `json:"items"`
		}
		alice.mustDo("GET", "/v1/conversations/"+syncConv+"/messages", nil, 200, &page)
		for _, m := range page.Items {
			if m.Role == "assistant" && m.Run != nil && m.Run.Status == "running" {
				return true
			}
		}
		return false
	})

	signaled := time.Now()
	if err := serveA.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := waitExit(serveA)

	// Serve A keeps serving during the drain delay, with /readyz at 503.
	waitFor(t, drainDelay, "serve A's /readyz to return 503 draining", func() bool {
		status, body := readyzOf(t, urlA)
		return status == http.StatusServiceUnavailable && body.Status == "draining"
	})

	fromA = append(fromA, stream.readUntil(t, "reconnect")...)
	reconnect := fromA[len(fromA)-1]
	if extra, err := stream.next(); !errors.Is(err, io.EOF) {
		t.Errorf("after the reconnect frame: frame %+v, error %v; want the end of the stream", extra, err)
	}

	select {
	case exit := <-exited:
		if exit.err != nil {
			t.Errorf("serve A exited with %v, want status 0", exit.err)
		}
		took := exit.at.Sub(signaled)
		t.Logf("serve A exited %s after SIGTERM", took)
		if took > shutdownTimeout {
			t.Errorf("serve A exited %s after SIGTERM, more than SHUTDOWN_TIMEOUT %s", took, shutdownTimeout)
		}
	case <-time.After(shutdownTimeout + 10*time.Second):
		t.Fatalf("serve A still runs %s after SIGTERM", time.Since(signaled))
	}
	select {
	case response := <-syncDone:
		if response.status != http.StatusAccepted || !strings.HasPrefix(response.location, "/v1/runs/") {
			t.Errorf("synchronous post during the shutdown = %d with Location %q, want 202 with /v1/runs/{id}", response.status, response.location)
		}
	case <-time.After(5 * time.Second):
		t.Error("the synchronous post on serve A got no response")
	}

	eventsA := runEvents(fromA)
	lastA := eventsA[len(eventsA)-1].ID
	if !reconnect.HasID || reconnect.ID != lastA {
		t.Errorf("reconnect frame id = %d (present %v), want the last event id %d", reconnect.ID, reconnect.HasID, lastA)
	}
	if retry, err := strconv.Atoi(reconnect.Retry); err != nil || retry <= 0 {
		t.Errorf("reconnect frame retry = %q, want a positive number of milliseconds", reconnect.Retry)
	}
	var reconnectData struct {
		Type    string `json:"type"`
		RunID   string `json:"run_id"`
		LastSeq int64  `json:"last_seq"`
	}
	if err := json.Unmarshal([]byte(reconnect.Data), &reconnectData); err != nil {
		t.Fatalf("decode reconnect data %q: %v", reconnect.Data, err)
	}
	if reconnectData.Type != "reconnect" || reconnectData.RunID != runID || reconnectData.LastSeq != lastA {
		t.Errorf("reconnect data = %+v, want type reconnect, run_id %s, last_seq %d", reconnectData, runID, lastA)
	}

	header := http.Header{"Last-Event-Id": []string{strconv.FormatInt(reconnect.ID, 10)}}
	resumed := alice.at(urlB).openEvents("/v1/runs/"+runID+"/events", header)
	deadline := time.AfterFunc(60*time.Second, resumed.close)
	fromB := resumed.readUntil(t, "done")
	deadline.Stop()
	resumed.close()
	eventsB := runEvents(fromB)
	if len(eventsB) == 0 {
		t.Fatal("serve B sent no run event: the run ended before serve A drained, so the test did not cover a resumed stream")
	}

	t.Logf("run events: %d from serve A, %d from serve B", len(eventsA), len(eventsB))
	union := append(slices.Clone(eventsA), eventsB...)
	checkSequence(t, union, 0)
	if last := union[len(union)-1].Event; last != "message.completed" {
		t.Errorf("last event = %s, want message.completed", last)
	}

	replay := alice.at(urlB).openEvents("/v1/runs/"+runID+"/events?after_seq=0", nil)
	defer replay.close()
	replayed := runEvents(replay.readUntil(t, "done"))
	if len(replayed) != len(union) {
		t.Fatalf("the replay from 0 has %d events, the two streams %d", len(replayed), len(union))
	}
	// PostgreSQL stores payloads as JSONB, which may order the keys of a
	// replayed payload differently from the live one, so data is compared
	// as JSON values.
	for i := range replayed {
		if replayed[i].ID != union[i].ID || replayed[i].Event != union[i].Event || !sameJSON(t, replayed[i].Data, union[i].Data) {
			t.Errorf("event %d: replay %+v, streams %+v", i, replayed[i], union[i])
		}
	}

	var run runDetail
	alice.at(urlB).mustDo("GET", "/v1/runs/"+runID, nil, 200, &run)
	if run.Status != "succeeded" || run.LastSeq != union[len(union)-1].ID {
		t.Errorf("run = %s with last_seq %d, want succeeded with %d", run.Status, run.LastSeq, union[len(union)-1].ID)
	}
	if status, body := readyzOf(t, urlB); status != http.StatusOK {
		t.Errorf("serve B after A's shutdown: GET /readyz = %d %+v, want 200", status, body)
	}
}

// TestWorkerShutdownStopTimeout sends SIGTERM to a worker process while its
// activity streams a reply, with a second worker running. Within
// WORKER_STOP_TIMEOUT the activity finishes on the first worker, so the
// run needs one attempt. Past it the activity is canceled and the second
// worker makes another attempt. Either way the first worker exits soon
// after the timeout and the run succeeds.
func TestWorkerShutdownStopTimeout(t *testing.T) {
	tests := []struct {
		name        string
		stopTimeout time.Duration
		// finishes is whether the reply, 4 to 8 seconds at 5 tokens per
		// second, ends within stopTimeout.
		finishes bool
	}{
		{name: "activity finishes", stopTimeout: 30 * time.Second, finishes: true},
		{name: "activity outlasts the timeout", stopTimeout: time.Second, finishes: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStack(t, stackOptions{noWorker: true, mock: mockupstream.Options{TokensPerSecond: 5}})
			binary := buildBinary(t)
			dir := t.TempDir()
			logs := map[string]string{"first worker": filepath.Join(dir, "worker-1.log"), "second worker": filepath.Join(dir, "worker-2.log")}
			dumpLogsOnFailure(t, logs)

			first := startWorkerProcess(t, binary, s, logs["first worker"], "WORKER_STOP_TIMEOUT="+tt.stopTimeout.String())
			alice := s.newUser()
			convID := alice.conversation("mock-gpt")
			stream := alice.postStreaming("/v1/conversations/"+convID+"/messages", map[string]any{"content": "stop gracefully", "streaming": true})
			defer stream.close()
			frames := stream.readUntil(t, "message.delta")
			frames = append(frames, stream.readUntil(t, "message.delta")...)

			// The second worker starts after the first took the activity.
			startWorkerProcess(t, binary, s, logs["second worker"])
			waitForWorkerStart(t, logs["second worker"])
			signaled := time.Now()
			if err := first.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			exited := waitExit(first)

			deadline := time.AfterFunc(60*time.Second, stream.close)
			frames = append(frames, stream.readUntil(t, "done")...)
			deadline.Stop()
			checkSequence(t, frames, 0)

			// Closing the client and the last metrics write follow the
			// stop timeout.
			const exitMargin = 5 * time.Second
			select {
			case exit := <-exited:
				if exit.err != nil {
					t.Errorf("first worker exited with %v, want status 0", exit.err)
				}
				took := exit.at.Sub(signaled)
				t.Logf("first worker exited %s after SIGTERM", took)
				if took > tt.stopTimeout+exitMargin {
					t.Errorf("first worker exited %s after SIGTERM, want at most %s", took, tt.stopTimeout+exitMargin)
				}
			case <-time.After(tt.stopTimeout + exitMargin):
				t.Fatalf("first worker still runs %s after SIGTERM", time.Since(signaled))
			}

			var run runDetail
			alice.mustDo("GET", "/v1/runs/"+runIDOf(t, runEvents(frames)[0]), nil, 200, &run)
			if run.Status != "succeeded" {
				t.Fatalf("run status = %s, want succeeded", run.Status)
			}
			resets := 0
			for _, f := range frames {
				if f.Event == "message.reset" {
					resets++
				}
			}
			if tt.finishes {
				if run.Attempt != 1 || resets != 0 {
					t.Errorf("run took %d attempts with %d message.reset, want 1 attempt without reset: the activity must finish on the stopping worker",
						run.Attempt, resets)
				}
			} else if run.Attempt < 2 || resets == 0 {
				t.Errorf("run took %d attempts with %d message.reset, want a second attempt after a reset", run.Attempt, resets)
			}
			if got := replyText(t, frames); got != run.OutputText {
				t.Errorf("text rebuilt from the stream %q differs from the output %q", got, run.OutputText)
			}
		})
	}
}
