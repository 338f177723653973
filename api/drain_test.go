package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/apikeys"
	"github.com/aihigress/aihigress/internal/events"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/models"
)

// sseFrame is one parsed SSE frame. A field that the frame lacks is "".
type sseFrame struct {
	id, retry, event, data string
}

// readSSEFrame reads the next frame, or returns io.EOF at the end of the
// stream.
func readSSEFrame(r *bufio.Reader) (sseFrame, error) {
	var f sseFrame
	seen := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if seen && errors.Is(err, io.EOF) {
				return f, io.ErrUnexpectedEOF
			}
			return f, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if seen {
				return f, nil
			}
			continue
		}
		seen = true
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			f.id = value
		case "retry":
			f.retry = value
		case "event":
			f.event = value
		case "data":
			f.data = value
		}
	}
}

func TestEventStreamEndsWithReconnect(t *testing.T) {
	tests := []struct {
		name string
		// lastEventID is the Last-Event-ID header, and "" sends none.
		lastEventID string
		// endBeforeOpen calls EndStreams before the stream opens.
		endBeforeOpen bool
		// wantEventIDs are the ids of the run events before the reconnect
		// frame.
		wantEventIDs []string
		wantLastID   int64
	}{
		{name: "from the first event", wantEventIDs: []string{"1", "2", "3"}, wantLastID: 3},
		{name: "from a cursor", lastEventID: "2", wantEventIDs: []string{"3"}, wantLastID: 3},
		{name: "opened after the end", lastEventID: "2", endBeforeOpen: true, wantLastID: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newKeyTestServer(t, apikeys.Options{})
			k.server.Follower = &events.Follower{Store: k.server.Store, Logger: slog.New(slog.DiscardHandler),
				Heartbeat: time.Hour, Poll: time.Hour}
			userID, token := k.userWithID()
			runID := createRunWithDeltas(t, k.server.Store, userID, 2)
			srv := httptest.NewServer(k.handler)
			t.Cleanup(srv.Close)

			if tt.endBeforeOpen {
				k.server.EndStreams()
			}
			req, err := http.NewRequest("GET", srv.URL+"/v1/runs/"+runID+"/events", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+token)
			if tt.lastEventID != "" {
				req.Header.Set("Last-Event-ID", tt.lastEventID)
			}
			// The timeout turns a stream that never ends into a failure.
			httpClient := &http.Client{Timeout: 10 * time.Second}
			resp, err := httpClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", resp.StatusCode)
			}
			reader := bufio.NewReader(resp.Body)

			var eventIDs []string
			var frame sseFrame
			for {
				frame, err = readSSEFrame(reader)
				if err != nil {
					t.Fatalf("stream ended before the reconnect frame: %v (run events %v)", err, eventIDs)
				}
				if frame.event == "replay.done" && !tt.endBeforeOpen {
					// The stream now waits for live events.
					k.server.EndStreams()
					continue
				}
				if frame.event == "reconnect" {
					break
				}
				if frame.event != models.EventMessageCreated && frame.event != models.EventMessageDelta {
					t.Fatalf("unexpected frame %+v before the reconnect frame", frame)
				}
				eventIDs = append(eventIDs, frame.id)
			}

			if strings.Join(eventIDs, ",") != strings.Join(tt.wantEventIDs, ",") {
				t.Errorf("run event ids = %v, want %v", eventIDs, tt.wantEventIDs)
			}
			if frame.id != strconv.FormatInt(tt.wantLastID, 10) {
				t.Errorf("reconnect frame id = %q, want %d", frame.id, tt.wantLastID)
			}
			retry, err := strconv.Atoi(frame.retry)
			if err != nil || retry < 1000 || retry >= 2000 {
				t.Errorf("reconnect frame retry = %q, want milliseconds in [1000, 2000)", frame.retry)
			}
			var data struct {
				Type    string `json:"type"`
				RunID   string `json:"run_id"`
				LastSeq int64  `json:"last_seq"`
				RetryMS int    `json:"retry_ms"`
				Reason  string `json:"reason"`
			}
			if err := json.Unmarshal([]byte(frame.data), &data); err != nil {
				t.Fatalf("reconnect data %q: %v", frame.data, err)
			}
			if data.Type != "reconnect" || data.RunID != runID || data.Reason != "server_shutdown" {
				t.Errorf("reconnect data = %+v, want type reconnect, run_id %s, reason server_shutdown", data, runID)
			}
			if data.LastSeq != tt.wantLastID {
				t.Errorf("reconnect last_seq = %d, want %d", data.LastSeq, tt.wantLastID)
			}
			if data.RetryMS != retry {
				t.Errorf("reconnect retry_ms = %d, want the retry field %d", data.RetryMS, retry)
			}

			if extra, err := readSSEFrame(reader); !errors.Is(err, io.EOF) {
				t.Errorf("after the reconnect frame: frame %+v, error %v; want the end of the stream", extra, err)
			}
			if got := k.server.StreamsReconnected(); got != 1 {
				t.Errorf("StreamsReconnected = %d, want 1", got)
			}
		})
	}
}

// createRunWithDeltas stores a queued chat run of userID with its
// message.created event and deltas message.delta events after it.
func createRunWithDeltas(t *testing.T, st *store.Store, userID string, deltas int) string {
	t.Helper()
	ctx := context.Background()
	run, _, err := st.CreateGatewayRun(ctx, store.NewGatewayRun{UserID: userID, LogicalModel: "mock-gpt", RequestBody: models.JSON(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	var appended []models.ChatRunEvent
	for seq := int64(2); seq < int64(2+deltas); seq++ {
		appended = append(appended, models.ChatRunEvent{RunID: run.ID, Seq: seq, EventType: models.EventMessageDelta,
			Payload: models.JSON(`{"delta":"word "}`), CreatedAt: time.Now()})
	}
	if err := st.AppendEvents(ctx, appended); err != nil {
		t.Fatal(err)
	}
	return run.ID
}
