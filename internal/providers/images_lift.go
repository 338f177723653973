package providers

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
)

// The images of an image response are long base64 strings. encoding/json's
// scanner reads every byte of them through its state machine: a 1 MiB
// image took 14 to 18 ms to decode on a 2-core AMD EPYC VM under Go 1.26,
// against 2 to 4 ms for this decoder (BenchmarkDecodeImagesJSON). So the
// lanes lift those strings out of the document before they unmarshal the
// rest, and decode them with encoding/base64 directly. Any lifted string
// that does not decode as plain base64, such as one with escape sequences,
// and any decoding error send the whole document through encoding/json
// alone. The decoded images therefore match what encoding/json gives, which
// TestDecodeOpenAIImagesMutations checks on thousands of altered bodies.

// liftMinBytes is the shortest string that liftBase64 lifts. Shorter ones
// cost encoding/json little.
const liftMinBytes = 1024

// liftedPrefix starts the placeholder string that replaces a lifted string
// in the skeleton: `"\u0000lifted:` and the string's index.
const liftedPrefix = `"\u0000lifted:`

// errLiftFailed reports that the lifted strings cannot stand for the
// document: one is not plain base64, or the decoded fields did not use
// each exactly once. The caller then decodes the document itself.
var errLiftFailed = errors.New("lifted base64 strings do not match the document")

// liftedStrings are the strings that liftBase64 took out of a document, as
// slices of the document without their quotes.
type liftedStrings struct {
	spans [][]byte
	used  []bool
}

// liftBase64 returns a copy of the JSON document data in which every string
// value of the object member key that is at least liftMinBytes long is
// replaced by a placeholder. The placeholders decode into base64JSON
// values that refer to the lifted strings. Without such a string, or when
// data does not scan as JSON, it returns data itself and nil.
func liftBase64(data []byte, key string) ([]byte, *liftedStrings) {
	var (
		skeleton []byte
		lifted   liftedStrings
		copied   int
		// keyRead is true after a string equal to key, and memberOfKey
		// after the colon that follows it.
		keyRead     bool
		memberOfKey bool
	)

	for i := 0; i < len(data); {
		switch c := data[i]; c {
		case ' ', '\t', '\n', '\r':
			i++

		case '"':
			end := stringEnd(data, i)
			if end < 0 {
				return data, nil
			}
			text := data[i+1 : end-1]
			if memberOfKey && len(text) >= liftMinBytes {
				skeleton = append(skeleton, data[copied:i]...)
				skeleton = append(skeleton, liftedPrefix...)
				skeleton = strconv.AppendInt(skeleton, int64(len(lifted.spans)), 10)
				skeleton = append(skeleton, '"')
				copied = end
				lifted.spans = append(lifted.spans, text)
			}
			// A key with an escape sequence never equals key here, which
			// only leaves its value to encoding/json.
			keyRead = string(text) == key
			memberOfKey = false
			i = end

		case ':':
			memberOfKey = keyRead
			keyRead = false
			i++

		default:
			keyRead, memberOfKey = false, false
			i++
		}
	}

	if len(lifted.spans) == 0 {
		return data, nil
	}
	skeleton = append(skeleton, data[copied:]...)
	lifted.used = make([]bool, len(lifted.spans))
	return skeleton, &lifted
}

// base64JSON is a JSON string of base64 text, decoded as encoding/json
// decodes a []byte field, or a placeholder for a string that liftBase64
// lifted out of the document.
type base64JSON struct {
	data []byte
	// ref is 1 plus the index of the lifted string, or 0 when data holds
	// the value.
	ref int
}

// UnmarshalJSON decodes raw, which encoding/json has already checked.
func (v *base64JSON) UnmarshalJSON(raw []byte) error {
	// A member that appears twice replaces the value of the first.
	*v = base64JSON{}

	if rest, ok := bytes.CutPrefix(raw, []byte(liftedPrefix)); ok && len(rest) > 1 {
		index, err := strconv.Atoi(string(rest[:len(rest)-1]))
		if err == nil && index >= 0 {
			v.ref = index + 1
			return nil
		}
	}

	// A string without escapes is its own base64 text, which saves
	// encoding/json a second scan of it.
	if len(raw) >= 2 && raw[0] == '"' && bytes.IndexByte(raw, '\\') < 0 {
		decoded, err := decodeBase64(raw[1 : len(raw)-1])
		if err != nil {
			return err
		}
		v.data = decoded
		return nil
	}
	return json.Unmarshal(raw, &v.data)
}

// bytes returns the decoded value of v. A placeholder takes its lifted
// string, which each placeholder may use once. Without lifted strings a
// placeholder is invalid base64, as it is for encoding/json.
func (l *liftedStrings) bytes(v base64JSON) ([]byte, error) {
	if v.ref == 0 {
		return v.data, nil
	}
	if l == nil {
		return nil, base64.CorruptInputError(0)
	}
	index := v.ref - 1
	if index >= len(l.spans) || l.used[index] {
		return nil, errLiftFailed
	}
	l.used[index] = true
	return decodePlainBase64(l.spans[index])
}

// check returns errLiftFailed unless every lifted string was used.
func (l *liftedStrings) check() error {
	if l == nil {
		return nil
	}
	for _, used := range l.used {
		if !used {
			return errLiftFailed
		}
	}
	return nil
}

// decodeBase64 decodes standard base64 text as encoding/json does for a
// []byte field.
func decodeBase64(text []byte) ([]byte, error) {
	decoded := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
	n, err := base64.StdEncoding.Decode(decoded, text)
	if err != nil {
		return nil, err
	}
	return decoded[:n], nil
}

// decodePlainBase64 decodes a lifted string, which stands for the same
// bytes in JSON only if it is padded base64 and nothing else. It returns
// errLiftFailed for any other string. encoding/base64 skips line breaks,
// which a JSON string may not hold raw, and a string with line breaks
// decodes to fewer bytes than its length gives, which the check below
// catches without another pass over the string.
func decodePlainBase64(text []byte) ([]byte, error) {
	if len(text)%4 != 0 {
		return nil, errLiftFailed
	}
	decoded, err := decodeBase64(text)
	if err != nil {
		return nil, errLiftFailed
	}
	padding := len(text) - len(bytes.TrimRight(text, "="))
	if len(decoded) != len(text)/4*3-padding {
		return nil, errLiftFailed
	}
	return decoded, nil
}
