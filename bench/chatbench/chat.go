package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Terminal run event types. The stream's done frame follows each of them.
var terminalEvents = map[string]bool{"message.completed": true, "message.failed": true, "run.canceled": true}

// chatOutcome is one chat run as the client saw it, completed by check with
// what GET /v1/runs/{id} returns.
type chatOutcome struct {
	conversationID string
	runID          string

	sent       time.Time     // just before the POST was sent
	headers    time.Duration // from sent to the response headers
	firstDelta time.Duration // from sent to the first message.delta frame, 0 without one
	done       time.Time     // when the done frame arrived

	// firstDeltaStored is the created_at of the first message.delta event:
	// when the worker received the first token.
	firstDeltaStored time.Time

	lastSeq    int64
	lost       int64 // sequence numbers skipped, including missing ones at the end
	duplicated int64 // events that repeated or went back on a sequence number
	terminal   string
	text       string // reply rebuilt from the deltas

	// Filled in by check.
	status        string
	textMismatch  bool
	runCreatedAt  time.Time
	runStartedAt  time.Time
	runFinishedAt time.Time

	err error
}

// wireEvent is the data of a run event frame. Only message.delta payloads
// carry the delta field.
type wireEvent struct {
	Type      string    `json:"type"`
	RunID     string    `json:"run_id"`
	Seq       int64     `json:"seq"`
	EventType string    `json:"event_type"`
	CreatedAt time.Time `json:"created_at"`
	Payload   struct {
		Delta string `json:"delta"`
	} `json:"payload"`
}

// streamChatRun posts content to the conversation with streaming on and
// reads the SSE response until its done frame, checking the order of the
// run events on the way.
func streamChatRun(ctx context.Context, client *apiClient, conversationID, content string) chatOutcome {
	outcome := chatOutcome{conversationID: conversationID, sent: time.Now()}
	resp, err := client.postStreaming(ctx, conversationID, content)
	if err != nil {
		outcome.err = err
		return outcome
	}
	defer resp.Body.Close()
	outcome.headers = time.Since(outcome.sent)

	reader := newSSEReader(resp.Body)
	var text strings.Builder
	for {
		frame, err := reader.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			outcome.err = fmt.Errorf("read event stream of run %q after seq %d: %w", outcome.runID, outcome.lastSeq, err)
			return outcome
		}

		switch frame.event {
		case "done":
			outcome.done = time.Now()
			outcome.text = text.String()
			if outcome.terminal == "" {
				outcome.err = fmt.Errorf("run %q: done frame without a terminal event", outcome.runID)
			}
			return outcome
		case "replay.done", "heartbeat":
			continue
		case "error":
			outcome.err = fmt.Errorf("run %q: the server sent an error frame: %s", outcome.runID, truncate(string(frame.data), 300))
			return outcome
		}

		if err := outcome.addEvent(frame, &text); err != nil {
			outcome.err = err
			return outcome
		}
	}
}

// addEvent checks one run event frame against the sequence so far and
// applies its delta.
func (o *chatOutcome) addEvent(frame sseFrame, text *strings.Builder) error {
	var event wireEvent
	if err := json.Unmarshal(frame.data, &event); err != nil {
		return fmt.Errorf("decode %s frame of run %q: %w", frame.event, o.runID, err)
	}
	if event.Type != "run.event" || event.EventType != frame.event {
		return fmt.Errorf("frame %q carries type %q and event_type %q, want run.event and %q", frame.event, event.Type, event.EventType, frame.event)
	}
	if !frame.hasID || frame.id != event.Seq {
		return fmt.Errorf("%s frame of run %q has id %d (present: %t) but seq %d", frame.event, event.RunID, frame.id, frame.hasID, event.Seq)
	}
	if o.runID == "" {
		o.runID = event.RunID
	}

	want := o.lastSeq + 1
	switch {
	case event.Seq < want:
		o.duplicated++
		return nil
	case event.Seq > want:
		o.lost += event.Seq - want
	}
	o.lastSeq = event.Seq

	switch event.EventType {
	case "message.delta":
		if o.firstDelta == 0 {
			o.firstDelta = time.Since(o.sent)
			o.firstDeltaStored = event.CreatedAt
		}
		text.WriteString(event.Payload.Delta)
	case "message.reset":
		text.Reset()
	}
	if terminalEvents[event.EventType] {
		o.terminal = event.EventType
	}
	return nil
}

