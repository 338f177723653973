package providers

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestForEachMember(t *testing.T) {
	tests := []struct {
		name   string
		data   string
		want   []string // name=value pairs
		wantOK bool
	}{
		{"empty object", ` { } `, nil, true},
		{"flat", `{"a":1,"b":"x","c":null,"d":true}`, []string{"a=1", `b="x"`, "c=null", "d=true"}, true},
		{"spaces", " {\n \"a\" :\t[ 1 , 2 ] ,\"b\": {} }\n", []string{"a=[ 1 , 2 ]", "b={}"}, true},
		{"nested brackets in strings", `{"a":{"s":"}]\"{["},"b":["]"]}`, []string{`a={"s":"}]\"{["}`, `b=["]"]`}, true},
		{"escaped backslash before quote", `{"a":"x\\","b":2}`, []string{`a="x\\"`, "b=2"}, true},
		{"escaped name kept", `{"u\"s":1}`, []string{`u\"s=1`}, true},
		{"chunk", `{"id":"c1","choices":[{"index":0,"delta":{"content":"hi"}}],"usage":{"prompt_tokens":3}}`,
			[]string{`id="c1"`, `choices=[{"index":0,"delta":{"content":"hi"}}]`, `usage={"prompt_tokens":3}`}, true},
		{"not an object", `[1]`, nil, false},
		{"unterminated string", `{"a":"x}`, nil, false},
		{"unterminated object", `{"a":{"b":1}`, []string{`a={"b":1}`}, false},
		{"mismatched brackets", `{"a":[1}`, nil, false},
		{"missing colon", `{"a" 1}`, nil, false},
		{"missing value", `{"a":}`, nil, false},
		{"trailing comma", `{"a":1,}`, []string{"a=1"}, false},
		{"text after the object", `{"a":1} x`, []string{"a=1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			ok := forEachMember([]byte(tt.data), func(name, value []byte) {
				got = append(got, string(name)+"="+string(value))
			})
			if ok != tt.wantOK {
				t.Errorf("forEachMember = %v, want %v", ok, tt.wantOK)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("members = %q, want %q", got, tt.want)
			}
		})
	}
}

// FuzzDecodeChunk checks decodeChunk against a decode of the whole chunk
// with encoding/json, for chunks that encoding/json accepts.
func FuzzDecodeChunk(f *testing.F) {
	f.Add(usageChunk)
	f.Add(`{"choices":[{"index":0,"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	f.Add(`{"error":{"message":"overloaded"},"x":[{"usage":{"prompt_tokens":9}}]}`)
	f.Add(`{"choices":null,"usage":{},"error":null}`)
	f.Fuzz(func(t *testing.T, data string) {
		var whole struct {
			Choices []json.RawMessage `json:"choices"`
			Usage   *Usage            `json:"usage"`
			Error   json.RawMessage   `json:"error"`
		}
		if err := json.Unmarshal([]byte(data), &whole); err != nil {
			t.Skip("encoding/json rejects the chunk")
		}
		// encoding/json matches member names without regard to case and
		// after unescaping them, where decodeChunk takes exact names.
		lower := strings.ToLower(data)
		for _, name := range []string{"usage", "choices", "error"} {
			if strings.Count(lower, name) != strings.Count(data, `"`+name+`"`) {
				t.Skip("a member name differs from the exact one")
			}
		}

		want := ChunkInfo{
			Usage:     whole.Usage,
			UsageOnly: whole.Usage != nil && len(whole.Choices) == 0,
			Error:     len(whole.Error) > 0 && string(whole.Error) != "null",
		}
		if got := decodeChunk([]byte(data), ChunkInfo{}); !reflect.DeepEqual(got, want) {
			t.Errorf("decodeChunk(%q) = %+v, want %+v", data, got, want)
		}
	})
}
