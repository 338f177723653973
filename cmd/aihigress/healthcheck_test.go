package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/aihigress/aihigress/internal/app"
	"github.com/aihigress/aihigress/internal/config"
	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/workflows"
)

func discardLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func TestCheckURL(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("/no-content", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/down", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	closed := httptest.NewServer(mux)
	closedURL := closed.URL
	closed.Close()

	tests := []struct {
		name    string
		url     string
		wantErr string
	}{
		{name: "200", url: srv.URL + "/ok"},
		{name: "204", url: srv.URL + "/no-content"},
		{name: "503", url: srv.URL + "/down", wantErr: "503 Service Unavailable"},
		{name: "404", url: srv.URL + "/missing", wantErr: "404 Not Found"},
		{name: "redirect not followed", url: srv.URL + "/moved", wantErr: "302 Found"},
		{name: "connection refused", url: closedURL + "/ok", wantErr: "health check request failed"},
		{name: "empty", url: "", wantErr: "invalid health check URL"},
		{name: "no scheme", url: "127.0.0.1:8080/healthz", wantErr: "invalid health check URL"},
		{name: "other scheme", url: "ftp://127.0.0.1/healthz", wantErr: "invalid health check URL"},
		{name: "no host", url: "http:///healthz", wantErr: "invalid health check URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := checkURL(ctx, tt.url)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("checkURL(%q) = %v, want nil", tt.url, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("checkURL(%q) = %v, want an error containing %q", tt.url, err, tt.wantErr)
			}
		})
	}
}

func TestRunHealthcheckArguments(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	defer srv.Close()

	tests := []struct {
		name    string
		cfg     config.Config
		args    []string
		wantErr string
	}{
		{name: "url passes", args: []string{srv.URL}},
		{name: "url with timeout passes", args: []string{"-timeout", "2s", srv.URL}},
		{name: "help", args: []string{"-h"}},
		{name: "no argument", args: nil, wantErr: "exactly one URL or -worker"},
		{name: "two urls", args: []string{srv.URL, srv.URL}, wantErr: "exactly one URL or -worker"},
		{name: "worker with url", args: []string{"-worker", srv.URL}, wantErr: "takes no URL"},
		{name: "zero timeout", args: []string{"-timeout", "0s", srv.URL}, wantErr: "must be positive"},
		{name: "negative poll age", args: []string{"-worker", "-max-poll-age", "-1m"}, wantErr: "must be positive"},
		{name: "unknown flag", args: []string{"-port", "8080"}, wantErr: "flag provided but not defined"},
		{name: "worker without temporal address", args: []string{"-worker"}, wantErr: "TEMPORAL_ADDRESS is not set"},
		{
			name:    "worker with unreachable temporal",
			cfg:     config.Config{TemporalAddress: "127.0.0.1:1", TemporalNamespace: "default"},
			args:    []string{"-worker", "-timeout", "2s"},
			wantErr: "connect to Temporal at 127.0.0.1:1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := runHealthcheck(context.Background(), tt.cfg, tt.args, discardLogger())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("runHealthcheck(%q) = %v, want nil", tt.args, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("runHealthcheck(%q) = %v, want an error containing %q", tt.args, err, tt.wantErr)
			}
		})
	}
}