// check compares the outcome with the stored run: the run must have
// succeeded, its last_seq must be the last event the client saw and its
// output_text the reply rebuilt from the deltas.
func (o *chatOutcome) check(ctx context.Context, client *apiClient) {
	if o.err != nil || o.runID == "" {
		return
	}
	detail, err := client.run(ctx, o.runID)
	if err != nil {
		o.err = err
		return
	}

	o.status = detail.Status
	o.runCreatedAt = detail.CreatedAt
	if detail.StartedAt != nil {
		o.runStartedAt = *detail.StartedAt
	}
	if detail.FinishedAt != nil {
		o.runFinishedAt = *detail.FinishedAt
	}
	if detail.LastSeq > o.lastSeq {
		o.lost += detail.LastSeq - o.lastSeq
	}
	if detail.LastSeq < o.lastSeq {
		o.err = fmt.Errorf("run %s: the client saw seq %d but last_seq is %d", o.runID, o.lastSeq, detail.LastSeq)
		return
	}
	stored := ""
	if detail.OutputText != nil {
		stored = *detail.OutputText
	}
	o.textMismatch = stored != o.text
}

// chatTally counts how the runs of a phase went.
type chatTally struct {
	runs           int
	succeeded      int
	failed         int // errors, or a status other than succeeded
	textMismatches int
	lost           int64
	duplicated     int64
	firstErrors    []string
}

func (t *chatTally) add(o *chatOutcome) {
	t.runs++
	t.lost += o.lost
	t.duplicated += o.duplicated
	if o.textMismatch {
		t.textMismatches++
	}
	switch {
	case o.err != nil:
		t.failed++
		t.noteError(o.err.Error())
	case o.status != "succeeded":
		t.failed++
		t.noteError(fmt.Sprintf("run %s ended %q with terminal event %q", o.runID, o.status, o.terminal))
	default:
		t.succeeded++
	}
}

func (t *chatTally) noteError(message string) {
	if len(t.firstErrors) < 5 {
		t.firstErrors = append(t.firstErrors, message)
	}
}

func (t *chatTally) merge(other chatTally) {
	t.runs += other.runs
	t.succeeded += other.succeeded
	t.failed += other.failed
	t.textMismatches += other.textMismatches
	t.lost += other.lost
	t.duplicated += other.duplicated
	for _, message := range other.firstErrors {
		t.noteError(message)
	}
}

// chatLatency holds the samples of the sequential phase.
type chatLatency struct {
	firstDelta []time.Duration
	timeline   timeline
}

// timeline holds, per step of a run, the offset from the POST of each
// sampled run.
type timeline map[string][]time.Duration

// Timeline steps of a chat run, in the order they happen.
const (
	stepRunCreated     = "run row created (API)"
	stepHeaders        = "response headers (workflow started)"
	stepRunStarted     = "run marked running (worker, local activity)"
	stepFirstToken     = "first token at the worker"
	stepFirstDeltaSeen = "first message.delta at the client"
	stepRunFinished    = "run finalized (worker, FinalizeRun)"
	stepDoneSeen       = "done frame at the client"
)

var chatSteps = []string{stepRunCreated, stepHeaders, stepRunStarted, stepFirstToken, stepFirstDeltaSeen, stepRunFinished, stepDoneSeen}

