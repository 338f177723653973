package metrics

// Health statuses of a provider.
const (
	HealthHealthy   = "healthy"
	HealthDegraded  = "degraded"
	HealthUnhealthy = "unhealthy"
	// HealthUnknown is a provider with fewer requests in the window than
	// HealthThresholds.MinRequests, too few for a rate to mean much.
	HealthUnknown = "unknown"
)

// Defaults of the zero fields of HealthThresholds.
const (
	DefaultDegradedErrorRate  = 0.05
	DefaultUnhealthyErrorRate = 0.25
	DefaultHealthMinRequests  = 10
)

// HealthThresholds turn a provider's error rate into a health status.
type HealthThresholds struct {
	// DegradedErrorRate is the error rate from which a provider is
	// degraded. Zero means DefaultDegradedErrorRate.
	DegradedErrorRate float64 `json:"degraded_error_rate"`
	// UnhealthyErrorRate is the error rate from which a provider is
	// unhealthy. Zero means DefaultUnhealthyErrorRate.
	UnhealthyErrorRate float64 `json:"unhealthy_error_rate"`
	// MinRequests is the number of requests below which the status is
	// unknown. Zero means DefaultHealthMinRequests; set 1 to rate every
	// provider with traffic.
	MinRequests int `json:"min_requests"`
}

// WithDefaults returns t with its zero fields set to the defaults.
func (t HealthThresholds) WithDefaults() HealthThresholds {
	if t.DegradedErrorRate <= 0 {
		t.DegradedErrorRate = DefaultDegradedErrorRate
	}
	if t.UnhealthyErrorRate <= 0 {
		t.UnhealthyErrorRate = DefaultUnhealthyErrorRate
	}
	if t.MinRequests <= 0 {
		t.MinRequests = DefaultHealthMinRequests
	}
	return t
}

// Status returns the health of a provider with requests and errors in a
// window: unknown below MinRequests, unhealthy from UnhealthyErrorRate,
// degraded from DegradedErrorRate and healthy below it.
func (t HealthThresholds) Status(requests, errors int64) string {
	t = t.WithDefaults()
	if requests <= 0 || requests < int64(t.MinRequests) {
		return HealthUnknown
	}
	rate := float64(errors) / float64(requests)
	switch {
	case rate >= t.UnhealthyErrorRate:
		return HealthUnhealthy
	case rate >= t.DegradedErrorRate:
		return HealthDegraded
	default:
		return HealthHealthy
	}
}
