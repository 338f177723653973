package activities_test

import (
	"context"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/config"
	"github.com/aihigress/aihigress/internal/metrics"
	"github.com/aihigress/aihigress/models"
	"github.com/aihigress/aihigress/workflows"
)

// rollupAsOf is the time the roll-up tests run for: the hours before
// 12:00 on 10 January are complete.
var rollupAsOf = time.Date(2026, 1, 10, 12, 30, 0, 0, time.UTC)

func rollupSettings() config.Maintenance {
	return config.Maintenance{RequestLogRetention: 7 * 24 * time.Hour, MetricsMinuteRetention: 2 * 24 * time.Hour}
}

// logRow writes one request log row of the fixture's user.
func (f *maintenanceFixture) logRow(t *testing.T, row models.RequestLog) {
	t.Helper()
	row.RequestID = "req-" + row.CreatedAt.Format(time.RFC3339Nano)
	row.UserID = &f.user.ID
	row.Method, row.Path = "POST", "/v1/chat/completions"
	row.CreatedAt = row.CreatedAt.UTC()
	if err := f.store.DB.Create(&row).Error; err != nil {
		t.Fatal(err)
	}
}

// hourlyRows returns the request_log_hourly rows of hour by status class.
func (f *maintenanceFixture) hourlyRows(t *testing.T, hour time.Time) map[string]models.RequestLogHourly {
	t.Helper()
	var rows []models.RequestLogHourly
	if err := f.store.DB.Where("hour_start = ?", hour.UTC()).Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	byClass := make(map[string]models.RequestLogHourly, len(rows))
	for _, row := range rows {
		if _, dup := byClass[row.StatusClass]; dup {
			t.Errorf("hour %s has two %s rows", hour.Format(time.RFC3339), row.StatusClass)
		}
		byClass[row.StatusClass] = row
	}
	return byClass
}

