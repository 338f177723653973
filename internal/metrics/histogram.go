package metrics

import (
	"math"
	"slices"
	"strconv"
	"time"
)

// bucketBoundsMS are the upper bounds, in milliseconds, of the latency and
// time-to-first-token histograms that minute buckets store. Counts are
// cumulative, as in Prometheus: the count at bound b is the number of
// observations of at most b ms, and the total count covers the values above
// the last bound too.
//
// The bounds fix the precision of the percentiles that Percentile estimates:
// a percentile falls between two bounds, so its error is at most the width
// of that interval, such as 500 ms between 1000 and 1500 ms.
var bucketBoundsMS = [...]int{50, 100, 250, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000, 20000, 60000, 120000}

const bucketCount = len(bucketBoundsMS)

// BucketBoundsMS returns the upper bounds of the histogram buckets in
// milliseconds.
func BucketBoundsMS() []int {
	return slices.Clone(bucketBoundsMS[:])
}

// Histogram is a fixed-bucket histogram over bucketBoundsMS. The zero value
// is empty.
type Histogram struct {
	// Count is the number of observations.
	Count int64
	// SumMS is the sum of the observations in milliseconds.
	SumMS float64
	// Cumulative[i] is the number of observations of at most
	// bucketBoundsMS[i] ms.
	Cumulative [bucketCount]int64
}

// Observe adds one observation.
func (h *Histogram) Observe(d time.Duration) {
	ms := float64(d) / float64(time.Millisecond)
	h.Count++
	h.SumMS += ms
	for i := bucketCount - 1; i >= 0 && ms <= float64(bucketBoundsMS[i]); i-- {
		h.Cumulative[i]++
	}
}

// Merge adds the observations of other.
func (h *Histogram) Merge(other Histogram) {
	h.Count += other.Count
	h.SumMS += other.SumMS
	for i := range h.Cumulative {
		h.Cumulative[i] += other.Cumulative[i]
	}
}

// Percentile estimates the q-quantile (0 <= q <= 1) in milliseconds, and
// reports false for an empty histogram. It finds the bucket that contains
// the rank q*Count and interpolates linearly inside it, as if the
// observations spread evenly over the bucket. The first bucket starts at 0.
// A rank above the last bound returns the last bound, 120000 ms, because
// the histogram does not know how far above it the values lie.
func (h Histogram) Percentile(q float64) (float64, bool) {
	if h.Count <= 0 || math.IsNaN(q) {
		return 0, false
	}
	q = min(max(q, 0), 1)
	rank := q * float64(h.Count)
	lower, below := 0.0, int64(0)
	for i, bound := range bucketBoundsMS {
		upper, count := float64(bound), h.Cumulative[i]
		if float64(count) >= rank && count > below {
			return lower + (upper-lower)*(rank-float64(below))/float64(count-below), true
		}
		lower, below = upper, count
	}
	return float64(bucketBoundsMS[bucketCount-1]), true
}

// MeanMS returns the mean observation in milliseconds, and false for an
// empty histogram.
func (h Histogram) MeanMS() (float64, bool) {
	if h.Count <= 0 {
		return 0, false
	}
	return h.SumMS / float64(h.Count), true
}

// bucketColumns returns the column names of the cumulative counts of a
// histogram whose columns start with prefix, such as latency_le_50.
func bucketColumns(prefix string) []string {
	columns := make([]string, bucketCount)
	for i, bound := range bucketBoundsMS {
		columns[i] = prefix + "_le_" + strconv.Itoa(bound)
	}
	return columns
}
