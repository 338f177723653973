package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/mockupstream"
	"github.com/aihigress/aihigress/internal/testenv"
)

// builtBinary is the aihigress binary that buildBinary compiled, shared
// by the tests of one test binary. TestMain removes its directory.
var builtBinary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// buildBinary compiles cmd/aihigress once per test binary.
func buildBinary(t *testing.T) string {
	t.Helper()
	builtBinary.once.Do(func() {
		root, err := testenv.RepoRoot()
		if err != nil {
			builtBinary.err = err
			return
		}
		builtBinary.dir, err = os.MkdirTemp("", "aihigress-integration-")
		if err != nil {
			builtBinary.err = err
			return
		}
		out := filepath.Join(builtBinary.dir, "aihigress")
		cmd := exec.Command("go", "build", "-o", out, "./cmd/aihigress")
		cmd.Dir = root
		if output, err := cmd.CombinedOutput(); err != nil {
			builtBinary.err = fmt.Errorf("build aihigress: %w\n%s", err, output)
			return
		}
		builtBinary.path = out
	})
	if builtBinary.err != nil {
		t.Fatal(builtBinary.err)
	}
	return builtBinary.path
}

// removeBuiltBinary deletes the binary that buildBinary compiled, if any.
func removeBuiltBinary() {
	if builtBinary.dir != "" {
		_ = os.RemoveAll(builtBinary.dir)
	}
}

// startWorkerProcess runs `aihigress worker` against the stack's database,
// Redis and Temporal, with the mock upstream configured through the
// OPENAI_* variables. extraEnv adds or overrides variables as "NAME=value".
func startWorkerProcess(t *testing.T, binary string, s *stack, logPath string, extraEnv ...string) *exec.Cmd {
	t.Helper()
	return startProcess(t, binary, "worker", s, logPath, extraEnv...)
}

// startProcess runs `aihigress <command>` with the stack's configuration,
// its output appended to logPath. The test's cleanup kills it.
func startProcess(t *testing.T, binary, command string, s *stack, logPath string, extraEnv ...string) *exec.Cmd {
	t.Helper()
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logFile.Close() })

	cmd := exec.Command(binary, command)
	cmd.Env = append(os.Environ(),
		"DATABASE_URL="+s.cfg.DatabaseURL,
		"SQLITE_PATH="+s.cfg.SQLitePath,
		"REDIS_URL="+s.cfg.RedisURL,
		"REDIS_PREFIX="+s.cfg.RedisPrefix,
		"TEMPORAL_ADDRESS="+s.cfg.TemporalAddress,
		"JWT_SECRET="+s.cfg.JWTSecret,
		"MASTER_KEY="+s.cfg.MasterKey,
		"DELTA_MERGE_WINDOW=20ms",
		"IMAGE_LOCAL_DIR="+s.cfg.Images.LocalDir,
		// Another test binary may hold the default metrics port, and a
		// worker that cannot bind it exits at start.
		"WORKER_METRICS_ADDR=off",
		"OPENAI_BASE_URL="+s.mock.URL()+"/v1",
		"OPENAI_API_KEY=test-key",
		"OPENAI_MODELS=mock-gpt",
		// The package's tests share one Temporal dev server, so only the
		// test of the schedules creates them.
		"MAINTENANCE_SCHEDULES=off",
	)
	// Later entries win, so extraEnv overrides the values above.
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", command, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
	})
	return cmd
}

// TestWorkerKilledMidRunCompletes kills the worker process with SIGKILL
// while it streams a reply and starts a new one. The run must end with
// exactly one assistant message containing the full text. The client's
// stream must go on, with message.reset before the new attempt.
func TestWorkerKilledMidRunCompletes(t *testing.T) {
	s := newStack(t, stackOptions{noWorker: true, mock: mockupstream.Options{TokensPerSecond: 10}})
	binary := buildBinary(t)
	logPath := filepath.Join(t.TempDir(), "worker.log")
	defer func() {
		if t.Failed() {
			if data, err := os.ReadFile(logPath); err == nil {
				t.Logf("worker log:\n%s", data)
			}
		}
	}()

	first := startWorkerProcess(t, binary, s, logPath)
	alice := s.newUser()
	convID := alice.conversation("mock-gpt")

	stream := alice.postStreaming("/v1/conversations/"+convID+"/messages", map[string]any{"content": "survive a crash", "streaming": true})
	defer stream.close()
	before := stream.readUntil(t, "message.delta")
	before = append(before, stream.readUntil(t, "message.delta")...)

	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = first.Process.Wait()
	startWorkerProcess(t, binary, s, logPath)

	deadline := time.AfterFunc(60*time.Second, stream.close)
	after := stream.readUntil(t, "done")
	deadline.Stop()

	frames := append(before, after...)
	checkSequence(t, frames, 0)
	sawReset := false
	for _, f := range after {
		if f.Event == "message.reset" {
			sawReset = true
		}
	}
	if !sawReset {
		t.Errorf("no message.reset after the worker was killed; events after the kill: %v", eventNames(after))
	}

	events := runEvents(frames)
	var run runDetail
	alice.mustDo("GET", "/v1/runs/"+runIDOf(t, events[0]), nil, 200, &run)
	if run.Status != "succeeded" {
		t.Fatalf("run status = %s, want succeeded", run.Status)
	}
	if run.Attempt < 2 {
		t.Errorf("run attempt = %d, want at least 2 after the crash", run.Attempt)
	}
	if got := replyText(t, frames); got != run.OutputText {
		t.Errorf("text rebuilt from the stream %q differs from the output %q", got, run.OutputText)
	}

	var history struct {
		Items []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"items"`
	}
	alice.mustDo("GET", "/v1/conversations/"+convID+"/messages", nil, 200, &history)
	assistants := 0
	for _, m := range history.Items {
		if m.Role == "assistant" {
			assistants++
			var content struct {
				Text string `json:"text"`
			}
			if err := json.Unmarshal(m.Content, &content); err != nil {
				t.Fatal(err)
			}
			if content.Text != run.OutputText {
				t.Errorf("assistant message %q differs from the run output %q", content.Text, run.OutputText)
			}
		}
	}
	if assistants != 1 {
		t.Errorf("conversation has %d assistant messages, want exactly 1", assistants)
	}
	recordHistory(t, s, run.WorkflowID, "chat_worker_killed")
}
