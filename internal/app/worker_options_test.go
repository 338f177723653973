package app

import (
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/config"
	"github.com/aihigress/aihigress/worker"
)

func TestWorkerOptionsFromConfig(t *testing.T) {
	cfg, err := config.Load(func(name string) string {
		return map[string]string{
			"WORKER_CHAT_MAX_CONCURRENT_ACTIVITIES":  "300",
			"WORKER_IMAGE_MAX_CONCURRENT_ACTIVITIES": "12",
			"WORKER_WORKFLOW_TASK_POLLERS":           "6",
			"WORKER_ACTIVITY_TASK_POLLERS":           "5",
			"WORKER_STOP_TIMEOUT":                    "45s",
		}[name]
	})
	if err != nil {
		t.Fatal(err)
	}
	a := &App{Config: cfg}

	tests := []struct {
		name          string
		maxActivities int
		want          worker.Options
	}{
		{name: "chat", maxActivities: cfg.Worker.ChatMaxConcurrentActivities, want: worker.Options{MaxConcurrentActivities: 300, WorkflowTaskPollers: 6, ActivityTaskPollers: 5, StopTimeout: 45 * time.Second}},
		{name: "image", maxActivities: cfg.Worker.ImageMaxConcurrentActivities, want: worker.Options{MaxConcurrentActivities: 12, WorkflowTaskPollers: 6, ActivityTaskPollers: 5, StopTimeout: 45 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := a.workerOptions(tt.maxActivities); got != tt.want {
				t.Fatalf("workerOptions(%d) = %+v, want %+v", tt.maxActivities, got, tt.want)
			}
		})
	}
}
