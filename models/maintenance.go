package models

import "time"

// RequestLogHourly is the request log summed per hour, API key, user,
// logical model, provider and HTTP status class. The roll-up schedule
// writes it and replaces an hour's rows when it rolls the hour up again.
type RequestLogHourly struct {
	ID           int64 `gorm:"primaryKey;autoIncrement"`
	HourStart    time.Time
	APIKeyID     *string
	UserID       *string
	LogicalModel string
	ProviderID   string
	// StatusClass is the first digit of the HTTP status followed by "xx",
	// such as "2xx".
	StatusClass string
	Requests    int64
	// Errors counts the requests with a status of 400 or more, or with an
	// error code, such as a stream that failed after its 200 headers.
	Errors           int64
	PromptTokens     int64
	CompletionTokens int64
	LatencyMSSum     float64 `gorm:"column:latency_ms_sum"`
	UpstreamMSSum    float64 `gorm:"column:upstream_ms_sum"`
}

// TableName keeps the table name singular, as the migration names it.
func (RequestLogHourly) TableName() string { return "request_log_hourly" }

// ProviderMetricsHourly is provider_metrics_minute summed per hour. Its
// LatencyLE and TTFTLE fields are cumulative histogram counts, as in
// ProviderMetricsMinute, so an hour's histogram is the sum of its minutes'.
type ProviderMetricsHourly struct {
	HourStart       time.Time `gorm:"primaryKey"`
	ProviderID      string    `gorm:"primaryKey"`
	LogicalModel    string    `gorm:"primaryKey"`
	Status          string    `gorm:"primaryKey"`
	Requests        int64
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
	TTFTCount       int64   `gorm:"column:ttft_count"`
	TTFTMSSum       float64 `gorm:"column:ttft_ms_sum"`
	TTFTLE50        int64   `gorm:"column:ttft_le_50"`
	TTFTLE100       int64   `gorm:"column:ttft_le_100"`
	TTFTLE250       int64   `gorm:"column:ttft_le_250"`
	TTFTLE500       int64   `gorm:"column:ttft_le_500"`
	TTFTLE750       int64   `gorm:"column:ttft_le_750"`
	TTFTLE1000      int64   `gorm:"column:ttft_le_1000"`
	TTFTLE1500      int64   `gorm:"column:ttft_le_1500"`
	TTFTLE2000      int64   `gorm:"column:ttft_le_2000"`
	TTFTLE3000      int64   `gorm:"column:ttft_le_3000"`
	TTFTLE5000      int64   `gorm:"column:ttft_le_5000"`
	TTFTLE10000     int64   `gorm:"column:ttft_le_10000"`
	TTFTLE20000     int64   `gorm:"column:ttft_le_20000"`
	TTFTLE60000     int64   `gorm:"column:ttft_le_60000"`
	TTFTLE120000    int64   `gorm:"column:ttft_le_120000"`
}

// TableName keeps the table name singular, as the migration names it.
func (ProviderMetricsHourly) TableName() string { return "provider_metrics_hourly" }

// RollupProgress is the roll-up state of one source table, such as
// request_logs.
type RollupProgress struct {
	SourceTable string `gorm:"primaryKey"`
	// RolledUntil is the end of the rolled-up hours. Raw rows before it
	// may be deleted.
	RolledUntil time.Time
	// DeletedBefore is the time before which raw rows may have been
	// deleted, always the start of an hour. Hours before it are not
	// rolled up again. It is nil until the first deletion.
	DeletedBefore *time.Time
	UpdatedAt     time.Time
}

// TableName keeps the table name singular, as the migration names it.
func (RollupProgress) TableName() string { return "rollup_progress" }

// ProviderHealth is one probe of a provider by the probe schedule.
type ProviderHealth struct {
	ID         int64 `gorm:"primaryKey;autoIncrement"`
	ProviderID string
	CheckedAt  time.Time
	Healthy    bool
	// StatusCode is the HTTP status of the probe, or 0 when no response
	// arrived.
	StatusCode int
	LatencyMS  float64 `gorm:"column:latency_ms"`
	// Error describes why the probe failed, or is empty.
	Error string
}

// TableName keeps the table name singular, as the migration names it.
func (ProviderHealth) TableName() string { return "provider_health" }
