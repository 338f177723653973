package integration

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/proxy"
	"go.temporal.io/sdk/converter"
	tlog "go.temporal.io/sdk/log"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/aihigress/aihigress/internal/payloadcodec"
	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/workflows"
)

// newEncryptedStack starts a stack whose Temporal payloads are encrypted
// with a fresh key, which it returns in hex.
func newEncryptedStack(t *testing.T) (*stack, string) {
	t.Helper()
	key := hex.EncodeToString(bytes.Repeat([]byte(testenv.Suffix()[:4]), 8))
	return newStack(t, stackOptions{env: map[string]string{"TEMPORAL_PAYLOAD_KEY": key}}), key
}

// closedHistory waits for the workflow to close and returns its history as
// the server stores it, without decoding.
func closedHistory(t *testing.T, s *stack, workflowID string) *historypb.History {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.app.Temporal.GetWorkflow(ctx, workflowID, "").Get(ctx, nil); err != nil {
		t.Fatalf("wait for %s to close: %v", workflowID, err)
	}
	history := &historypb.History{}
	iter := s.app.Temporal.GetWorkflowHistory(ctx, workflowID, "", false, 0)
	for iter.HasNext() {
		event, err := iter.Next()
		if err != nil {
			t.Fatalf("read history of %s: %v", workflowID, err)
		}
		history.Events = append(history.Events, event)
	}
	return history
}

