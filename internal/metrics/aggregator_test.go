package metrics_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm/schema"

	"github.com/aihigress/aihigress/internal/metrics"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/models"
)

// minute is a fixed bucket start, so that tests do not depend on the clock.
var minute = time.Date(2026, 12, 5, 10, 30, 0, 0, time.UTC)

func values(requests, errors int64, latency time.Duration, tokensIn, tokensOut int64) metrics.BucketValues {
	v := metrics.BucketValues{Requests: requests, Errors: errors, TokensIn: tokensIn, TokensOut: tokensOut}
	for range requests {
		v.Latency.Observe(latency)
	}
	return v
}

func readRows(t *testing.T, st *store.Store) []models.ProviderMetricsMinute {
	t.Helper()
	var rows []models.ProviderMetricsMinute
	if err := st.DB.Order("provider_id, logical_model, status, bucket_start").Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestAggregatorFlushesAddUp(t *testing.T) {
	key := metrics.BucketKey{Start: minute.Add(42 * time.Second), ProviderID: "openai", LogicalModel: "gpt", Status: metrics.StatusOK}
	tests := []struct {
		name string
		// records go to the aggregators by index; each aggregator flushes
		// once, in order.
		records      [][]metrics.BucketValues
		wantRequests int64
		// wantTokens is tokens in plus tokens out.
		wantTokens int64
		wantLE100  int64
	}{
		{"one aggregator, two records", [][]metrics.BucketValues{{values(2, 0, 80*time.Millisecond, 10, 5), values(1, 0, 400*time.Millisecond, 7, 3)}}, 3, 25, 2},
		{"two aggregators, same minute", [][]metrics.BucketValues{{values(2, 0, 80*time.Millisecond, 10, 5)}, {values(3, 0, 90*time.Millisecond, 1, 1)}}, 5, 17, 5},
		{"three aggregators", [][]metrics.BucketValues{{values(1, 0, time.Second, 1, 1)}, {values(1, 0, time.Second, 1, 1)}, {values(1, 0, 50*time.Millisecond, 1, 1)}}, 3, 6, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := testenv.Store(t)
			for _, records := range tt.records {
				a := metrics.NewAggregator(st.DB, metrics.AggregatorOptions{})
				for _, v := range records {
					a.Record(key, v)
				}
				if a.Pending() != 1 {
					t.Errorf("pending buckets = %d, want 1: records of one minute share a bucket", a.Pending())
				}
				if err := a.Flush(context.Background()); err != nil {
					t.Fatal(err)
				}
				if a.Pending() != 0 {
					t.Errorf("pending buckets after flush = %d, want 0", a.Pending())
				}
			}

			rows := readRows(t, st)
			if len(rows) != 1 {
				t.Fatalf("rows = %d, want 1", len(rows))
			}
			row := rows[0]
			if !row.BucketStart.Equal(minute) {
				t.Errorf("bucket_start = %s, want %s", row.BucketStart, minute)
			}
			if row.Requests != tt.wantRequests {
				t.Errorf("requests = %d, want %d", row.Requests, tt.wantRequests)
			}
			if row.TokensIn+row.TokensOut != tt.wantTokens {
				t.Errorf("tokens in+out = %d, want %d", row.TokensIn+row.TokensOut, tt.wantTokens)
			}
			if row.LatencyLE100 != tt.wantLE100 {
				t.Errorf("latency_le_100 = %d, want %d", row.LatencyLE100, tt.wantLE100)
			}
			if row.LatencyLE120000 != tt.wantRequests {
				t.Errorf("latency_le_120000 = %d, want %d", row.LatencyLE120000, tt.wantRequests)
			}
		})
	}
}

func TestAggregatorKeepsKeysApart(t *testing.T) {
	st := testenv.Store(t)
	a := metrics.NewAggregator(st.DB, metrics.AggregatorOptions{})
	keys := []metrics.BucketKey{
		{Start: minute, ProviderID: "a", LogicalModel: "m", Status: metrics.StatusOK},
		{Start: minute.Add(59 * time.Second), ProviderID: "a", LogicalModel: "m", Status: metrics.StatusOK},
		{Start: minute.Add(time.Minute), ProviderID: "a", LogicalModel: "m", Status: metrics.StatusOK},
		{Start: minute, ProviderID: "a", LogicalModel: "m", Status: "upstream_error"},
		{Start: minute, ProviderID: "a", LogicalModel: "other", Status: metrics.StatusOK},
		{Start: minute, ProviderID: "b", LogicalModel: "m", Status: metrics.StatusOK},
	}
	for _, key := range keys {
		a.Record(key, values(1, 0, 100*time.Millisecond, 0, 0))
	}
	if err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	rows := readRows(t, st)
	// The first two keys share a minute.
	if len(rows) != len(keys)-1 {
		t.Fatalf("rows = %d, want %d", len(rows), len(keys)-1)
	}
	var total int64
	for _, row := range rows {
		total += row.Requests
	}
	if total != int64(len(keys)) {
		t.Errorf("requests over all rows = %d, want %d", total, len(keys))
	}
}

