package requestlog_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/aihigress/aihigress/internal/requestlog"
	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/models"
)

func row(requestID string) models.RequestLog {
	// PostgreSQL stores both ids as UUIDs.
	key, user := uuid.NewString(), uuid.NewString()
	return models.RequestLog{
		CreatedAt:        time.Now().UTC().Truncate(time.Millisecond),
		RequestID:        requestID,
		APIKeyID:         &key,
		UserID:           &user,
		Method:           "POST",
		Path:             "/v1/chat/completions",
		LogicalModel:     "mock-gpt",
		ProviderID:       "main",
		UpstreamModel:    "mock-gpt-0613",
		StatusCode:       200,
		LatencyMS:        12.5,
		UpstreamMS:       11.25,
		PromptTokens:     7,
		CompletionTokens: 21,
		Stream:           true,
		ErrorCode:        "stream_cut",
	}
}

func countRows(t *testing.T, db *gorm.DB) int64 {
	t.Helper()
	var n int64
	if err := db.Model(&models.RequestLog{}).Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

func waitForRows(t *testing.T, db *gorm.DB, want int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for countRows(t, db) < want {
		if time.Now().After(deadline) {
			t.Fatalf("request_logs has %d rows after 5 s, want %d", countRows(t, db), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// countInserts counts the INSERT statements that db runs from now on.
func countInserts(t *testing.T, db *gorm.DB) *atomic.Int64 {
	t.Helper()
	var inserts atomic.Int64
	err := db.Callback().Create().After("gorm:create").Register("test:count_inserts", func(tx *gorm.DB) {
		if tx.Statement.Table == "request_logs" {
			inserts.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return &inserts
}

func TestWriterFlushesOnInterval(t *testing.T) {
	st := testenv.Store(t)
	inserts := countInserts(t, st.DB)
	w := requestlog.New(st.DB, requestlog.Options{FlushInterval: 50 * time.Millisecond, BatchSize: 100})
	w.Start()
	defer w.Close(context.Background())

	want := []models.RequestLog{row("a"), row("b"), row("c")}
	for _, r := range want {
		if !w.Record(r) {
			t.Fatalf("Record(%s) = false, want true", r.RequestID)
		}
	}
	waitForRows(t, st.DB, 3)

	var got []models.RequestLog
	if err := st.DB.Order("request_id").Find(&got).Error; err != nil {
		t.Fatal(err)
	}
	for i := range want {
		want[i].ID = got[i].ID
		got[i].CreatedAt = got[i].CreatedAt.UTC()
		if fmt.Sprintf("%+v", stripPointers(got[i])) != fmt.Sprintf("%+v", stripPointers(want[i])) {
			t.Errorf("row %d =\n %+v\nwant\n %+v", i, stripPointers(got[i]), stripPointers(want[i]))
		}
	}
	if n := inserts.Load(); n != 1 {
		t.Errorf("INSERT statements = %d, want 1 for 3 rows queued within one interval", n)
	}
	if w.Written() != 3 || w.Dropped() != 0 {
		t.Errorf("written/dropped = %d/%d, want 3/0", w.Written(), w.Dropped())
	}
}

// stripPointers returns r with its pointer fields replaced by their values,
// so that rows compare by content.
func stripPointers(r models.RequestLog) map[string]any {
	deref := func(p *string) string {
		if p == nil {
			return "<nil>"
		}
		return *p
	}
	return map[string]any{
		"id": r.ID, "created_at": r.CreatedAt.Format(time.RFC3339Nano), "request_id": r.RequestID,
		"api_key_id": deref(r.APIKeyID), "user_id": deref(r.UserID), "method": r.Method, "path": r.Path,
		"logical_model": r.LogicalModel, "provider_id": r.ProviderID, "upstream_model": r.UpstreamModel,
		"status_code": r.StatusCode, "latency_ms": r.LatencyMS, "upstream_ms": r.UpstreamMS,
		"prompt_tokens": r.PromptTokens, "completion_tokens": r.CompletionTokens, "stream": r.Stream, "error_code": r.ErrorCode,
	}
}

func TestWriterFlushesFullBatches(t *testing.T) {
	st := testenv.Store(t)
	inserts := countInserts(t, st.DB)
	w := requestlog.New(st.DB, requestlog.Options{FlushInterval: time.Hour, BatchSize: 5})
	w.Start()

	for i := range 12 {
		w.Record(row(fmt.Sprint(i)))
	}
	// Two full batches go out at once; the last two rows wait for the
	// interval or Close.
	waitForRows(t, st.DB, 10)
	time.Sleep(50 * time.Millisecond)
	if n := countRows(t, st.DB); n != 10 {
		t.Errorf("rows before Close = %d, want 10", n)
	}

	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, st.DB); n != 12 {
		t.Errorf("rows after Close = %d, want 12", n)
	}
	if n := inserts.Load(); n != 3 {
		t.Errorf("INSERT statements = %d, want 3", n)
	}
}

func TestWriterDropsWithoutBlocking(t *testing.T) {
	st := testenv.Store(t)
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	w := requestlog.New(st.DB, requestlog.Options{FlushInterval: 10 * time.Millisecond, QueueSize: 3, Logger: logger})

	// Nothing reads the queue before Start, so the fourth row finds it
	// full.
	started := time.Now()
	var queued []bool
	for i := range 5 {
		queued = append(queued, w.Record(row(fmt.Sprint(i))))
	}
	if elapsed := time.Since(started); elapsed > 100*time.Millisecond {
		t.Errorf("5 Record calls took %s, want no blocking", elapsed)
	}
	if want := []bool{true, true, true, false, false}; fmt.Sprint(queued) != fmt.Sprint(want) {
		t.Errorf("Record results = %v, want %v", queued, want)
	}
	if w.Dropped() != 2 {
		t.Errorf("Dropped() = %d, want 2", w.Dropped())
	}

	w.Start()
	waitForRows(t, st.DB, 3)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w.Record(row("late")) {
		t.Error("Record after Close = true, want false")
	}
	if w.Dropped() != 3 {
		t.Errorf("Dropped() after a late row = %d, want 3", w.Dropped())
	}
	if !strings.Contains(logs.String(), "request log rows dropped") {
		t.Errorf("log = %q, want a record about dropped rows", logs.String())
	}
}

func TestWriterCountsFailedInserts(t *testing.T) {
	st := testenv.Store(t)
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	w := requestlog.New(st.DB, requestlog.Options{FlushInterval: 10 * time.Millisecond, DropReportInterval: time.Hour, Logger: logger})
	w.Start()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	for i := range 3 {
		w.Record(row(fmt.Sprint(i)))
		time.Sleep(30 * time.Millisecond)
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	if w.Dropped() != 3 || w.Written() != 0 {
		t.Errorf("dropped/written = %d/%d, want 3/0", w.Dropped(), w.Written())
	}
	text := logs.String()
	if n := strings.Count(text, "write request log rows failed"); n < 2 {
		t.Errorf("insert failures logged %d times, want one per failed flush (3)", n)
	}
	// With an hour between reports, only the first tick and Close report.
	if n := strings.Count(text, "request log rows dropped"); n != 2 {
		t.Errorf("drop reports = %d, want 2 (first drop, then Close); log:\n%s", n, text)
	}
}

func TestNilWriterDiscards(t *testing.T) {
	var w *requestlog.Writer
	if w.Record(row("x")) {
		t.Error("nil Writer Record = true, want false")
	}
	if err := w.Close(context.Background()); err != nil {
		t.Errorf("nil Writer Close = %v, want nil", err)
	}
	if w.Dropped() != 0 || w.Written() != 0 {
		t.Error("nil Writer counts rows")
	}
}

// syncBuffer is a bytes.Buffer that the writer's goroutine and the test may
// use at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