// checkHistoryOpaque fails when a serialized history event contains one of
// secrets, or when a payload outside the search attributes is not
// encrypted. It returns the number of payloads seen.
func checkHistoryOpaque(t *testing.T, history *historypb.History, secrets ...string) int {
	t.Helper()
	for _, event := range history.Events {
		raw, err := proto.Marshal(event)
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range secrets {
			if bytes.Contains(raw, []byte(secret)) {
				t.Errorf("history event %d (%s) contains %q in clear", event.GetEventId(), event.GetEventType(), secret)
			}
		}
	}

	count := 0
	err := proxy.VisitPayloads(context.Background(), history, proxy.VisitPayloadsOptions{
		SkipSearchAttributes: true,
		Visitor: func(_ *proxy.VisitPayloadsContext, payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
			for _, p := range payloads {
				count++
				if got := string(p.GetMetadata()[converter.MetadataEncoding]); got != payloadcodec.EncodingEncrypted {
					t.Errorf("payload with encoding %q is not encrypted: %s", got, p.GetData())
				}
			}
			return payloads, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return count
}

func TestEncryptedPayloadsHideChatRun(t *testing.T) {
	s, _ := newEncryptedStack(t)
	alice := s.newUser()
	convID := alice.conversation("mock-gpt")
	prompt := "confidential prompt " + testenv.Suffix()

	var turn turnResponse
	alice.mustDo("POST", "/v1/conversations/"+convID+"/messages", map[string]any{"content": prompt}, 200, &turn)
	if turn.Run.Status != "succeeded" || !strings.Contains(turn.Run.OutputText, prompt) {
		t.Fatalf("run = %+v, want succeeded with the mock's echo of the prompt", turn.Run)
	}

	// The app reads its workflows through the same converters: the query
	// result and the static summary come back decrypted.
	value, err := s.app.Temporal.QueryWorkflow(t.Context(), turn.Run.WorkflowID, "", workflows.RunStateQuery)
	if err != nil {
		t.Fatalf("query run_state: %v", err)
	}
	var state struct {
		Status string `json:"status"`
	}
	if err := value.Get(&state); err != nil {
		t.Fatal(err)
	}
	if state.Status != "succeeded" {
		t.Errorf("run_state status = %q, want succeeded", state.Status)
	}
	desc, err := s.app.Temporal.DescribeWorkflow(t.Context(), turn.Run.WorkflowID, "")
	if err != nil {
		t.Fatal(err)
	}
	summary, err := desc.GetStaticSummary()
	if err != nil {
		t.Fatalf("decode static summary: %v", err)
	}
	if !strings.Contains(summary, prompt) {
		t.Errorf("static summary = %q, want the prompt", summary)
	}

	// The server stores none of it in clear. The run id stays in clear only
	// inside the workflow id, which is not a payload.
	history := closedHistory(t, s, turn.Run.WorkflowID)
	if n := checkHistoryOpaque(t, history, prompt, turn.Run.OutputText); n < 5 {
		t.Errorf("history has %d payloads, want at least the input, the summary and the activity inputs and results", n)
	}
	err = proxy.VisitPayloads(context.Background(), history, proxy.VisitPayloadsOptions{
		SkipSearchAttributes: true,
		Visitor: func(_ *proxy.VisitPayloadsContext, payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
			for _, p := range payloads {
				if bytes.Contains(p.GetData(), []byte(turn.Run.RunID)) {
					t.Errorf("a payload contains the run id in clear: %s", p.GetData())
				}
			}
			return payloads, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	started := history.Events[0]
	if got := string(started.GetUserMetadata().GetSummary().GetMetadata()[converter.MetadataEncoding]); got != payloadcodec.EncodingEncrypted {
		t.Errorf("static summary encoding = %q, want %q", got, payloadcodec.EncodingEncrypted)
	}
	described, err := s.app.Temporal.DescribeWorkflowExecution(t.Context(), turn.Run.WorkflowID, "")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := proto.Marshal(described)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(prompt)) {
		t.Error("DescribeWorkflowExecution returns the prompt in clear")
	}

	// A replayer reads the history with the app's converters, and fails
	// without them.
	converters, err := payloadcodec.New(s.cfg.Payloads)
	if err != nil {
		t.Fatal(err)
	}
	logger := tlog.NewStructuredLogger(slog.New(slog.DiscardHandler))
	replayer, err := sdkworker.NewWorkflowReplayerWithOptions(converters.ReplayerOptions())
	if err != nil {
		t.Fatal(err)
	}
	replayer.RegisterWorkflowWithOptions(workflows.ChatRunWorkflow, workflow.RegisterOptions{Name: workflows.ChatRunWorkflowName})
	if err := replayer.ReplayWorkflowHistory(logger, history); err != nil {
		t.Errorf("replay with the payload key: %v", err)
	}
	plain := sdkworker.NewWorkflowReplayer()
	plain.RegisterWorkflowWithOptions(workflows.ChatRunWorkflow, workflow.RegisterOptions{Name: workflows.ChatRunWorkflowName})
	if err := plain.ReplayWorkflowHistory(logger, history); err == nil {
		t.Error("replay without the payload key succeeded; want a decoding failure")
	}
}

func TestEncryptedPayloadsHideUpstreamError(t *testing.T) {
	s, _ := newEncryptedStack(t)
	alice := s.newUser()
	convID := alice.conversation("bad-request")

	var turn turnResponse
	alice.mustDo("POST", "/v1/conversations/"+convID+"/messages", map[string]any{"content": "fail please"}, 200, &turn)
	if turn.Run.Status != "failed" || turn.Run.ErrorCode == nil || *turn.Run.ErrorCode != "upstream_bad_request" {
		t.Fatalf("run = %+v, want failed with upstream_bad_request", turn.Run)
	}

	history := closedHistory(t, s, turn.Run.WorkflowID)
	// The mock upstream's error text, which a real upstream may fill with
	// parts of the prompt.
	checkHistoryOpaque(t, history, "Invalid request (injected", "fail please")
	sawFailure := false
	for _, event := range history.Events {
		failure := event.GetActivityTaskFailedEventAttributes().GetFailure()
		if failure == nil {
			continue
		}
		sawFailure = true
		if failure.GetMessage() != "Encoded failure" {
			t.Errorf("activity failure message = %q, want %q", failure.GetMessage(), "Encoded failure")
		}
		if failure.GetEncodedAttributes() == nil {
			t.Error("activity failure has no encoded attributes")
		}
		if got := failure.GetApplicationFailureInfo().GetType(); got != "upstream_bad_request" {
			t.Errorf("failure type = %q, want upstream_bad_request", got)
		}
	}
	if !sawFailure {
		t.Fatal("history has no failed activity")
	}
}

// freeLoopbackAddr returns a loopback address whose port was free a moment
// ago.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestCodecServerDecodesForCLI runs `aihigress codec-server` and decodes an
// encrypted history with `temporal workflow show --codec-endpoint`.
func TestCodecServerDecodesForCLI(t *testing.T) {
	s, key := newEncryptedStack(t)
	alice := s.newUser()
	convID := alice.conversation("mock-gpt")
	var turn turnResponse
	alice.mustDo("POST", "/v1/conversations/"+convID+"/messages", map[string]any{"content": "show me"}, 200, &turn)
	closedHistory(t, s, turn.Run.WorkflowID)

	cli, err := testenv.TemporalCLI()
	if err != nil {
		t.Fatal(err)
	}
	binary := buildBinary(t)
	addr := freeLoopbackAddr(t)
	token := strings.Repeat("c0dec", 8)
	env := append(os.Environ(), "TEMPORAL_PAYLOAD_KEY="+key, "CODEC_SERVER_ADDR="+addr)

	// Without a token the command must refuse to start.
	rejected := exec.Command(binary, "codec-server")
	rejected.Env = env
	output, err := rejected.CombinedOutput()
	if err == nil || !strings.Contains(string(output), "CODEC_SERVER_TOKEN") {
		t.Fatalf("codec-server without a token: err %v, output %s", err, output)
	}

	var logs bytes.Buffer
	server := exec.Command(binary, "codec-server")
	server.Env = append(env, "CODEC_SERVER_TOKEN="+token, "LOG_LEVEL=debug")
	server.Stdout, server.Stderr = &logs, &logs
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = server.Process.Kill()
		_, _ = server.Process.Wait()
	})
	waitFor(t, 20*time.Second, "codec server to listen", func() bool {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})

	// show runs `temporal workflow show` and returns the first event's
	// input payload and summary as the CLI prints them.
	show := func(extra ...string) (input, summary *commonpb.Payload, err error) {
		args := append([]string{"workflow", "show", "--address", temporalAddress, "--namespace", "default",
			"--workflow-id", turn.Run.WorkflowID, "--output", "json"}, extra...)
		out, err := exec.Command(cli, args...).Output()
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %s", err, out)
		}
		var history historypb.History
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(out, &history); err != nil {
			t.Fatalf("parse workflow show output: %v\n%s", err, out)
		}
		started := history.Events[0]
		return started.GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads()[0], started.GetUserMetadata().GetSummary(), nil
	}

	input, summary, err := show("--codec-endpoint", "http://"+addr, "--codec-auth", "Bearer "+token)
	if err != nil {
		t.Fatalf("workflow show with the codec: %v", err)
	}
	if got := string(input.GetMetadata()[converter.MetadataEncoding]); got != "json/plain" || !bytes.Contains(input.GetData(), []byte(turn.Run.RunID)) {
		t.Errorf("input shown with the codec = %s %s, want json/plain with the run id", got, input.GetData())
	}
	if !bytes.Contains(summary.GetData(), []byte("show me")) {
		t.Errorf("summary shown with the codec = %s, want the prompt", summary.GetData())
	}

	input, _, err = show()
	if err != nil {
		t.Fatalf("workflow show without the codec: %v", err)
	}
	if got := string(input.GetMetadata()[converter.MetadataEncoding]); got != payloadcodec.EncodingEncrypted {
		t.Errorf("input shown without the codec has encoding %q, want %q", got, payloadcodec.EncodingEncrypted)
	}

	// Temporal CLI v1.5.1 exits with status 1 when the codec server
	// responds with 401.
	if _, _, err := show("--codec-endpoint", "http://"+addr, "--codec-auth", "Bearer "+strings.Repeat("0", 40)); err == nil {
		t.Error("workflow show with a wrong token succeeded")
	}

	if strings.Contains(logs.String(), token) || strings.Contains(logs.String(), key) {
		t.Errorf("codec-server logged a secret:\n%s", logs.String())
	}
}