// add records the steps of a checked, successful outcome.
func (t timeline) add(o *chatOutcome) {
	if o.err != nil || o.status != "succeeded" || o.firstDelta == 0 {
		return
	}
	offsets := map[string]time.Duration{
		stepRunCreated:     o.runCreatedAt.Sub(o.sent),
		stepHeaders:        o.headers,
		stepRunStarted:     o.runStartedAt.Sub(o.sent),
		stepFirstToken:     o.firstDeltaStored.Sub(o.sent),
		stepFirstDeltaSeen: o.firstDelta,
		stepRunFinished:    o.runFinishedAt.Sub(o.sent),
		stepDoneSeen:       o.done.Sub(o.sent),
	}
	for step, offset := range offsets {
		t[step] = append(t[step], offset)
	}
}

func (t timeline) merge(other timeline) {
	for step, offsets := range other {
		t[step] = append(t[step], offsets...)
	}
}

// measureChatLatency runs warmup+runs chat runs one after another, each on
// the next conversation, and samples the time to the first delta of the
// runs after the warmup.
func measureChatLatency(ctx context.Context, client *apiClient, conversations []string, warmup, runs int, runTimeout time.Duration) (chatLatency, chatTally, error) {
	latency := chatLatency{timeline: make(timeline)}
	var tally chatTally
	for i := range warmup + runs {
		if err := ctx.Err(); err != nil {
			return latency, tally, err
		}

		runCtx, cancel := context.WithTimeout(ctx, runTimeout)
		outcome := streamChatRun(runCtx, client, conversations[i%len(conversations)], fmt.Sprintf("latency probe %d", i))
		outcome.check(runCtx, client)
		cancel()
		tally.add(&outcome)

		if i < warmup || outcome.err != nil || outcome.firstDelta == 0 {
			continue
		}
		latency.firstDelta = append(latency.firstDelta, outcome.firstDelta)
		latency.timeline.add(&outcome)
	}
	if len(latency.firstDelta) == 0 {
		return latency, tally, fmt.Errorf("no chat run produced a message.delta frame: %s", strings.Join(tally.firstErrors, "; "))
	}
	return latency, tally, nil
}

// measureChatThroughput keeps one streaming run open per conversation, run
// after run, and checks every run against the API once the load has ended,
// so that the checks add no load to the window.
func measureChatThroughput(ctx context.Context, client *apiClient, conversations []string, load loadOptions, runTimeout time.Duration) (loadResult, chatTally, timeline) {
	var (
		mu       sync.Mutex
		outcomes []*chatOutcome
	)
	result := runLoad(ctx, len(conversations), load, func(ctx context.Context, clientIndex, iteration int) (time.Time, error) {
		runCtx, cancel := context.WithTimeout(ctx, runTimeout)
		defer cancel()
		outcome := streamChatRun(runCtx, client, conversations[clientIndex], fmt.Sprintf("throughput probe %d.%d", clientIndex, iteration))

		mu.Lock()
		outcomes = append(outcomes, &outcome)
		mu.Unlock()
		if outcome.err == nil && outcome.terminal != "message.completed" {
			return outcome.done, fmt.Errorf("run %s ended with %s", outcome.runID, outcome.terminal)
		}
		return outcome.done, outcome.err
	})

	checkOutcomes(ctx, client, outcomes, runTimeout)
	var tally chatTally
	steps := make(timeline)
	for _, outcome := range outcomes {
		tally.add(outcome)
		steps.add(outcome)
	}
	return result, tally, steps
}

// checkOutcomes runs check on each outcome, 16 at a time.
func checkOutcomes(ctx context.Context, client *apiClient, outcomes []*chatOutcome, timeout time.Duration) {
	const parallel = 16
	next := make(chan *chatOutcome)
	var wg sync.WaitGroup
	for range parallel {
		wg.Go(func() {
			for outcome := range next {
				checkCtx, cancel := context.WithTimeout(ctx, timeout)
				outcome.check(checkCtx, client)
				cancel()
			}
		})
	}
	for _, outcome := range outcomes {
		next <- outcome
	}
	close(next)
	wg.Wait()
}
