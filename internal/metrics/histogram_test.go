package metrics

import (
	"math"
	"slices"
	"testing"
	"time"
)

func observeAll(values ...time.Duration) Histogram {
	var h Histogram
	for _, v := range values {
		h.Observe(v)
	}
	return h
}

func repeat(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

func TestHistogramPercentile(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name   string
		values []time.Duration
		q      float64
		want   float64
		wantOK bool
	}{
		{"empty", nil, 0.5, 0, false},
		// 100 values in (50, 100]: the rank 50 lies halfway into the bucket.
		{"one bucket p50", repeat(75*ms, 100), 0.5, 75, true},
		{"one bucket p95", repeat(75*ms, 100), 0.95, 97.5, true},
		// Half at 10 ms, half at 900 ms: p50 is the top of the first
		// bucket, p95 is 90% into (750, 1000].
		{"two modes p50", append(repeat(10*ms, 50), repeat(900*ms, 50)...), 0.5, 50, true},
		{"two modes p95", append(repeat(10*ms, 50), repeat(900*ms, 50)...), 0.95, 975, true},
		{"q 0 is the low edge of the first non-empty bucket", repeat(900*ms, 10), 0, 750, true},
		{"q 1 is the top of the last non-empty bucket", append(repeat(10*ms, 9), 1200*ms), 1, 1500, true},
		{"above the last bound", repeat(200*time.Second, 4), 0.5, 120000, true},
		{"q above 1 is clamped", repeat(75*ms, 10), 7, 100, true},
		{"NaN q", repeat(75*ms, 10), math.NaN(), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := observeAll(tt.values...)
			got, ok := h.Percentile(tt.q)
			if ok != tt.wantOK {
				t.Fatalf("Percentile(%v) ok = %v, want %v", tt.q, ok, tt.wantOK)
			}
			if math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("Percentile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}

func TestHistogramBoundsAreInclusive(t *testing.T) {
	tests := []struct {
		value time.Duration
		// firstBucket is the index of the first bound that counts value.
		firstBucket int
	}{
		{0, 0},
		{50 * time.Millisecond, 0},
		{50*time.Millisecond + time.Microsecond, 1},
		{100 * time.Millisecond, 1},
		{120 * time.Second, bucketCount - 1},
		{121 * time.Second, bucketCount},
	}
	for _, tt := range tests {
		h := observeAll(tt.value)
		for i, count := range h.Cumulative {
			want := int64(0)
			if i >= tt.firstBucket {
				want = 1
			}
			if count != want {
				t.Errorf("value %s: cumulative[%d] (le %d ms) = %d, want %d", tt.value, i, bucketBoundsMS[i], count, want)
			}
		}
		if h.Count != 1 {
			t.Errorf("value %s: count = %d, want 1", tt.value, h.Count)
		}
	}
}

func TestHistogramMergeEqualsObservingAll(t *testing.T) {
	first := []time.Duration{10 * time.Millisecond, 300 * time.Millisecond, 4 * time.Second}
	second := []time.Duration{90 * time.Millisecond, 300 * time.Millisecond, 200 * time.Second}

	merged := observeAll(first...)
	merged.Merge(observeAll(second...))
	all := observeAll(append(first, second...)...)
	if merged != all {
		t.Errorf("merged histogram %+v, want %+v", merged, all)
	}
	if mean, _ := merged.MeanMS(); math.Abs(mean-(10+300+4000+90+300+200000)/6.0) > 1e-6 {
		t.Errorf("mean = %v", mean)
	}
}

// TestHistogramPrecision checks the documented error bound: an estimated
// percentile lies in the same bucket as the exact one, so it is off by at
// most that bucket's width.
func TestHistogramPrecision(t *testing.T) {
	distributions := []struct {
		name  string
		value func(i int) time.Duration
	}{
		{"uniform 0 to 2 s", func(i int) time.Duration { return time.Duration(i%2000) * time.Millisecond }},
		{"mostly fast, slow tail", func(i int) time.Duration {
			if i%20 == 0 {
				return time.Duration(5000+i%3000) * time.Millisecond
			}
			return time.Duration(200+i%300) * time.Millisecond
		}},
	}
	for _, d := range distributions {
		t.Run(d.name, func(t *testing.T) {
			const n = 10000
			values := make([]float64, n)
			var h Histogram
			for i := range n {
				v := d.value(i)
				values[i] = float64(v) / float64(time.Millisecond)
				h.Observe(v)
			}
			slices.Sort(values)
			for _, q := range []float64{0.5, 0.95} {
				exact := values[int(math.Ceil(q*n))-1]
				got, _ := h.Percentile(q)
				lower, upper := bucketAround(exact)
				if got < lower || got > upper {
					t.Errorf("p%v = %v ms, exact %v ms, want within its bucket [%v, %v]", q*100, got, exact, lower, upper)
				}
			}
		})
	}
}

// bucketAround returns the bounds of the bucket that holds v.
func bucketAround(v float64) (float64, float64) {
	lower := 0.0
	for _, bound := range bucketBoundsMS {
		if v <= float64(bound) {
			return lower, float64(bound)
		}
		lower = float64(bound)
	}
	return lower, math.Inf(1)
}

func TestBucketBoundsAscending(t *testing.T) {
	bounds := BucketBoundsMS()
	for i := 1; i < len(bounds); i++ {
		if bounds[i] <= bounds[i-1] {
			t.Errorf("bound %d (%d ms) is not above bound %d (%d ms)", i, bounds[i], i-1, bounds[i-1])
		}
	}
	bounds[0] = -1
	if bucketBoundsMS[0] == -1 {
		t.Error("BucketBoundsMS returned the package's array, not a copy")
	}
}
