package config

import "fmt"

// Worker tunes the Temporal workers of the chat and image task queues in
// `aihigress worker` and `aihigress dev`. The maintenance worker keeps its
// own defaults.
type Worker struct {
	// ChatMaxConcurrentActivities and ImageMaxConcurrentActivities cap the
	// activities, and separately the local activities, that one process runs
	// at once on each task queue.
	ChatMaxConcurrentActivities  int
	ImageMaxConcurrentActivities int
	// WorkflowTaskPollers and ActivityTaskPollers are the maximum number of
	// concurrent long polls per task queue and process. 0 keeps the Go SDK
	// default: 2, or poller autoscaling when the namespace enrolls workers
	// in it.
	WorkflowTaskPollers int
	ActivityTaskPollers int
}

func loadWorker(env *lookup) Worker {
	return Worker{
		ChatMaxConcurrentActivities:  env.integer("WORKER_CHAT_MAX_CONCURRENT_ACTIVITIES", 1000),
		ImageMaxConcurrentActivities: env.integer("WORKER_IMAGE_MAX_CONCURRENT_ACTIVITIES", 100),
		WorkflowTaskPollers:          env.integer("WORKER_WORKFLOW_TASK_POLLERS", 0),
		ActivityTaskPollers:          env.integer("WORKER_ACTIVITY_TASK_POLLERS", 0),
	}
}

func (w Worker) validate() error {
	if w.ChatMaxConcurrentActivities < 1 {
		return fmt.Errorf("invalid configuration: WORKER_CHAT_MAX_CONCURRENT_ACTIVITIES must be at least 1, got %d", w.ChatMaxConcurrentActivities)
	}
	if w.ImageMaxConcurrentActivities < 1 {
		return fmt.Errorf("invalid configuration: WORKER_IMAGE_MAX_CONCURRENT_ACTIVITIES must be at least 1, got %d", w.ImageMaxConcurrentActivities)
	}
	// With one workflow task poller, the Go SDK polls only the sticky queue
	// and never the normal one, so it rejects that value with a panic.
	if w.WorkflowTaskPollers == 1 {
		return fmt.Errorf("invalid configuration: WORKER_WORKFLOW_TASK_POLLERS must be 0 for the SDK default or at least 2, got 1")
	}
	return nil
}
