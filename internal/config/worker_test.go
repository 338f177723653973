package config

import (
	"strings"
	"testing"
)

func TestLoadWorker(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    Worker
		wantErr string
	}{
		{name: "defaults", want: Worker{ChatMaxConcurrentActivities: 1000, ImageMaxConcurrentActivities: 100}},
		{name: "every setting", env: map[string]string{
			"WORKER_CHAT_MAX_CONCURRENT_ACTIVITIES": "250", "WORKER_IMAGE_MAX_CONCURRENT_ACTIVITIES": "8",
			"WORKER_WORKFLOW_TASK_POLLERS": "4", "WORKER_ACTIVITY_TASK_POLLERS": "1"},
			want: Worker{ChatMaxConcurrentActivities: 250, ImageMaxConcurrentActivities: 8, WorkflowTaskPollers: 4, ActivityTaskPollers: 1}},
		{name: "no chat activities", env: map[string]string{"WORKER_CHAT_MAX_CONCURRENT_ACTIVITIES": "0"}, wantErr: "WORKER_CHAT_MAX_CONCURRENT_ACTIVITIES must be at least 1"},
		{name: "no image activities", env: map[string]string{"WORKER_IMAGE_MAX_CONCURRENT_ACTIVITIES": "0"}, wantErr: "WORKER_IMAGE_MAX_CONCURRENT_ACTIVITIES must be at least 1"},
		{name: "negative activities", env: map[string]string{"WORKER_CHAT_MAX_CONCURRENT_ACTIVITIES": "-5"}, wantErr: "WORKER_CHAT_MAX_CONCURRENT_ACTIVITIES must be a non-negative integer"},
		{name: "activities not a number", env: map[string]string{"WORKER_IMAGE_MAX_CONCURRENT_ACTIVITIES": "many"}, wantErr: "WORKER_IMAGE_MAX_CONCURRENT_ACTIVITIES must be a non-negative integer"},
		{name: "pollers 0 keep the SDK default", env: map[string]string{"WORKER_WORKFLOW_TASK_POLLERS": "0", "WORKER_ACTIVITY_TASK_POLLERS": "0"},
			want: Worker{ChatMaxConcurrentActivities: 1000, ImageMaxConcurrentActivities: 100}},
		{name: "one workflow task poller", env: map[string]string{"WORKER_WORKFLOW_TASK_POLLERS": "1"}, wantErr: "WORKER_WORKFLOW_TASK_POLLERS must be 0 for the SDK default or at least 2"},
		{name: "negative activity task pollers", env: map[string]string{"WORKER_ACTIVITY_TASK_POLLERS": "-1"}, wantErr: "WORKER_ACTIVITY_TASK_POLLERS must be a non-negative integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(envOf(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Worker != tt.want {
				t.Errorf("Worker = %+v, want %+v", cfg.Worker, tt.want)
			}
		})
	}
}
