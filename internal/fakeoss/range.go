package fakeoss

import (
	"strconv"
	"strings"
)

type rangeOutcome int

const (
	rangeWhole rangeOutcome = iota
	rangePartial
	rangeUnsatisfiable
)

// resolveRange applies a Range header to an object of size bytes the way
// OSS documents it. It returns the inclusive byte positions of a partial
// response. OSS uses only the first range of a list.
//
// By default a malformed range, or one that reaches past the object, is
// ignored and the whole object is returned with 200. With
// x-oss-range-behavior: standard (standard is true), a range that starts
// past the end gets 416, and an end past the object is moved
// to its last byte. A malformed header is still ignored.
func resolveRange(header string, size int64, standard bool) (first, last int64, outcome rangeOutcome) {
	spec, ok := strings.CutPrefix(strings.TrimSpace(header), "bytes=")
	if !ok {
		return 0, 0, rangeWhole
	}
	spec, _, _ = strings.Cut(spec, ",")
	startText, endText, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, 0, rangeWhole
	}

	if startText == "" {
		// bytes=-n selects the last n bytes.
		n, err := strconv.ParseInt(endText, 10, 64)
		switch {
		case err != nil || n < 0:
			return 0, 0, rangeWhole
		case n > 0 && n <= size:
			return size - n, size - 1, rangePartial
		case !standard:
			return 0, 0, rangeWhole
		case n == 0 || size == 0:
			return 0, 0, rangeUnsatisfiable
		default:
			return 0, size - 1, rangePartial
		}
	}

	start, err := strconv.ParseInt(startText, 10, 64)
	if err != nil || start < 0 {
		return 0, 0, rangeWhole
	}
	end := size - 1
	if endText != "" {
		end, err = strconv.ParseInt(endText, 10, 64)
		if err != nil || end < start {
			return 0, 0, rangeWhole
		}
	}

	switch {
	case start < size && end < size:
		return start, end, rangePartial
	case !standard:
		return 0, 0, rangeWhole
	case start >= size:
		return 0, 0, rangeUnsatisfiable
	default:
		return start, size - 1, rangePartial
	}
}
