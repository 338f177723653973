package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/aihigress/aihigress/bench/internal/benchstack"
)

// The baseline workflows run on their own task queue, in a worker inside
// the benchmark process, so that the chat worker never receives their
// tasks.
const (
	baselineTaskQueue           = "chatbench-baseline"
	baselinePublishWorkflowName = "ChatbenchPublishWorkflow"
	baselineShapeWorkflowName   = "ChatbenchChatShapeWorkflow"
	baselinePublishActivityName = "ChatbenchPublish"
	baselineNoopActivityName    = "ChatbenchNoop"
)

// baselineActivities are the activities of the baseline workflows.
type baselineActivities struct {
	redis   *redis.Client
	channel string
}

// Publish sends "<payload> <start>" on the channel, where start is when
// the activity began, in Unix nanoseconds.
func (a *baselineActivities) Publish(ctx context.Context, payload string) error {
	started := time.Now().UnixNano()
	if err := a.redis.Publish(ctx, a.channel, payload+" "+strconv.FormatInt(started, 10)).Err(); err != nil {
		return fmt.Errorf("publish %s: %w", payload, err)
	}
	return nil
}

// Noop does nothing. The baseline workflows run it in place of the chat
// activities.
func (a *baselineActivities) Noop(context.Context) error {
	return nil
}

// publishWorkflow runs one activity that publishes payload on Redis.
func publishWorkflow(ctx workflow.Context, payload string) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	return workflow.ExecuteActivity(ctx, baselinePublishActivityName, payload).Get(ctx, nil)
}

// chatShapeWorkflow runs the activities of a successful chat run (one local
// activity, then two activities, one after another) with no work in them.
func chatShapeWorkflow(ctx workflow.Context) error {
	localCtx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	if err := workflow.ExecuteLocalActivity(localCtx, baselineNoopActivityName).Get(localCtx, nil); err != nil {
		return err
	}

	activityCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	for range 2 {
		if err := workflow.ExecuteActivity(activityCtx, baselineNoopActivityName).Get(activityCtx, nil); err != nil {
			return err
		}
	}
	return nil
}

// baseline runs the bare workflows that the chat runs are compared with.
type baseline struct {
	client  client.Client
	worker  sdkworker.Worker
	redis   *redis.Client
	channel string
	idBase  string
}

// startBaseline connects to Temporal and starts the baseline worker with
// the same concurrency limits as the chat worker.
func startBaseline(ctx context.Context, hostPort string, rdb *redis.Client, redisPrefix string, logger *slog.Logger) (*baseline, error) {
	c, err := client.DialContext(ctx, client.Options{
		HostPort:  hostPort,
		Namespace: "default",
		Logger:    tlog.NewStructuredLogger(logger.With("component", "temporal")),
	})
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s: %w", hostPort, err)
	}

	b := &baseline{client: c, redis: rdb, channel: redisPrefix + "baseline", idBase: "chatbench-" + benchstack.RandomHex(4)}
	acts := &baselineActivities{redis: rdb, channel: b.channel}
	w := sdkworker.New(c, baselineTaskQueue, sdkworker.Options{
		MaxConcurrentActivityExecutionSize:      1000,
		MaxConcurrentLocalActivityExecutionSize: 1000,
	})
	w.RegisterWorkflowWithOptions(publishWorkflow, workflow.RegisterOptions{Name: baselinePublishWorkflowName})
	w.RegisterWorkflowWithOptions(chatShapeWorkflow, workflow.RegisterOptions{Name: baselineShapeWorkflowName})
	w.RegisterActivityWithOptions(acts.Publish, activity.RegisterOptions{Name: baselinePublishActivityName})
	w.RegisterActivityWithOptions(acts.Noop, activity.RegisterOptions{Name: baselineNoopActivityName})
	if err := w.Start(); err != nil {
		c.Close()
		return nil, fmt.Errorf("start baseline worker: %w", err)
	}
	b.worker = w
	return b, nil
}

func (b *baseline) close() {
	b.worker.Stop()
	b.client.Close()
}

