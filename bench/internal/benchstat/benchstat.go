// Package benchstat holds the summary statistics that the benchmark
// commands share.
package benchstat

import (
	"math"
	"slices"
)

// Median returns the median of values, the mean of the middle two for an
// even count, and NaN for none.
func Median(values []float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	middle := len(sorted) / 2
	if len(sorted)%2 == 0 {
		return (sorted[middle-1] + sorted[middle]) / 2
	}
	return sorted[middle]
}
