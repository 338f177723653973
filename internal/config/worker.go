package config

import (
	"fmt"
	"strings"
)

// Worker tunes the Temporal workers of the chat and image task queues in
// `aihigress worker` and `aihigress dev`. The maintenance worker keeps its
// own defaults.
type Worker struct {
	// TaskQueues selects the workers that `aihigress worker` starts.
	// `aihigress dev` starts all of them whatever it contains.
	TaskQueues TaskQueues
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
	// StickyCacheSize is the number of workflows whose state one process
	// keeps between workflow tasks, for all its workers together. 0 keeps
	// the Go SDK default of 10,000.
	StickyCacheSize int
}

// TaskQueues is the set of task queues in WORKER_TASK_QUEUES, by their
// short names chat, image and maintenance.
type TaskQueues struct {
	Chat        bool
	Image       bool
	Maintenance bool
}

// AllTaskQueues returns the selection of every task queue, the default of
// WORKER_TASK_QUEUES.
func AllTaskQueues() TaskQueues {
	return TaskQueues{Chat: true, Image: true, Maintenance: true}
}

// Names returns the short names of the selected task queues in the order
// chat, image, maintenance.
func (q TaskQueues) Names() []string {
	var names []string
	if q.Chat {
		names = append(names, "chat")
	}
	if q.Image {
		names = append(names, "image")
	}
	if q.Maintenance {
		names = append(names, "maintenance")
	}
	return names
}

// field returns the field of q for a lower-case short name, or nil for an
// unknown name.
func (q *TaskQueues) field(name string) *bool {
	switch name {
	case "chat":
		return &q.Chat
	case "image":
		return &q.Image
	case "maintenance":
		return &q.Maintenance
	}
	return nil
}

// acceptedTaskQueues is the list of short names for error messages.
const acceptedTaskQueues = "chat, image and maintenance"

// taskQueues reads a comma-separated list of the short names chat, image
// and maintenance, in any case and with blanks around the items. An empty
// value selects all of them. A value that lists no name, names an unknown
// task queue or names one twice is an error.
func (l *lookup) taskQueues(name string) TaskQueues {
	raw := l.getenv(name)
	if raw == "" {
		return AllTaskQueues()
	}
	var queues TaskQueues
	for _, item := range strings.Split(raw, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		selected := queues.field(strings.ToLower(item))
		switch {
		case selected == nil:
			l.errs = append(l.errs, fmt.Sprintf("%s contains the unknown task queue %q; accepted values are %s", name, item, acceptedTaskQueues))
			return AllTaskQueues()
		case *selected:
			l.errs = append(l.errs, fmt.Sprintf("%s lists the task queue %q twice; list each of %s at most once", name, item, acceptedTaskQueues))
			return AllTaskQueues()
		}
		*selected = true
	}
	if queues == (TaskQueues{}) {
		l.errs = append(l.errs, fmt.Sprintf("%s must list at least one of %s, or be unset for all of them, got %q", name, acceptedTaskQueues, raw))
		return AllTaskQueues()
	}
	return queues
}

func loadWorker(env *lookup) Worker {
	return Worker{
		TaskQueues:                   env.taskQueues("WORKER_TASK_QUEUES"),
		ChatMaxConcurrentActivities:  env.integer("WORKER_CHAT_MAX_CONCURRENT_ACTIVITIES", 1000),
		ImageMaxConcurrentActivities: env.integer("WORKER_IMAGE_MAX_CONCURRENT_ACTIVITIES", 100),
		WorkflowTaskPollers:          env.integer("WORKER_WORKFLOW_TASK_POLLERS", 0),
		ActivityTaskPollers:          env.integer("WORKER_ACTIVITY_TASK_POLLERS", 0),
		StickyCacheSize:              env.integer("WORKER_STICKY_CACHE_SIZE", 0),
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
