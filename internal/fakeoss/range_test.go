package fakeoss

import "testing"

func TestResolveRange(t *testing.T) {
	// The object has 1000 bytes, as in the OSS documentation's examples.
	const size = 1000
	tests := []struct {
		header      string
		standard    bool
		first, last int64
		outcome     rangeOutcome
	}{
		{"", false, 0, 0, rangeWhole},
		{"bytes=0-499", false, 0, 499, rangePartial},
		{"bytes=500-999", false, 500, 999, rangePartial},
		{"bytes=-500", false, 500, 999, rangePartial},
		{"bytes=500-", false, 500, 999, rangePartial},
		{"bytes=0-", false, 0, 999, rangePartial},
		{"bytes=0-499,500-999", false, 0, 499, rangePartial},
		{"byte=0-499", false, 0, 0, rangeWhole},
		{"bytes=0-1000", false, 0, 0, rangeWhole},
		{"bytes=1000-2000", false, 0, 0, rangeWhole},
		{"bytes=1000-", false, 0, 0, rangeWhole},
		{"bytes=-2000", false, 0, 0, rangeWhole},
		{"bytes=-0", false, 0, 0, rangeWhole},
		{"bytes=5-4", false, 0, 0, rangeWhole},
		{"bytes=a-b", false, 0, 0, rangeWhole},
		{"bytes=500-2000", true, 500, 999, rangePartial},
		{"bytes=1000-2000", true, 0, 0, rangeUnsatisfiable},
		{"bytes=1000-", true, 0, 0, rangeUnsatisfiable},
		{"bytes=-2000", true, 0, 999, rangePartial},
		{"bytes=-0", true, 0, 0, rangeUnsatisfiable},
		{"bytes=5-4", true, 0, 0, rangeWhole},
		{"byte=0-499", true, 0, 0, rangeWhole},
		{"bytes=10-20", true, 10, 20, rangePartial},
	}
	for _, tt := range tests {
		first, last, outcome := resolveRange(tt.header, size, tt.standard)
		if first != tt.first || last != tt.last || outcome != tt.outcome {
			t.Errorf("resolveRange(%q, %d, standard=%t) = %d, %d, %d, want %d, %d, %d",
				tt.header, size, tt.standard, first, last, outcome, tt.first, tt.last, tt.outcome)
		}
	}
}

func TestResolveRangeEmptyObject(t *testing.T) {
	tests := []struct {
		header   string
		standard bool
		outcome  rangeOutcome
	}{
		{"bytes=0-", false, rangeWhole},
		{"bytes=0-", true, rangeUnsatisfiable},
		{"bytes=-1", true, rangeUnsatisfiable},
		{"bytes=-1", false, rangeWhole},
	}
	for _, tt := range tests {
		if _, _, outcome := resolveRange(tt.header, 0, tt.standard); outcome != tt.outcome {
			t.Errorf("resolveRange(%q, 0, standard=%t) outcome = %d, want %d", tt.header, tt.standard, outcome, tt.outcome)
		}
	}
}
