package api

import (
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/aihigress/aihigress/internal/metrics"
)

// Bounds of the window of GET /admin/metrics/providers.
const (
	minMetricsWindow     = time.Minute
	maxMetricsWindow     = 7 * 24 * time.Hour
	defaultMetricsWindow = time.Hour
)

// providerMetricsResponse is the body of GET /admin/metrics/providers.
type providerMetricsResponse struct {
	Window string `json:"window"`
	// From is the start of the first minute bucket in the window, and To
	// the time of the request.
	From       time.Time                `json:"from"`
	To         time.Time                `json:"to"`
	Thresholds metrics.HealthThresholds `json:"thresholds"`
	Providers  []providerMetricsView    `json:"providers"`
}

// providerMetricsView is the summary of one provider, or of one logical
// model of a provider in Models.
type providerMetricsView struct {
	ProviderID   string `json:"provider_id"`
	LogicalModel string `json:"logical_model,omitempty"`
	// Status is the health status; see metrics.HealthThresholds.
	Status   string `json:"status"`
	Requests int64  `json:"requests"`
	Errors   int64  `json:"errors"`
	// SuccessRate is the share of requests with status ok, and ErrorRate
	// the share that counts against the provider. Both are null without
	// requests.
	SuccessRate *float64              `json:"success_rate"`
	ErrorRate   *float64              `json:"error_rate"`
	LatencyMS   latencyView           `json:"latency_ms"`
	TTFTMS      latencyView           `json:"ttft_ms"`
	Tokens      tokensView            `json:"tokens"`
	Statuses    map[string]int64      `json:"statuses"`
	Models      []providerMetricsView `json:"models,omitempty"`

	values metrics.BucketValues
	ok     int64
}

// latencyView summarizes a histogram in milliseconds; the values are null
// when it is empty.
type latencyView struct {
	Count int64    `json:"count"`
	P50   *float64 `json:"p50"`
	P95   *float64 `json:"p95"`
	Mean  *float64 `json:"mean"`
}

type tokensView struct {
	In  int64 `json:"in"`
	Out int64 `json:"out"`
}

// providerMetrics serves GET /admin/metrics/providers?window=1h: the
// request counts, success rate, latency and time-to-first-token
// percentiles, tokens and health of each provider, from the minute buckets
// that every process flushes to the database.
func (s *Server) providerMetrics(c *gin.Context) {
	window := defaultMetricsWindow
	if raw, ok := c.GetQuery("window"); ok {
		parsed, err := time.ParseDuration(raw)
		if err != nil || parsed < minMetricsWindow || parsed > maxMetricsWindow {
			abortParamError(c, http.StatusBadRequest, "invalid_window", "window",
				fmt.Sprintf("window must be a Go duration from 1m to 168h, such as 15m or 24h, got %q", raw))
			return
		}
		window = parsed
	}

	// The window covers whole minute buckets: the current one and enough
	// earlier ones to span window, rounded up to the minute.
	now := time.Now().UTC()
	minutes := (window + time.Minute - 1) / time.Minute
	from := now.Truncate(time.Minute).Add(-(minutes - 1) * time.Minute)
	rows, err := metrics.QueryWindow(c.Request.Context(), s.Store.DB, from)
	if err != nil {
		s.internalError(c, "read provider metrics failed", err)
		return
	}

	thresholds := s.ProviderHealth.WithDefaults()
	c.JSON(http.StatusOK, providerMetricsResponse{
		Window:     window.String(),
		From:       from,
		To:         now,
		Thresholds: thresholds,
		Providers:  s.summarizeProviders(rows, thresholds),
	})
}

// summarizeProviders merges the rows per provider and per logical model.
// Providers of the catalog without requests in the window are listed too,
// with the status unknown.
func (s *Server) summarizeProviders(rows []metrics.WindowRow, thresholds metrics.HealthThresholds) []providerMetricsView {
	byProvider := map[string]*providerMetricsView{}
	modelsOf := map[string]map[string]*providerMetricsView{}
	provider := func(id string) *providerMetricsView {
		if p, ok := byProvider[id]; ok {
			return p
		}
		p := &providerMetricsView{ProviderID: id, Statuses: map[string]int64{}}
		byProvider[id] = p
		modelsOf[id] = map[string]*providerMetricsView{}
		return p
	}
	if s.Catalog != nil {
		for _, p := range s.Catalog.Providers() {
			provider(p.ID)
		}
	}

	for _, row := range rows {
		p := provider(row.ProviderID)
		m, ok := modelsOf[row.ProviderID][row.LogicalModel]
		if !ok {
			m = &providerMetricsView{ProviderID: row.ProviderID, LogicalModel: row.LogicalModel, Statuses: map[string]int64{}}
			modelsOf[row.ProviderID][row.LogicalModel] = m
		}
		for _, view := range []*providerMetricsView{p, m} {
			view.values.Merge(row.BucketValues)
			view.Statuses[row.Status] += row.Requests
			if row.Status == metrics.StatusOK {
				view.ok += row.Requests
			}
		}
	}

	result := make([]providerMetricsView, 0, len(byProvider))
	for id, p := range byProvider {
		p.finish(thresholds)
		for _, m := range modelsOf[id] {
			m.finish(thresholds)
			p.Models = append(p.Models, *m)
		}
		sort.Slice(p.Models, func(i, j int) bool { return p.Models[i].LogicalModel < p.Models[j].LogicalModel })
		result = append(result, *p)
	}
	sort.Slice(result, func(i, j int) bool { return result[i].ProviderID < result[j].ProviderID })
	return result
}

// finish fills the exported fields from the merged values.
func (v *providerMetricsView) finish(thresholds metrics.HealthThresholds) {
	values := v.values
	v.Requests, v.Errors = values.Requests, values.Errors
	v.Status = thresholds.Status(values.Requests, values.Errors)
	if values.Requests > 0 {
		success := float64(v.ok) / float64(values.Requests)
		errorRate := float64(values.Errors) / float64(values.Requests)
		v.SuccessRate, v.ErrorRate = &success, &errorRate
	}
	v.LatencyMS = summarize(values.Latency)
	v.TTFTMS = summarize(values.TTFT)
	v.Tokens = tokensView{In: values.TokensIn, Out: values.TokensOut}
}

func summarize(h metrics.Histogram) latencyView {
	view := latencyView{Count: h.Count}
	if p50, ok := h.Percentile(0.5); ok {
		view.P50 = &p50
	}
	if p95, ok := h.Percentile(0.95); ok {
		view.P95 = &p95
	}
	if mean, ok := h.MeanMS(); ok {
		view.Mean = &mean
	}
	return view
}
