package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/aihigress/aihigress/internal/app"
	"github.com/aihigress/aihigress/internal/config"
)

const healthcheckUsage = `usage: aihigress healthcheck [-timeout 5s] <url>
       aihigress healthcheck -worker [-timeout 5s] [-max-poll-age 2m]

With a URL, the check passes when GET <url> returns a 2xx status.
With -worker, it passes when a worker on this host has polled the workflow
and activity tasks of every task queue in WORKER_TASK_QUEUES (by default
chat, image and maintenance) within -max-poll-age.
The exit status is 0 when the check passes and 1 when it fails.
`

// pollTaskTypes are the task types that a worker polls on each queue.
var pollTaskTypes = []client.TaskQueueType{client.TaskQueueTypeWorkflow, client.TaskQueueTypeActivity}

// runHealthcheck checks a URL or, with -worker, this host's worker. The
// static container image has no shell or curl, so Compose health checks call
// this subcommand.
func runHealthcheck(ctx context.Context, cfg config.Config, args []string, logger *slog.Logger) error {
	flags := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	flags.SetOutput(os.Stderr)
	flags.Usage = func() {
		fmt.Fprint(flags.Output(), healthcheckUsage+"\nflags:\n")
		flags.PrintDefaults()
	}
	worker := flags.Bool("worker", false, "check this host's Temporal worker instead of a URL")
	timeout := flags.Duration("timeout", 5*time.Second, "maximum duration of the check")
	maxPollAge := flags.Duration("max-poll-age", 2*time.Minute, "with -worker: maximum age of the worker's last poll")
	if err := flags.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	if *timeout <= 0 || *maxPollAge <= 0 {
		return fmt.Errorf("invalid -timeout %s or -max-poll-age %s: both must be positive", *timeout, *maxPollAge)
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	if *worker {
		if flags.NArg() != 0 {
			flags.Usage()
			return fmt.Errorf("healthcheck -worker takes no URL, got %q", flags.Args())
		}
		hostname, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("read the hostname: %w", err)
		}
		return checkWorker(ctx, cfg, hostname, *maxPollAge, logger)
	}
	if flags.NArg() != 1 {
		flags.Usage()
		return fmt.Errorf("healthcheck needs exactly one URL or -worker, got %q", flags.Args())
	}
	return checkURL(ctx, flags.Arg(0))
}

// checkURL sends GET rawURL and fails unless the status is 2xx. Redirects
// count as failures, because a health endpoint that redirects is
// misconfigured.
func checkURL(ctx context.Context, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("invalid health check URL %q: %w", rawURL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("invalid health check URL %q: expected http:// or https:// with a host", rawURL)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("build health check request for %s: %w", u.Redacted(), err)
	}
	httpClient := &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return fmt.Errorf("health check request failed: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s returned %s, expected a 2xx status", u.Redacted(), resp.Status)
	}
	return nil
}

// checkWorker connects to Temporal and checks the task queue pollers with
// checkWorkerPolls.
func checkWorker(ctx context.Context, cfg config.Config, hostname string, maxPollAge time.Duration, logger *slog.Logger) error {
	if cfg.TemporalAddress == "" {
		return errors.New("TEMPORAL_ADDRESS is not set; healthcheck -worker needs the Temporal frontend that the worker uses")
	}
	c, err := client.DialContext(ctx, client.Options{
		HostPort:  cfg.TemporalAddress,
		Namespace: cfg.TemporalNamespace,
		Logger:    tlog.NewStructuredLogger(logger.With("component", "temporal")),
	})
	if err != nil {
		return fmt.Errorf("connect to Temporal at %s: %w", cfg.TemporalAddress, err)
	}
	defer c.Close()
	return checkWorkerPolls(ctx, c, app.TaskQueueNames(cfg.Worker.TaskQueues), hostname, maxPollAge, time.Now())
}

// checkWorkerPolls fails unless a poller on hostname has polled the workflow
// and the activity tasks of every queue in taskQueues since now-maxPollAge.
// An idle worker still polls: each long poll lasts about a minute, and
// Temporal records its start and its end.
//
// NOTE: Temporal Server 1.29 marks the enhanced DescribeTaskQueue mode that
// this uses as deprecated. It is the mode that collects the pollers of every
// partition of a task queue, while the plain mode reports only those of the
// root partition.
func checkWorkerPolls(ctx context.Context, c client.Client, taskQueues []string, hostname string, maxPollAge time.Duration, now time.Time) error {
	for _, queue := range taskQueues {
		desc, err := c.DescribeTaskQueueEnhanced(ctx, client.DescribeTaskQueueEnhancedOptions{
			TaskQueue:      queue,
			TaskQueueTypes: pollTaskTypes,
			ReportPollers:  true,
		})
		if err != nil {
			return fmt.Errorf("describe task queue %s: %w", queue, err)
		}
		for _, taskType := range pollTaskTypes {
			last := lastPollFromHost(desc, taskType, hostname)
			if last.IsZero() {
				return fmt.Errorf("no worker on host %q polls the %s tasks of task queue %s", hostname, taskTypeName(taskType), queue)
			}
			if age := now.Sub(last); age > maxPollAge {
				return fmt.Errorf("the worker on host %q last polled the %s tasks of task queue %s %s ago, more than -max-poll-age %s",
					hostname, taskTypeName(taskType), queue, age.Round(time.Second), maxPollAge)
			}
		}
	}
	return nil
}

// lastPollFromHost returns the latest poll time of taskType by a poller on
// hostname, or the zero time when there is none. The Go SDK's default worker
// identity is "<pid>@<hostname>@", and AI Higress does not set another one.
// In a container the hostname is the container's own, so this finds the
// worker of that container.
func lastPollFromHost(desc client.TaskQueueDescription, taskType client.TaskQueueType, hostname string) time.Time {
	var last time.Time
	for _, version := range desc.VersionsInfo {
		for _, poller := range version.TypesInfo[taskType].Pollers {
			parts := strings.Split(poller.Identity, "@")
			if len(parts) < 2 || parts[1] != hostname {
				continue
			}
			if poller.LastAccessTime.After(last) {
				last = poller.LastAccessTime
			}
		}
	}
	return last
}

func taskTypeName(taskType client.TaskQueueType) string {
	switch taskType {
	case client.TaskQueueTypeWorkflow:
		return "workflow"
	case client.TaskQueueTypeActivity:
		return "activity"
	default:
		return fmt.Sprintf("type %d", taskType)
	}
}
