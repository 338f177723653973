package app

import (
	"errors"
	"fmt"

	sdkworker "go.temporal.io/sdk/worker"

	"github.com/aihigress/aihigress/internal/config"
	"github.com/aihigress/aihigress/workflows"
)

// TaskQueueNames returns the Temporal task queues that queues selects, in
// the order chat, image, maintenance, in which RunWorker starts their
// workers.
func TaskQueueNames(queues config.TaskQueues) []string {
	var names []string
	if queues.Chat {
		names = append(names, workflows.ChatTaskQueue)
	}
	if queues.Image {
		names = append(names, workflows.ImageTaskQueue)
	}
	if queues.Maintenance {
		names = append(names, workflows.MaintenanceTaskQueue)
	}
	return names
}

// buildWorker builds the worker of one of the task queues that
// TaskQueueNames returns.
func (a *App) buildWorker(taskQueue string) (sdkworker.Worker, error) {
	switch taskQueue {
	case workflows.ChatTaskQueue:
		return a.ChatWorker(), nil
	case workflows.ImageTaskQueue:
		return a.ImageWorker(), nil
	case workflows.MaintenanceTaskQueue:
		return a.MaintenanceWorker()
	}
	return nil, fmt.Errorf("no worker for task queue %q", taskQueue)
}

// startWorkers builds and starts the workers of queues and returns them
// with their task queues. When one fails to build or start, it stops the
// ones already started and returns the error.
func (a *App) startWorkers(queues config.TaskQueues) (started []sdkworker.Worker, taskQueues []string, err error) {
	taskQueues = TaskQueueNames(queues)
	if len(taskQueues) == 0 {
		return nil, nil, errors.New("no worker to start: WORKER_TASK_QUEUES must list at least one of chat, image and maintenance")
	}
	for _, taskQueue := range taskQueues {
		w, err := a.buildWorker(taskQueue)
		if err == nil {
			err = w.Start()
		}
		if err != nil {
			if len(started) > 0 {
				a.stopWorkers(started...)
			}
			return nil, nil, fmt.Errorf("start the worker of task queue %s: %w", taskQueue, err)
		}
		started = append(started, w)
	}
	return started, taskQueues, nil
}