func TestLastPollFromHost(t *testing.T) {
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	describe := func(pollers ...client.TaskQueuePollerInfo) client.TaskQueueDescription {
		return client.TaskQueueDescription{VersionsInfo: map[string]client.TaskQueueVersionInfo{
			"": {TypesInfo: map[client.TaskQueueType]client.TaskQueueTypeInfo{
				client.TaskQueueTypeWorkflow: {Pollers: pollers},
			}},
		}}
	}

	tests := []struct {
		name     string
		desc     client.TaskQueueDescription
		taskType client.TaskQueueType
		want     time.Time
	}{
		{
			name:     "default identity",
			desc:     describe(client.TaskQueuePollerInfo{Identity: "1@c0ffee@", LastAccessTime: base}),
			taskType: client.TaskQueueTypeWorkflow,
			want:     base,
		},
		{
			name: "latest of two pollers",
			desc: describe(
				client.TaskQueuePollerInfo{Identity: "1@c0ffee@", LastAccessTime: base},
				client.TaskQueuePollerInfo{Identity: "7@c0ffee@aihigress-chat", LastAccessTime: base.Add(time.Minute)},
			),
			taskType: client.TaskQueueTypeWorkflow,
			want:     base.Add(time.Minute),
		},
		{
			name:     "other host",
			desc:     describe(client.TaskQueuePollerInfo{Identity: "1@decaf@", LastAccessTime: base}),
			taskType: client.TaskQueueTypeWorkflow,
		},
		{
			name:     "host name as prefix only",
			desc:     describe(client.TaskQueuePollerInfo{Identity: "1@c0ffee2@", LastAccessTime: base}),
			taskType: client.TaskQueueTypeWorkflow,
		},
		{
			name:     "custom identity without host",
			desc:     describe(client.TaskQueuePollerInfo{Identity: "c0ffee", LastAccessTime: base}),
			taskType: client.TaskQueueTypeWorkflow,
		},
		{
			name:     "other task type",
			desc:     describe(client.TaskQueuePollerInfo{Identity: "1@c0ffee@", LastAccessTime: base}),
			taskType: client.TaskQueueTypeActivity,
		},
		{
			name:     "no versions",
			desc:     client.TaskQueueDescription{},
			taskType: client.TaskQueueTypeWorkflow,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := lastPollFromHost(tt.desc, tt.taskType, "c0ffee")
			if !got.Equal(tt.want) {
				t.Fatalf("lastPollFromHost = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCheckWorkerPolls runs the real chat and image workers of the app
// against a Temporal dev server and checks the result of healthcheck -worker
// before and after each worker starts.
func TestCheckWorkerPolls(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a Temporal dev server")
	}
	srv, err := testenv.StartTemporal()
	if err != nil {
		t.Fatalf("start Temporal dev server: %v", err)
	}
	t.Cleanup(func() { _ = srv.Stop() })

	databaseURL, sqlitePath := testenv.DatabaseURL(t)
	redisURL, prefix := testenv.Redis(t)
	env := map[string]string{
		"DATABASE_URL":     databaseURL,
		"SQLITE_PATH":      sqlitePath,
		"REDIS_URL":        redisURL,
		"REDIS_PREFIX":     prefix,
		"TEMPORAL_ADDRESS": srv.FrontendHostPort(),
		"JWT_SECRET":       "healthcheck-test-secret-0123456789",
		"MASTER_KEY":       "healthcheck-test-master-key-0123456789",
		"IMAGE_LOCAL_DIR":  filepath.Join(t.TempDir(), "media"),
		// The test starts the chat and image workers only.
		"WORKER_TASK_QUEUES": "chat,image",
	}
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := app.Connect(ctx, cfg, providers.NewCatalog(), discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}

	chatAndImage := []string{workflows.ChatTaskQueue, workflows.ImageTaskQueue}

	// eventually calls checkWorkerPolls until match accepts its result,
	// because the server records a poll only once it arrives.
	eventually := func(t *testing.T, host string, maxAge time.Duration, match func(error) bool, want string) {
		t.Helper()
		deadline := time.Now().Add(45 * time.Second)
		for {
			checkCtx, checkCancel := context.WithTimeout(ctx, 5*time.Second)
			err := checkWorkerPolls(checkCtx, a.Temporal, chatAndImage, host, maxAge, time.Now())
			checkCancel()
			if match(err) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("checkWorkerPolls(host %q) = %v after 45s, want %s", host, err, want)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	errorContains := func(substr string) func(error) bool {
		return func(err error) bool { return err != nil && strings.Contains(err.Error(), substr) }
	}

	if err := checkWorkerPolls(ctx, a.Temporal, chatAndImage, hostname, time.Minute, time.Now()); err == nil ||
		!strings.Contains(err.Error(), workflows.ChatTaskQueue) {
		t.Fatalf("before any worker: checkWorkerPolls = %v, want an error naming %s", err, workflows.ChatTaskQueue)
	}

	chat := a.ChatWorker()
	if err := chat.Start(); err != nil {
		t.Fatal(err)
	}
	defer chat.Stop()
	// With only the chat worker, the check moves on to the image queue.
	eventually(t, hostname, time.Minute, errorContains(workflows.ImageTaskQueue), "an error naming "+workflows.ImageTaskQueue)

	images := a.ImageWorker()
	if err := images.Start(); err != nil {
		t.Fatal(err)
	}
	defer images.Stop()
	eventually(t, hostname, time.Minute, func(err error) bool { return err == nil }, "nil")

	tests := []struct {
		name    string
		host    string
		maxAge  time.Duration
		now     time.Time
		wantErr string
	}{
		{name: "this host", host: hostname, maxAge: time.Minute, now: time.Now()},
		{name: "other host", host: "other-host.example.invalid", maxAge: time.Minute, now: time.Now(), wantErr: "no worker on host"},
		{name: "stale poll", host: hostname, maxAge: time.Minute, now: time.Now().Add(10 * time.Minute), wantErr: "last polled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkWorkerPolls(ctx, a.Temporal, chatAndImage, tt.host, tt.maxAge, tt.now)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("checkWorkerPolls = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("checkWorkerPolls = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}

	// The subcommand dials Temporal itself, uses os.Hostname and checks the
	// task queues of WORKER_TASK_QUEUES. No maintenance worker runs, so the
	// check of every task queue fails on the maintenance queue.
	allQueues := cfg
	allQueues.Worker.TaskQueues = config.AllTaskQueues()
	subcommands := []struct {
		name    string
		cfg     config.Config
		wantErr string
	}{
		{name: "chat and image", cfg: cfg},
		{name: "every task queue", cfg: allQueues, wantErr: workflows.MaintenanceTaskQueue},
	}
	for _, tt := range subcommands {
		t.Run("subcommand "+tt.name, func(t *testing.T) {
			err := runHealthcheck(ctx, tt.cfg, []string{"-worker"}, discardLogger())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("healthcheck -worker = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("healthcheck -worker = %v, want an error naming %s", err, tt.wantErr)
			}
		})
	}
}
