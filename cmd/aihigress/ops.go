package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"
	"time"

	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/aihigress/aihigress/internal/config"
	"github.com/aihigress/aihigress/internal/payloadcodec"
	"github.com/aihigress/aihigress/internal/replay"
	"github.com/aihigress/aihigress/internal/runsearch"
)

// devTemporalAddress is the frontend address of the dev server that
// `aihigress dev` starts. The operator commands use it when
// TEMPORAL_ADDRESS is unset.
const devTemporalAddress = "127.0.0.1:7233"

// dialTemporal connects to the configured cluster with the service's data
// converter, which replays and searches need to read payloads.
func dialTemporal(ctx context.Context, cfg config.Config, converters payloadcodec.Converters, logger *slog.Logger) (client.Client, error) {
	address := cfg.TemporalAddress
	if address == "" {
		address = devTemporalAddress
	}
	c, err := client.DialContext(ctx, client.Options{
		HostPort:         address,
		Namespace:        cfg.TemporalNamespace,
		Logger:           tlog.NewStructuredLogger(logger.With("component", "temporal")),
		DataConverter:    converters.Data,
		FailureConverter: converters.Failure,
	})
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s: %w", address, err)
	}
	return c, nil
}

// runRuns serves `aihigress runs search`.
func runRuns(ctx context.Context, cfg config.Config, args []string, stdout io.Writer, logger *slog.Logger) error {
	if len(args) == 0 || args[0] != "search" {
		return errors.New("usage: aihigress runs search [--status S] [--since 1h] [--kind chat|image] [--user ID] [--conversation ID] [--model NAME] [--provider ID] [--query Q] [--limit N]")
	}
	flags := flag.NewFlagSet("runs search", flag.ContinueOnError)
	var filter runsearch.Filter
	flags.StringVar(&filter.Status, "status", "", "run status: queued, running, succeeded, failed or canceled")
	flags.DurationVar(&filter.Since, "since", 0, "only runs started within this duration, such as 1h")
	flags.StringVar(&filter.Kind, "kind", "", "run kind: chat or image")
	flags.StringVar(&filter.UserID, "user", "", "user ID")
	flags.StringVar(&filter.ConversationID, "conversation", "", "conversation ID")
	flags.StringVar(&filter.LogicalModel, "model", "", "logical model")
	flags.StringVar(&filter.Provider, "provider", "", "provider ID")
	flags.StringVar(&filter.Extra, "query", "", "extra Temporal visibility query, joined with AND")
	limit := flags.Int("limit", 50, "maximum number of runs to print")
	if err := flags.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if err := filter.Check(); err != nil {
		return err
	}
	if *limit < 1 {
		return fmt.Errorf("invalid --limit %d: use 1 or more", *limit)
	}

	converters, err := payloadcodec.New(cfg.Payloads)
	if err != nil {
		return err
	}
	c, err := dialTemporal(ctx, cfg, converters, logger)
	if err != nil {
		return err
	}
	defer c.Close()
	query := filter.Query(time.Now())
	executions, err := runsearch.List(ctx, c, cfg.TemporalNamespace, query, *limit)
	if err != nil {
		return err
	}

	table := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(table, "RUN ID\tWORKFLOW ID\tSTATUS\tPROVIDER\tSTARTED\tTEMPORAL UI")
	for _, e := range executions {
		fmt.Fprintf(table, "%s\t%s\t%s\t%s\t%s\t%s\n", e.AppRunID(), e.WorkflowID, e.RunStatus, e.Provider,
			e.StartTime.UTC().Format(time.RFC3339), runsearch.UILink(cfg.TemporalUIURL, cfg.TemporalNamespace, e))
	}
	if err := table.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d run(s) matching %s\n", len(executions), query)
	return nil
}

// runReplay serves `aihigress replay`. It returns an error when any history
// fails to replay, so that scripts and CI can stop on it.
func runReplay(ctx context.Context, cfg config.Config, args []string, stdout io.Writer, logger *slog.Logger) error {
	flags := flag.NewFlagSet("replay", flag.ContinueOnError)
	workflowID := flags.String("workflow-id", "", "replay this workflow's history from the cluster")
	runID := flags.String("run-id", "", "with --workflow-id: this run instead of the latest")
	file := flags.String("file", "", "replay a history saved with `temporal workflow show --output json`, or every .json file in a folder")
	query := flags.String("query", "", `replay every workflow matching this visibility query, such as 'AihRunStatus="failed"'`)
	since := flags.Duration("since", 0, "with --query: only workflows started within this duration")
	limit := flags.Int("limit", 1000, "with --query: maximum number of workflows to replay")
	if err := flags.Parse(args); err != nil {
		return err
	}
	chosen := 0
	for _, set := range []bool{*workflowID != "", *file != "", *query != "" || *since > 0} {
		if set {
			chosen++
		}
	}
	if chosen != 1 {
		return errors.New("usage: aihigress replay --workflow-id ID [--run-id ID] | --file history.json|folder | --query Q [--since 24h] [--limit N]")
	}

	// The replayer decodes payloads as the workers encoded them, with
	// TEMPORAL_PAYLOAD_KEY and TEMPORAL_PAYLOAD_KEYS_OLD.
	converters, err := payloadcodec.New(cfg.Payloads)
	if err != nil {
		return err
	}
	replayer := replay.New(converters.ReplayerOptions(), logger)
	if *file != "" {
		results, err := replayer.Path(*file)
		if err != nil {
			return err
		}
		return report(stdout, results)
	}

	c, err := dialTemporal(ctx, cfg, converters, logger)
	if err != nil {
		return err
	}
	defer c.Close()
	if *workflowID != "" {
		return report(stdout, []replay.Result{replayer.Execution(ctx, c, *workflowID, *runID)})
	}

	filter := runsearch.Filter{Since: *since, Extra: *query}
	executions, err := runsearch.List(ctx, c, cfg.TemporalNamespace, filter.Query(time.Now()), *limit)
	if err != nil {
		return err
	}
	results := make([]replay.Result, 0, len(executions))
	for _, e := range executions {
		if e.Running {
			// A running workflow's history ends mid-task; replaying it
			// proves little and may race with the worker.
			continue
		}
		results = append(results, replayer.Execution(ctx, c, e.WorkflowID, e.RunID))
	}
	return report(stdout, results)
}

// report prints one line per replay and a summary, and returns an error
// when any replay failed.
func report(stdout io.Writer, results []replay.Result) error {
	failed, nondeterministic := 0, 0
	for _, r := range results {
		switch {
		case r.Err == nil:
			fmt.Fprintf(stdout, "ok      %s %s (%d events)\n", r.WorkflowID, r.RunID, r.Events)
		case r.Nondeterministic():
			failed++
			nondeterministic++
			fmt.Fprintf(stdout, "NONDETERMINISTIC %s %s at event %d: %v\n", r.WorkflowID, r.RunID, r.EventID, r.Err)
		default:
			failed++
			fmt.Fprintf(stdout, "FAILED  %s %s (%s): %v\n", r.WorkflowID, r.RunID, r.Source, r.Err)
		}
	}
	fmt.Fprintf(stdout, "replayed %d, ok %d, nondeterministic %d, other failures %d\n",
		len(results), len(results)-failed, nondeterministic, failed-nondeterministic)
	if failed > 0 {
		return fmt.Errorf("%d of %d replays failed", failed, len(results))
	}
	return nil
}
