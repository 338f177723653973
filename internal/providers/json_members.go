package providers

import "bytes"

// forEachMember calls fn with the name and the raw value of each top-level
// member of the JSON object data, in order, without decoding the values.
// The name is as it appears between its quotes, escapes included. It
// returns false when data is not a well-formed object, possibly after some
// calls of fn. It checks the structure of the object and its nested values
// but not the contents of strings and literals, which a decoder of a value
// checks.
func forEachMember(data []byte, fn func(name, value []byte)) bool {
	i := skipJSONSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = skipJSONSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return skipJSONSpace(data, i+1) == len(data)
	}

	for {
		if i >= len(data) || data[i] != '"' {
			return false
		}
		nameEnd := stringEnd(data, i)
		if nameEnd < 0 {
			return false
		}
		name := data[i+1 : nameEnd-1]

		i = skipJSONSpace(data, nameEnd)
		if i >= len(data) || data[i] != ':' {
			return false
		}
		valueStart := skipJSONSpace(data, i+1)
		valueEnd := jsonValueEnd(data, valueStart)
		if valueEnd < 0 {
			return false
		}
		fn(name, data[valueStart:valueEnd])

		i = skipJSONSpace(data, valueEnd)
		if i >= len(data) {
			return false
		}
		switch data[i] {
		case ',':
			i = skipJSONSpace(data, i+1)
		case '}':
			return skipJSONSpace(data, i+1) == len(data)
		default:
			return false
		}
	}
}

// stringEnd returns the offset after the closing quote of the JSON string
// that starts at data[start], or -1 when it does not end.
func stringEnd(data []byte, start int) int {
	for i := start + 1; ; {
		quote := bytes.IndexByte(data[i:], '"')
		if quote < 0 {
			return -1
		}
		i += quote
		// The quote is escaped when an odd number of backslashes precedes it.
		backslashes := 0
		for j := i - 1; j > start && data[j] == '\\'; j-- {
			backslashes++
		}
		if backslashes%2 == 0 {
			return i + 1
		}
		i++
	}
}

// jsonValueEnd returns the offset after the JSON value that starts at
// data[start], or -1 when it does not end or its brackets do not match.
// Literals and numbers end at the next delimiter and are not checked.
func jsonValueEnd(data []byte, start int) int {
	if start >= len(data) {
		return -1
	}
	switch data[start] {
	case '"':
		return stringEnd(data, start)
	case '{', '[':
	default:
		i := start
		for i < len(data) && !isJSONDelimiter(data[i]) {
			i++
		}
		if i == start {
			return -1
		}
		return i
	}

	// closers contains the closing bracket of each open object or array.
	var stack [32]byte
	closers := stack[:0]
	for i := start; i < len(data); i++ {
		switch c := data[i]; c {
		case '"':
			end := stringEnd(data, i)
			if end < 0 {
				return -1
			}
			i = end - 1
		case '{':
			closers = append(closers, '}')
		case '[':
			closers = append(closers, ']')
		case '}', ']':
			if len(closers) == 0 || closers[len(closers)-1] != c {
				return -1
			}
			closers = closers[:len(closers)-1]
			if len(closers) == 0 {
				return i + 1
			}
		}
	}
	return -1
}

func isJSONDelimiter(c byte) bool {
	switch c {
	case ',', '}', ']', ':', ' ', '\t', '\r', '\n', '"', '{', '[':
		return true
	}
	return false
}

// isEmptyArray reports whether value is a JSON array without elements.
func isEmptyArray(value []byte) bool {
	if len(value) < 2 || value[0] != '[' {
		return false
	}
	return skipJSONSpace(value, 1) == len(value)-1 && value[len(value)-1] == ']'
}