// Timeline steps of a baseline publish workflow.
const (
	stepExecuteReturned = "ExecuteWorkflow returned"
	stepActivityStarted = "activity started"
	stepMessageReceived = "message at the Redis subscriber"
)

var baselineSteps = []string{stepExecuteReturned, stepActivityStarted, stepMessageReceived}

// baselineLatency holds the samples of the sequential baseline phase.
type baselineLatency struct {
	received []time.Duration
	timeline timeline
}

// measureLatency runs warmup+runs publish workflows one after another and
// samples the time from the ExecuteWorkflow call to the Redis message.
func (b *baseline) measureLatency(ctx context.Context, warmup, runs int, timeout time.Duration) (baselineLatency, error) {
	latency := baselineLatency{timeline: make(timeline)}

	pubsub := b.redis.Subscribe(ctx, b.channel)
	defer pubsub.Close()
	if _, err := pubsub.Receive(ctx); err != nil {
		return latency, fmt.Errorf("subscribe to %s: %w", b.channel, err)
	}
	messages := pubsub.Channel()

	for i := range warmup + runs {
		id := fmt.Sprintf("%s-latency-%d", b.idBase, i)
		runCtx, cancel := context.WithTimeout(ctx, timeout)
		sample, err := b.publishOnce(runCtx, id, messages)
		cancel()
		if err != nil {
			return latency, err
		}
		if i < warmup {
			continue
		}
		latency.received = append(latency.received, sample[stepMessageReceived])
		for step, offset := range sample {
			latency.timeline[step] = append(latency.timeline[step], offset)
		}
	}
	return latency, nil
}

// publishOnce starts one publish workflow, waits for its message and for the
// workflow to complete, and returns the offset of each step.
func (b *baseline) publishOnce(ctx context.Context, id string, messages <-chan *redis.Message) (map[string]time.Duration, error) {
	start := time.Now()
	run, err := b.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: baselineTaskQueue}, baselinePublishWorkflowName, id)
	if err != nil {
		return nil, fmt.Errorf("start workflow %s: %w", id, err)
	}
	steps := map[string]time.Duration{stepExecuteReturned: time.Since(start)}

	for steps[stepMessageReceived] == 0 {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for the Redis message of workflow %s: %w", id, ctx.Err())
		case msg, ok := <-messages:
			if !ok {
				return nil, errors.New("the Redis subscription closed")
			}
			payload, startedAt, _ := strings.Cut(msg.Payload, " ")
			if payload != id {
				continue
			}
			steps[stepMessageReceived] = time.Since(start)
			nanos, err := strconv.ParseInt(startedAt, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("parse activity start %q of workflow %s: %w", startedAt, id, err)
			}
			steps[stepActivityStarted] = time.Unix(0, nanos).Sub(start)
		}
	}

	if err := run.Get(ctx, nil); err != nil {
		return nil, fmt.Errorf("workflow %s failed: %w", id, err)
	}
	return steps, nil
}

// measureThroughput runs the chat-shaped workflow in a closed loop, one
// workflow at a time per client.
func (b *baseline) measureThroughput(ctx context.Context, clients int, load loadOptions, timeout time.Duration) (loadResult, []string) {
	var firstErrors []string
	errs := make(chan string, clients)
	result := runLoad(ctx, clients, load, func(ctx context.Context, clientIndex, iteration int) (time.Time, error) {
		runCtx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		id := fmt.Sprintf("%s-shape-%d-%d", b.idBase, clientIndex, iteration)
		run, err := b.client.ExecuteWorkflow(runCtx, client.StartWorkflowOptions{ID: id, TaskQueue: baselineTaskQueue}, baselineShapeWorkflowName)
		if err == nil {
			err = run.Get(runCtx, nil)
		}
		if err != nil {
			select {
			case errs <- fmt.Sprintf("workflow %s: %v", id, err):
			default:
			}
		}
		return time.Now(), err
	})
	close(errs)
	for message := range errs {
		if len(firstErrors) < 5 {
			firstErrors = append(firstErrors, message)
		}
	}
	return result, firstErrors
}
