package app

import (
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"go.temporal.io/sdk/client"

	"github.com/aihigress/aihigress/internal/config"
	"github.com/aihigress/aihigress/workflows"
)

func TestTaskQueueNames(t *testing.T) {
	tests := []struct {
		name  string
		value string
		want  []string
	}{
		{name: "default", value: "", want: []string{workflows.ChatTaskQueue, workflows.ImageTaskQueue, workflows.MaintenanceTaskQueue}},
		{name: "chat only", value: "chat", want: []string{workflows.ChatTaskQueue}},
		{name: "image only", value: "image", want: []string{workflows.ImageTaskQueue}},
		{name: "maintenance only", value: "maintenance", want: []string{workflows.MaintenanceTaskQueue}},
		{name: "chat and image", value: "chat,image", want: []string{workflows.ChatTaskQueue, workflows.ImageTaskQueue}},
		{name: "start order", value: " Maintenance , chat", want: []string{workflows.ChatTaskQueue, workflows.MaintenanceTaskQueue}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Load(func(name string) string {
				return map[string]string{"WORKER_TASK_QUEUES": tt.value}[name]
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := TaskQueueNames(cfg.Worker.TaskQueues); !slices.Equal(got, tt.want) {
				t.Errorf("TaskQueueNames(WORKER_TASK_QUEUES=%q) = %q, want %q", tt.value, got, tt.want)
			}
		})
	}
}

func TestBuildWorker(t *testing.T) {
	// The lazy client connects only when a worker starts, which this test
	// never does.
	temporal, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(temporal.Close)
	cfg, err := config.Load(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	a := &App{Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Temporal: temporal}

	tests := []struct {
		taskQueue string
		wantErr   string
	}{
		{taskQueue: workflows.ChatTaskQueue},
		{taskQueue: workflows.ImageTaskQueue},
		{taskQueue: workflows.MaintenanceTaskQueue},
		{taskQueue: "chat", wantErr: `no worker for task queue "chat"`},
	}
	for _, tt := range tests {
		t.Run(tt.taskQueue, func(t *testing.T) {
			w, err := a.buildWorker(tt.taskQueue)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("buildWorker error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if w == nil {
				t.Fatal("buildWorker returned a nil worker")
			}
		})
	}
}

func TestStartWorkersWithoutTaskQueue(t *testing.T) {
	a := &App{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	started, taskQueues, err := a.startWorkers(config.TaskQueues{})
	if err == nil || !strings.Contains(err.Error(), "WORKER_TASK_QUEUES") {
		t.Errorf("startWorkers error = %v, want one naming WORKER_TASK_QUEUES", err)
	}
	if len(started) != 0 || len(taskQueues) != 0 {
		t.Errorf("startWorkers started %d workers on %q, want none", len(started), taskQueues)
	}
}