func TestAggregatorConcurrentFlushes(t *testing.T) {
	st := testenv.Store(t)
	key := metrics.BucketKey{Start: minute, ProviderID: "p", LogicalModel: "m", Status: metrics.StatusOK}
	const writers, perWriter = 4, 50
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := metrics.NewAggregator(st.DB, metrics.AggregatorOptions{})
			for range perWriter {
				a.Record(key, values(1, 1, time.Second, 1, 0))
				if err := a.Flush(context.Background()); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	rows := readRows(t, st)
	if len(rows) != 1 {
		t.Fatalf("rows = %d, want 1", len(rows))
	}
	if rows[0].Requests != writers*perWriter || rows[0].Errors != writers*perWriter {
		t.Errorf("requests, errors = %d, %d, want %d each", rows[0].Requests, rows[0].Errors, writers*perWriter)
	}
}

func TestAggregatorRetriesFailedFlush(t *testing.T) {
	st := testenv.Store(t)
	a := metrics.NewAggregator(st.DB, metrics.AggregatorOptions{})
	key := metrics.BucketKey{Start: minute, ProviderID: "p", LogicalModel: "m", Status: metrics.StatusOK}
	a.Record(key, values(2, 0, time.Second, 3, 4))

	// Hiding the table makes the upsert fail on both dialects.
	if err := st.DB.Exec("ALTER TABLE provider_metrics_minute RENAME TO provider_metrics_hidden").Error; err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(context.Background()); err == nil {
		t.Fatal("flush into a missing table succeeded")
	}
	if a.FlushErrors() != 1 {
		t.Errorf("flush errors = %d, want 1", a.FlushErrors())
	}
	if a.Pending() != 1 {
		t.Fatalf("pending buckets after a failed flush = %d, want 1", a.Pending())
	}
	if a.Flushes() != 0 || a.RowsWritten() != 0 {
		t.Errorf("after a failed flush: flushes = %d, rows written = %d, want 0 and 0", a.Flushes(), a.RowsWritten())
	}

	a.Record(key, values(1, 0, time.Second, 1, 1))
	if err := st.DB.Exec("ALTER TABLE provider_metrics_hidden RENAME TO provider_metrics_minute").Error; err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	rows := readRows(t, st)
	if len(rows) != 1 || rows[0].Requests != 3 || rows[0].TokensIn != 4 || rows[0].TokensOut != 5 {
		t.Errorf("rows after the retry = %+v, want one with 3 requests, 4 tokens in, 5 out", rows)
	}
	if a.Flushes() != 1 || a.RowsWritten() != 1 {
		t.Errorf("after the retry: flushes = %d, rows written = %d, want 1 and 1", a.Flushes(), a.RowsWritten())
	}
	if a.FlushTime() <= 0 {
		t.Errorf("flush time = %s, want more than 0", a.FlushTime())
	}

	// A flush with nothing pending writes nothing and is not counted.
	if err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a.Flushes() != 1 {
		t.Errorf("flushes after an empty flush = %d, want 1", a.Flushes())
	}
}

func TestAggregatorDropsBeyondLimit(t *testing.T) {
	st := testenv.Store(t)
	a := metrics.NewAggregator(st.DB, metrics.AggregatorOptions{MaxPendingBuckets: 2})
	for i, provider := range []string{"a", "b", "c", "a"} {
		a.Record(metrics.BucketKey{Start: minute, ProviderID: provider, LogicalModel: "m", Status: metrics.StatusOK}, values(int64(i+1), 0, time.Second, 0, 0))
	}
	if a.Pending() != 2 {
		t.Errorf("pending = %d, want 2", a.Pending())
	}
	// Provider c's 3 requests found no room; a's second record merged.
	if a.Dropped() != 3 {
		t.Errorf("dropped = %d, want 3", a.Dropped())
	}
}

func TestRecorderCloseFlushes(t *testing.T) {
	st := testenv.Store(t)
	// The periodic flush never comes within the test, so only Close can
	// write the row.
	r := metrics.New(metrics.Options{DB: st.DB, Aggregator: metrics.AggregatorOptions{FlushInterval: time.Hour}})
	r.Start()
	r.RecordAttempt(metrics.Attempt{Source: metrics.SourceWorker, ProviderID: "p", LogicalModel: "m", Status: "upstream_timeout",
		Latency: 3 * time.Second, End: minute})
	if rows := readRows(t, st); len(rows) != 0 {
		t.Fatalf("rows before Close = %d, want 0", len(rows))
	}
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	rows := readRows(t, st)
	if len(rows) != 1 || rows[0].Status != "upstream_timeout" || rows[0].Errors != 1 || rows[0].LatencyLE3000 != 1 || rows[0].LatencyLE2000 != 0 {
		t.Errorf("rows after Close = %+v", rows)
	}
}

func TestRecorderRunFlushesPeriodically(t *testing.T) {
	st := testenv.Store(t)
	r := metrics.New(metrics.Options{DB: st.DB, Aggregator: metrics.AggregatorOptions{FlushInterval: 20 * time.Millisecond}})
	r.Start()
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	r.RecordAttempt(metrics.Attempt{Source: metrics.SourceGateway, ProviderID: "p", LogicalModel: "m", Status: metrics.StatusOK, Latency: time.Second})

	deadline := time.Now().Add(5 * time.Second)
	for len(readRows(t, st)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no row 5 s after a record with a 20 ms flush interval")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestQueryWindow(t *testing.T) {
	st := testenv.Store(t)
	a := metrics.NewAggregator(st.DB, metrics.AggregatorOptions{})
	record := func(at time.Time, provider, status string, requests int64, latency time.Duration) {
		v := values(requests, 0, latency, requests, 2*requests)
		if metrics.CountsAsError(status) {
			v.Errors = requests
		}
		for range requests {
			v.TTFT.Observe(latency / 4)
		}
		a.Record(metrics.BucketKey{Start: at, ProviderID: provider, LogicalModel: "m", Status: status}, v)
	}
	record(minute.Add(-2*time.Hour), "a", metrics.StatusOK, 100, time.Second) // outside every window below
	record(minute.Add(-59*time.Minute), "a", metrics.StatusOK, 3, 200*time.Millisecond)
	record(minute, "a", metrics.StatusOK, 2, 200*time.Millisecond)
	record(minute, "a", "upstream_error", 1, 5*time.Second)
	record(minute.Add(-30*time.Minute), "b", metrics.StatusOK, 4, time.Second)
	if err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		from time.Time
		// want maps provider/status to requests.
		want map[string]int64
	}{
		{"last hour", minute.Add(-59 * time.Minute), map[string]int64{"a/ok": 5, "a/upstream_error": 1, "b/ok": 4}},
		{"last 30 minutes", minute.Add(-29 * time.Minute), map[string]int64{"a/ok": 2, "a/upstream_error": 1}},
		{"from is truncated to its minute", minute.Add(-30*time.Minute + 30*time.Second), map[string]int64{"a/ok": 2, "a/upstream_error": 1, "b/ok": 4}},
		{"future", minute.Add(time.Minute), map[string]int64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, err := metrics.QueryWindow(context.Background(), st.DB, tt.from)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int64{}
			for _, row := range rows {
				got[row.ProviderID+"/"+row.Status] = row.Requests
				if row.Latency.Count != row.Requests {
					t.Errorf("%s/%s latency count = %d, want the request count %d", row.ProviderID, row.Status, row.Latency.Count, row.Requests)
				}
				if row.TTFT.Count != row.Requests || row.TokensIn != row.Requests || row.TokensOut != 2*row.Requests {
					t.Errorf("%s/%s ttft count, tokens in, out = %d, %d, %d; want %d, %d, %d", row.ProviderID, row.Status,
						row.TTFT.Count, row.TokensIn, row.TokensOut, row.Requests, row.Requests, 2*row.Requests)
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("rows = %v, want %v", got, tt.want)
			}
			for k, want := range tt.want {
				if got[k] != want {
					t.Errorf("%s requests = %d, want %d", k, got[k], want)
				}
			}
		})
	}

	// The summed histogram of provider a's successes gives the p50 of its
	// 5 requests at 200 ms.
	rows, err := metrics.QueryWindow(context.Background(), st.DB, minute.Add(-59*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		if row.ProviderID == "a" && row.Status == metrics.StatusOK {
			if p50, _ := row.Latency.Percentile(0.5); p50 <= 100 || p50 > 250 {
				t.Errorf("p50 of 200 ms requests = %v ms, want within (100, 250]", p50)
			}
			if sum := row.Latency.SumMS; sum < 999 || sum > 1001 {
				t.Errorf("latency sum = %v ms, want 1000", sum)
			}
		}
	}
}

// TestColumnsMatchModel checks that every column that the aggregator
// writes is a field of models.ProviderMetricsMinute, which the store's
// schema test checks against both migrations.
func TestColumnsMatchModel(t *testing.T) {
	parsed, err := schema.Parse(&models.ProviderMetricsMinute{}, &sync.Map{}, schema.NamingStrategy{})
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Table != metrics.TableName {
		t.Errorf("model table = %s, want %s", parsed.Table, metrics.TableName)
	}
	fields := map[string]bool{}
	for _, f := range parsed.Fields {
		fields[f.DBName] = true
	}
	columns := metrics.Columns()
	for _, column := range columns {
		if !fields[column] {
			t.Errorf("column %s is not a field of models.ProviderMetricsMinute", column)
		}
	}
	if len(fields) != len(columns) {
		t.Errorf("model has %d columns, the aggregator writes %d: %s", len(fields), len(columns), strings.Join(columns, ", "))
	}
}