func (f *maintenanceFixture) countRows(t *testing.T, model any) int64 {
	t.Helper()
	var n int64
	if err := f.store.DB.Model(model).Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRollUpRequestLog(t *testing.T) {
	f := newMaintenanceFixture(t, rollupSettings())
	keyID := "0196f3a0-0000-7000-8000-000000000001"
	day := func(d, h, m int) time.Time { return time.Date(2026, 1, d, h, m, 0, 0, time.UTC) }

	f.logRow(t, models.RequestLog{CreatedAt: day(10, 9, 10), APIKeyID: &keyID, LogicalModel: "m", ProviderID: "p", StatusCode: 200,
		LatencyMS: 100, UpstreamMS: 80, PromptTokens: 10, CompletionTokens: 5})
	f.logRow(t, models.RequestLog{CreatedAt: day(10, 10, 20), APIKeyID: &keyID, LogicalModel: "m", ProviderID: "p", StatusCode: 200,
		LatencyMS: 200, UpstreamMS: 150, PromptTokens: 20, CompletionTokens: 7})
	// A stream that failed after its 200 headers counts as an error.
	f.logRow(t, models.RequestLog{CreatedAt: day(10, 10, 50), APIKeyID: &keyID, LogicalModel: "m", ProviderID: "p", StatusCode: 200,
		LatencyMS: 300, ErrorCode: "stream_cut"})
	f.logRow(t, models.RequestLog{CreatedAt: day(10, 10, 40), APIKeyID: &keyID, LogicalModel: "m", ProviderID: "p", StatusCode: 502,
		LatencyMS: 50, ErrorCode: "upstream_error"})
	f.logRow(t, models.RequestLog{CreatedAt: day(10, 11, 5), APIKeyID: &keyID, LogicalModel: "m", StatusCode: 404, LatencyMS: 1})
	// The current hour is not complete, so it is not rolled up.
	f.logRow(t, models.RequestLog{CreatedAt: day(10, 12, 10), APIKeyID: &keyID, LogicalModel: "m", ProviderID: "p", StatusCode: 200, LatencyMS: 1})
	// Eight days old: rolled up by the first run, then past the retention.
	f.logRow(t, models.RequestLog{CreatedAt: day(2, 9, 30), APIKeyID: &keyID, LogicalModel: "m", ProviderID: "p", StatusCode: 200, LatencyMS: 5})

	// Nothing is rolled up yet, so nothing may be deleted.
	var deleted workflows.DeleteExpiredRowsResult
	f.run(t, f.m.DeleteExpiredRows, &deleted, workflows.DeleteExpiredRowsInput{Table: workflows.TableRequestLogs, AsOf: rollupAsOf})
	if deleted.Deleted != 0 || f.countRows(t, &models.RequestLog{}) != 7 {
		t.Fatalf("DeleteExpiredRows before any roll-up deleted %d rows, want 0", deleted.Deleted)
	}

	var rolled workflows.RollUpResult
	f.run(t, f.m.RollUp, &rolled, workflows.RollUpInput{SourceTable: workflows.TableRequestLogs, AsOf: rollupAsOf})
	// From the hour of the oldest row to the last complete hour.
	if !rolled.From.Equal(day(2, 9, 0)) || !rolled.Until.Equal(day(10, 12, 0)) || rolled.Hours != 8*24+3 {
		t.Errorf("first roll-up covered %s to %s in %d hours, want 2026-01-02T09 to 2026-01-10T12 in 195", rolled.From, rolled.Until, rolled.Hours)
	}

	checkHours := func(label string, want map[time.Time]map[string][2]int64) {
		t.Helper()
		for hour, classes := range want {
			got := f.hourlyRows(t, hour)
			if len(got) != len(classes) {
				t.Errorf("%s: hour %s has classes %v, want %v", label, hour.Format(time.RFC3339), got, classes)
			}
			for class, counts := range classes {
				row := got[class]
				if row.Requests != counts[0] || row.Errors != counts[1] {
					t.Errorf("%s: hour %s class %s = %d requests, %d errors; want %d, %d",
						label, hour.Format(time.RFC3339), class, row.Requests, row.Errors, counts[0], counts[1])
				}
			}
		}
	}
	want := map[time.Time]map[string][2]int64{
		day(2, 9, 0):   {"2xx": {1, 0}},
		day(10, 9, 0):  {"2xx": {1, 0}},
		day(10, 10, 0): {"2xx": {2, 1}, "5xx": {1, 1}},
		day(10, 11, 0): {"4xx": {1, 1}},
		day(10, 12, 0): {},
	}
	checkHours("first run", want)
	tenOClock := f.hourlyRows(t, day(10, 10, 0))["2xx"]
	if tenOClock.PromptTokens != 20 || tenOClock.CompletionTokens != 7 || tenOClock.LatencyMSSum != 500 || tenOClock.UpstreamMSSum != 150 {
		t.Errorf("10:00 2xx sums = %+v, want 20 prompt and 7 completion tokens, 500 ms latency, 150 ms upstream", tenOClock)
	}
	if tenOClock.APIKeyID == nil || *tenOClock.APIKeyID != keyID || tenOClock.UserID == nil || *tenOClock.UserID != f.user.ID {
		t.Errorf("10:00 2xx row has key %v and user %v, want %s and %s", tenOClock.APIKeyID, tenOClock.UserID, keyID, f.user.ID)
	}

	// Running again rewrites the lookback hours with the same sums.
	hourlyBefore := f.countRows(t, &models.RequestLogHourly{})
	f.run(t, f.m.RollUp, &rolled, workflows.RollUpInput{SourceTable: workflows.TableRequestLogs, AsOf: rollupAsOf})
	if rolled.Hours != 2 || !rolled.From.Equal(day(10, 10, 0)) {
		t.Errorf("second roll-up covered %d hours from %s, want 2 from 10:00", rolled.Hours, rolled.From)
	}
	checkHours("second run", want)
	if n := f.countRows(t, &models.RequestLogHourly{}); n != hourlyBefore {
		t.Errorf("second run left %d hourly rows, want %d", n, hourlyBefore)
	}

	// A row that arrives late for 11:00 is counted by the next run.
	f.logRow(t, models.RequestLog{CreatedAt: day(10, 11, 30), APIKeyID: &keyID, LogicalModel: "m", StatusCode: 404, LatencyMS: 1})
	f.run(t, f.m.RollUp, &rolled, workflows.RollUpInput{SourceTable: workflows.TableRequestLogs, AsOf: rollupAsOf})
	want[day(10, 11, 0)] = map[string][2]int64{"4xx": {2, 2}}
	checkHours("after a late row", want)

	// The retention deletes the rolled-up row of 2 January, not its sums.
	f.run(t, f.m.DeleteExpiredRows, &deleted, workflows.DeleteExpiredRowsInput{Table: workflows.TableRequestLogs, AsOf: rollupAsOf})
	if deleted.Deleted != 1 || !deleted.Before.Equal(day(3, 12, 0)) {
		t.Errorf("DeleteExpiredRows = %+v, want 1 row before 2026-01-03T12:00", deleted)
	}
	if n := f.countRows(t, &models.RequestLog{}); n != 7 {
		t.Errorf("%d request log rows left, want 7", n)
	}
	checkHours("after the deletion", want)

	// A backfill for a time before the deletion does not rebuild the hours
	// whose raw rows are gone.
	f.run(t, f.m.RollUp, &rolled, workflows.RollUpInput{SourceTable: workflows.TableRequestLogs, AsOf: day(2, 11, 30)})
	if rolled.Hours != 0 {
		t.Errorf("backfill rolled up %d hours from %s, want none", rolled.Hours, rolled.From)
	}
	checkHours("after the backfill", want)
}

func TestDeleteExpiredRequestLogInBatches(t *testing.T) {
	f := newMaintenanceFixture(t, rollupSettings())
	keyID := "0196f3a0-0000-7000-8000-000000000002"
	// More than one batch of rows, ten days before the run.
	f.logRows(t, keyID, 5003, 200, rollupAsOf.Add(-10*24*time.Hour))
	f.logRow(t, models.RequestLog{CreatedAt: rollupAsOf.Add(-time.Hour), StatusCode: 200})

	var rolled workflows.RollUpResult
	f.run(t, f.m.RollUp, &rolled, workflows.RollUpInput{SourceTable: workflows.TableRequestLogs, AsOf: rollupAsOf})
	var deleted workflows.DeleteExpiredRowsResult
	f.run(t, f.m.DeleteExpiredRows, &deleted, workflows.DeleteExpiredRowsInput{Table: workflows.TableRequestLogs, AsOf: rollupAsOf})
	if deleted.Deleted != 5003 {
		t.Errorf("deleted %d rows, want 5003", deleted.Deleted)
	}
	if n := f.countRows(t, &models.RequestLog{}); n != 1 {
		t.Errorf("%d rows left, want the recent one", n)
	}
	var sum int64
	if err := f.store.DB.Model(&models.RequestLogHourly{}).Select("COALESCE(SUM(requests), 0)").Scan(&sum).Error; err != nil {
		t.Fatal(err)
	}
	if sum != 5004 {
		t.Errorf("hourly tables count %d requests, want 5004", sum)
	}
}

func TestRollUpProviderMetrics(t *testing.T) {
	f := newMaintenanceFixture(t, rollupSettings())
	aggregator := metrics.NewAggregator(f.store.DB, metrics.AggregatorOptions{})
	observe := func(at time.Time, status string, errors int64, latencies ...time.Duration) {
		values := metrics.BucketValues{Requests: int64(len(latencies)), Errors: errors, TokensIn: 3, TokensOut: 4}
		for _, latency := range latencies {
			values.Latency.Observe(latency)
		}
		aggregator.Record(metrics.BucketKey{Start: at, ProviderID: "p", LogicalModel: "m", Status: status}, values)
	}
	ten := time.Date(2026, 1, 10, 10, 0, 0, 0, time.UTC)
	observe(ten.Add(5*time.Minute), "ok", 0, 40*time.Millisecond)
	observe(ten.Add(30*time.Minute), "ok", 0, 600*time.Millisecond)
	observe(ten.Add(31*time.Minute), "ok", 0, 1200*time.Millisecond, 1200*time.Millisecond)
	observe(ten.Add(40*time.Minute), "upstream_error", 1, 70*time.Millisecond)
	// Three days old: past the two-day retention of minute buckets.
	observe(ten.Add(-3*24*time.Hour), "ok", 0, 10*time.Millisecond)
	if err := aggregator.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	check := func(label string) {
		t.Helper()
		var rows []models.ProviderMetricsHourly
		if err := f.store.DB.Where("hour_start = ?", ten).Order("status").Find(&rows).Error; err != nil {
			t.Fatal(err)
		}
		if len(rows) != 2 || rows[0].Status != "ok" || rows[1].Status != "upstream_error" {
			t.Fatalf("%s: hourly rows of 10:00 = %+v, want ok and upstream_error", label, rows)
		}
		ok := rows[0]
		if ok.Requests != 4 || ok.TokensIn != 9 || ok.TokensOut != 12 || ok.LatencyMSSum != 40+600+2400 {
			t.Errorf("%s: ok row = %d requests, %d/%d tokens, %g ms; want 4, 9/12, 3040", label, ok.Requests, ok.TokensIn, ok.TokensOut, ok.LatencyMSSum)
		}
		// The cumulative histograms of the minutes add up.
		if ok.LatencyLE50 != 1 || ok.LatencyLE500 != 1 || ok.LatencyLE750 != 2 || ok.LatencyLE1500 != 4 || ok.LatencyLE120000 != 4 {
			t.Errorf("%s: ok histogram le50=%d le500=%d le750=%d le1500=%d le120000=%d, want 1 1 2 4 4",
				label, ok.LatencyLE50, ok.LatencyLE500, ok.LatencyLE750, ok.LatencyLE1500, ok.LatencyLE120000)
		}
		if rows[1].Errors != 1 || rows[1].Requests != 1 {
			t.Errorf("%s: upstream_error row = %+v, want 1 request and 1 error", label, rows[1])
		}
	}
	var rolled workflows.RollUpResult
	f.run(t, f.m.RollUp, &rolled, workflows.RollUpInput{SourceTable: workflows.TableProviderMetrics, AsOf: rollupAsOf})
	check("first run")
	f.run(t, f.m.RollUp, &rolled, workflows.RollUpInput{SourceTable: workflows.TableProviderMetrics, AsOf: rollupAsOf})
	check("second run")

	var deleted workflows.DeleteExpiredRowsResult
	f.run(t, f.m.DeleteExpiredRows, &deleted, workflows.DeleteExpiredRowsInput{Table: workflows.TableProviderMetrics, AsOf: rollupAsOf})
	if deleted.Deleted != 1 {
		t.Errorf("deleted %d minute buckets, want the old one", deleted.Deleted)
	}
	if n := f.countRows(t, &models.ProviderMetricsMinute{}); n != 4 {
		t.Errorf("%d minute buckets left, want 4", n)
	}
	var oldHour int64
	if err := f.store.DB.Model(&models.ProviderMetricsHourly{}).Where("hour_start = ?", ten.Add(-3*24*time.Hour)).Count(&oldHour).Error; err != nil {
		t.Fatal(err)
	}
	if oldHour != 1 {
		t.Errorf("the hourly row of the deleted bucket is gone")
	}
	check("after the deletion")
}

func TestDeleteExpiredProviderHealth(t *testing.T) {
	f := newMaintenanceFixture(t, rollupSettings())
	rows := []models.ProviderHealth{
		{ProviderID: "p", CheckedAt: rollupAsOf.Add(-3 * 24 * time.Hour), Healthy: true, StatusCode: 200},
		{ProviderID: "p", CheckedAt: rollupAsOf.Add(-time.Hour), Healthy: false, Error: "HTTP 500"},
	}
	if err := f.store.InsertProviderHealth(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
	var deleted workflows.DeleteExpiredRowsResult
	f.run(t, f.m.DeleteExpiredRows, &deleted, workflows.DeleteExpiredRowsInput{Table: workflows.TableProviderHealth, AsOf: rollupAsOf})
	if deleted.Deleted != 1 {
		t.Errorf("deleted %d probe results, want 1", deleted.Deleted)
	}
	if n := f.countRows(t, &models.ProviderHealth{}); n != 1 {
		t.Errorf("%d probe results left, want 1", n)
	}
}

func TestRollUpRejectsUnknownTable(t *testing.T) {
	f := newMaintenanceFixture(t, rollupSettings())
	for _, table := range []string{"users", workflows.TableProviderHealth} {
		if _, err := f.env.ExecuteActivity(f.m.RollUp, workflows.RollUpInput{SourceTable: table, AsOf: rollupAsOf}); err == nil {
			t.Errorf("RollUp of %s succeeded, want an error", table)
		}
	}
	if _, err := f.env.ExecuteActivity(f.m.DeleteExpiredRows, workflows.DeleteExpiredRowsInput{Table: "users", AsOf: rollupAsOf}); err == nil {
		t.Error("DeleteExpiredRows of users succeeded, want an error")
	}
}
