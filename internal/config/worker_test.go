package config

import (
	"slices"
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
		{name: "defaults", want: Worker{TaskQueues: AllTaskQueues(), ChatMaxConcurrentActivities: 1000, ImageMaxConcurrentActivities: 100}},
		{name: "every setting", env: map[string]string{
			"WORKER_CHAT_MAX_CONCURRENT_ACTIVITIES": "250", "WORKER_IMAGE_MAX_CONCURRENT_ACTIVITIES": "8",
			"WORKER_WORKFLOW_TASK_POLLERS": "4", "WORKER_ACTIVITY_TASK_POLLERS": "1", "WORKER_TASK_QUEUES": "image",
			"WORKER_STICKY_CACHE_SIZE": "2000"},
			want: Worker{TaskQueues: TaskQueues{Image: true}, ChatMaxConcurrentActivities: 250, ImageMaxConcurrentActivities: 8, WorkflowTaskPollers: 4, ActivityTaskPollers: 1, StickyCacheSize: 2000}},
		{name: "no chat activities", env: map[string]string{"WORKER_CHAT_MAX_CONCURRENT_ACTIVITIES": "0"}, wantErr: "WORKER_CHAT_MAX_CONCURRENT_ACTIVITIES must be at least 1"},
		{name: "no image activities", env: map[string]string{"WORKER_IMAGE_MAX_CONCURRENT_ACTIVITIES": "0"}, wantErr: "WORKER_IMAGE_MAX_CONCURRENT_ACTIVITIES must be at least 1"},
		{name: "negative activities", env: map[string]string{"WORKER_CHAT_MAX_CONCURRENT_ACTIVITIES": "-5"}, wantErr: "WORKER_CHAT_MAX_CONCURRENT_ACTIVITIES must be a non-negative integer"},
		{name: "activities not a number", env: map[string]string{"WORKER_IMAGE_MAX_CONCURRENT_ACTIVITIES": "many"}, wantErr: "WORKER_IMAGE_MAX_CONCURRENT_ACTIVITIES must be a non-negative integer"},
		{name: "pollers 0 keep the SDK default", env: map[string]string{"WORKER_WORKFLOW_TASK_POLLERS": "0", "WORKER_ACTIVITY_TASK_POLLERS": "0"},
			want: Worker{TaskQueues: AllTaskQueues(), ChatMaxConcurrentActivities: 1000, ImageMaxConcurrentActivities: 100}},
		{name: "one workflow task poller", env: map[string]string{"WORKER_WORKFLOW_TASK_POLLERS": "1"}, wantErr: "WORKER_WORKFLOW_TASK_POLLERS must be 0 for the SDK default or at least 2"},
		{name: "negative activity task pollers", env: map[string]string{"WORKER_ACTIVITY_TASK_POLLERS": "-1"}, wantErr: "WORKER_ACTIVITY_TASK_POLLERS must be a non-negative integer"},
		{name: "negative sticky cache size", env: map[string]string{"WORKER_STICKY_CACHE_SIZE": "-1"}, wantErr: "WORKER_STICKY_CACHE_SIZE must be a non-negative integer"},
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

func TestLoadWorkerTaskQueues(t *testing.T) {
	tests := []struct {
		name    string
		value   string
		want    TaskQueues
		wantErr []string
	}{
		{name: "unset", value: "", want: TaskQueues{Chat: true, Image: true, Maintenance: true}},
		{name: "all three", value: "chat,image,maintenance", want: TaskQueues{Chat: true, Image: true, Maintenance: true}},
		{name: "chat only", value: "chat", want: TaskQueues{Chat: true}},
		{name: "image only", value: "image", want: TaskQueues{Image: true}},
		{name: "maintenance only", value: "maintenance", want: TaskQueues{Maintenance: true}},
		{name: "chat and maintenance", value: "chat,maintenance", want: TaskQueues{Chat: true, Maintenance: true}},
		{name: "any order", value: "maintenance,image", want: TaskQueues{Image: true, Maintenance: true}},
		{name: "blanks around items", value: " chat ,\timage\t", want: TaskQueues{Chat: true, Image: true}},
		{name: "empty items skipped", value: "chat,,image,", want: TaskQueues{Chat: true, Image: true}},
		{name: "mixed case", value: "Chat,IMAGE,mainTenance", want: TaskQueues{Chat: true, Image: true, Maintenance: true}},
		{name: "unknown name", value: "chat,video", wantErr: []string{"WORKER_TASK_QUEUES", `unknown task queue "video"`, "chat, image and maintenance"}},
		{name: "full task queue name", value: "aihigress-chat", wantErr: []string{"WORKER_TASK_QUEUES", `unknown task queue "aihigress-chat"`}},
		{name: "duplicate", value: "chat,image,chat", wantErr: []string{"WORKER_TASK_QUEUES", `"chat" twice`}},
		{name: "duplicate in other case", value: "image, Image", wantErr: []string{"WORKER_TASK_QUEUES", `"Image" twice`}},
		{name: "only commas", value: " , ,", wantErr: []string{"WORKER_TASK_QUEUES must list at least one of chat, image and maintenance"}},
		{name: "only blanks", value: "   ", wantErr: []string{"WORKER_TASK_QUEUES must list at least one of chat, image and maintenance"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(envOf(map[string]string{"WORKER_TASK_QUEUES": tt.value}))
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("WORKER_TASK_QUEUES=%q loaded %+v, want an error", tt.value, cfg.Worker.TaskQueues)
				}
				if !strings.HasPrefix(err.Error(), "invalid configuration: ") {
					t.Errorf("error = %q, want the prefix %q", err, "invalid configuration: ")
				}
				for _, part := range tt.wantErr {
					if !strings.Contains(err.Error(), part) {
						t.Errorf("error = %q, want it to contain %q", err, part)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Worker.TaskQueues != tt.want {
				t.Errorf("WORKER_TASK_QUEUES=%q gives %+v, want %+v", tt.value, cfg.Worker.TaskQueues, tt.want)
			}
		})
	}
}

func TestTaskQueuesNames(t *testing.T) {
	tests := []struct {
		name   string
		queues TaskQueues
		want   []string
	}{
		{name: "none", queues: TaskQueues{}, want: nil},
		{name: "all", queues: AllTaskQueues(), want: []string{"chat", "image", "maintenance"}},
		{name: "image and maintenance", queues: TaskQueues{Image: true, Maintenance: true}, want: []string{"image", "maintenance"}},
		{name: "chat", queues: TaskQueues{Chat: true}, want: []string{"chat"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.queues.Names(); !slices.Equal(got, tt.want) {
				t.Errorf("Names() = %q, want %q", got, tt.want)
			}
		})
	}
}
