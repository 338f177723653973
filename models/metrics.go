package models

import "time"

// ProviderMetricsMinute is one minute bucket of upstream requests per
// provider, logical model and status, as internal/metrics writes it. The
// LatencyLE and TTFTLE fields are cumulative histogram counts: LatencyLE500
// is the number of requests that took at most 500 ms. internal/metrics
// writes the table with additive upserts and reads it with SQL sums; this
// model exists for the schema check and for ad hoc reads.
type ProviderMetricsMinute struct {
	BucketStart  time.Time `gorm:"primaryKey"`
	ProviderID   string    `gorm:"primaryKey"`
	LogicalModel string    `gorm:"primaryKey"`
	Status       string    `gorm:"primaryKey"`
	Requests     int64
	// Errors counts the requests whose status counts against the
	// provider's health.
	Errors          int64
	TokensIn        int64
	TokensOut       int64
	LatencyMSSum    float64 `gorm:"column:latency_ms_sum"`
	LatencyLE50     int64   `gorm:"column:latency_le_50"`
	LatencyLE100    int64   `gorm:"column:latency_le_100"`
	LatencyLE250    int64   `gorm:"column:latency_le_250"`
	LatencyLE500    int64   `gorm:"column:latency_le_500"`
	LatencyLE750    int64   `gorm:"column:latency_le_750"`
	LatencyLE1000   int64   `gorm:"column:latency_le_1000"`
	LatencyLE1500   int64   `gorm:"column:latency_le_1500"`
	LatencyLE2000   int64   `gorm:"column:latency_le_2000"`
	LatencyLE3000   int64   `gorm:"column:latency_le_3000"`
	LatencyLE5000   int64   `gorm:"column:latency_le_5000"`
	LatencyLE10000  int64   `gorm:"column:latency_le_10000"`
	LatencyLE20000  int64   `gorm:"column:latency_le_20000"`
	LatencyLE60000  int64   `gorm:"column:latency_le_60000"`
	LatencyLE120000 int64   `gorm:"column:latency_le_120000"`
	// TTFTCount is the number of streamed requests that received a first
	// chunk.
	TTFTCount    int64   `gorm:"column:ttft_count"`
	TTFTMSSum    float64 `gorm:"column:ttft_ms_sum"`
	TTFTLE50     int64   `gorm:"column:ttft_le_50"`
	TTFTLE100    int64   `gorm:"column:ttft_le_100"`
	TTFTLE250    int64   `gorm:"column:ttft_le_250"`
	TTFTLE500    int64   `gorm:"column:ttft_le_500"`
	TTFTLE750    int64   `gorm:"column:ttft_le_750"`
	TTFTLE1000   int64   `gorm:"column:ttft_le_1000"`
	TTFTLE1500   int64   `gorm:"column:ttft_le_1500"`
	TTFTLE2000   int64   `gorm:"column:ttft_le_2000"`
	TTFTLE3000   int64   `gorm:"column:ttft_le_3000"`
	TTFTLE5000   int64   `gorm:"column:ttft_le_5000"`
	TTFTLE10000  int64   `gorm:"column:ttft_le_10000"`
	TTFTLE20000  int64   `gorm:"column:ttft_le_20000"`
	TTFTLE60000  int64   `gorm:"column:ttft_le_60000"`
	TTFTLE120000 int64   `gorm:"column:ttft_le_120000"`
}

// TableName keeps the table name singular, as the migration names it.
func (ProviderMetricsMinute) TableName() string { return "provider_metrics_minute" }
