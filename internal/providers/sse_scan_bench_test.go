package providers

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
)

// relayBurst returns a 16-token reply in the chunk format of
// internal/mockupstream with include_usage set: a role chunk, 16 content
// chunks, a finish chunk, a usage chunk and [DONE], 20 events in all.
func relayBurst() []byte {
	const meta = `{"id":"chatcmpl-mock0123456789","object":"chat.completion.chunk","created":1796425756,"model":"mock-gpt","system_fingerprint":"fp_mock",`
	var burst bytes.Buffer
	event := func(data string) { burst.WriteString("data: " + data + "\n\n") }

	event(meta + `"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}`)
	for i := range 16 {
		event(meta + fmt.Sprintf(`"choices":[{"index":0,"delta":{"content":"token%d "},"logprobs":null,"finish_reason":null}],"usage":null}`, i))
	}
	event(meta + `"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"length"}],"usage":null}`)
	event(meta + `"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":16,"total_tokens":20}}`)
	event("[DONE]")
	return burst.Bytes()
}

// BenchmarkStreamRelay measures the per-event cost of relaying one burst
// that arrives in a single read, without the usage chunk, as the gateway
// does for a client that did not request usage. "decoded" is the gateway's
// earlier relay: SSEReader decodes each event into a string, the earlier
// InspectChunk searches it for three quoted member names and decodes the
// usage chunk whole, and the event is encoded again and written on its
// own. "raw" is the current one: EventScanner finds each event in the read
// buffer, InspectChunk and InspectLaterChunk read its data in place and
// decode only the usage object, and the events' bytes leave in one write. Both write to a 4 KiB bufio.Writer, the buffer size of a
// net/http connection, that discards what it gets.
func BenchmarkStreamRelay(b *testing.B) {
	burst := relayBurst()
	events := bytes.Count(burst, []byte("\n\n"))
	client := bufio.NewWriterSize(io.Discard, 4<<10)

	b.Run("decoded", func(b *testing.B) {
		input := bytes.NewReader(burst)
		buffered := bufio.NewReaderSize(nil, forwardBufferSize)
		out := make([]byte, 0, 1024)
		b.ReportAllocs()
		for b.Loop() {
			input.Reset(burst)
			buffered.Reset(input)
			reader := &SSEReader{reader: buffered, maxEventSize: DefaultMaxEventSize}
			var usage *Usage
			for {
				event, err := reader.Next()
				if err != nil {
					b.Fatal(err)
				}
				if event.Data == "[DONE]" {
					out = appendDecodedEvent(out[:0], event.Name, event.Data)
					client.Write(out)
					break
				}
				info := inspectDecodedChunk(event.Data)
				if info.Usage != nil {
					usage = info.Usage
				}
				if info.UsageOnly {
					continue
				}
				out = appendDecodedEvent(out[:0], event.Name, event.Data)
				client.Write(out)
			}
			client.Flush()
			if usage == nil || usage.CompletionTokens != 16 {
				b.Fatalf("usage = %+v, want 16 completion tokens", usage)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*events), "ns/event")
	})

	b.Run("raw", func(b *testing.B) {
		input := bytes.NewReader(burst)
		scanner := NewEventScanner(nil, forwardBufferSize, DefaultMaxEventSize)
		pending := make([]byte, 0, 4096)
		flush := func() {
			client.Write(pending)
			pending = pending[:0]
		}
		b.ReportAllocs()
		for b.Loop() {
			input.Reset(burst)
			scanner.Reset(input)
			scanner.BeforeRead(flush)
			var usage *Usage
			for first := true; ; first = false {
				event, err := scanner.Next()
				if err != nil {
					b.Fatal(err)
				}
				if !event.HasData {
					pending = append(pending, event.Raw...)
					continue
				}
				if string(event.Data) == "[DONE]" {
					pending = append(pending, event.Raw...)
					break
				}
				var info ChunkInfo
				if first {
					info = InspectChunk(event.Data)
				} else {
					info = InspectLaterChunk(event.Data)
				}
				if info.Usage != nil {
					usage = info.Usage
				}
				if info.UsageOnly {
					continue
				}
				pending = append(pending, event.Raw...)
			}
			flush()
			client.Flush()
			if usage == nil || usage.CompletionTokens != 16 {
				b.Fatalf("usage = %+v, want 16 completion tokens", usage)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*events), "ns/event")
	})
}

// appendDecodedEvent encodes an event as the gateway's earlier relay did:
// an event line for a name other than "message", and one data line for
// each line of data.
func appendDecodedEvent(buf []byte, name, data string) []byte {
	if name != "" && name != "message" {
		buf = append(buf, "event: "...)
		buf = append(buf, name...)
		buf = append(buf, '\n')
	}
	for {
		line, rest, more := strings.Cut(data, "\n")
		buf = append(buf, "data: "...)
		buf = append(buf, line...)
		buf = append(buf, '\n')
		if !more {
			break
		}
		data = rest
	}
	return append(buf, '\n')
}

// inspectDecodedChunk is the gateway's earlier InspectChunk, which searched
// a string for each member name with its opening quote and decoded the
// whole chunk when it had a usage or error member.
func inspectDecodedChunk(data string) ChunkInfo {
	var info ChunkInfo
	info.Finished = decodedMemberStartsWith(data, `"finish_reason"`, '"')

	hasUsage := decodedMemberStartsWith(data, `"usage"`, '{')
	hasError := strings.Contains(data, `"error"`)
	if !hasUsage && !hasError {
		return info
	}

	var chunk struct {
		Choices []json.RawMessage `json:"choices"`
		Usage   *Usage            `json:"usage"`
		Error   json.RawMessage   `json:"error"`
	}
	if err := json.Unmarshal([]byte(data), &chunk); err != nil {
		return info
	}
	info.Usage = chunk.Usage
	info.UsageOnly = chunk.Usage != nil && len(chunk.Choices) == 0
	info.Error = len(chunk.Error) > 0 && string(chunk.Error) != "null"
	return info
}

func decodedMemberStartsWith(data, name string, first byte) bool {
	for offset := 0; ; {
		i := strings.Index(data[offset:], name)
		if i < 0 {
			return false
		}
		rest := strings.TrimLeft(data[offset+i+len(name):], " \t\r\n")
		if rest, ok := strings.CutPrefix(rest, ":"); ok {
			rest = strings.TrimLeft(rest, " \t\r\n")
			if rest != "" && rest[0] == first {
				return true
			}
		}
		offset += i + len(name)
	}
}
