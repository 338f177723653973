package providers

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// scannedEvent is a RawEvent copied out of the scanner's buffer.
type scannedEvent struct {
	Raw     string
	Data    string
	HasData bool
}

func scanAll(s *EventScanner) ([]scannedEvent, error) {
	var events []scannedEvent
	for {
		event, err := s.Next()
		if err != nil {
			return events, err
		}
		events = append(events, scannedEvent{Raw: string(event.Raw), Data: string(event.Data), HasData: event.HasData})
	}
}

// splitReader returns the parts of input one read each.
type splitReader struct {
	parts []string
}

func (r *splitReader) Read(p []byte) (int, error) {
	if len(r.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.parts[0])
	r.parts[0] = r.parts[0][n:]
	if r.parts[0] == "" {
		r.parts = r.parts[1:]
	}
	return n, nil
}

// escapedModelChunk has a model name with escaped quotes, a backslash and a
// \u escape, and content that contains member names of a chunk.
const escapedModelChunk = `{"id":"c1","model":"vendor/\"quoted\"\\model\u00e9","choices":[{"index":0,"delta":{"content":"\"usage\":{\"x\":1}"},"finish_reason":null}],"usage":null}`

// noModelChunk is a chunk without a model member, as some upstreams send.
const noModelChunk = `{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}`

func TestEventScannerBlocks(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		want    []scannedEvent
		wantErr error
	}{
		{
			name:    "single event",
			input:   "data: hello\n\n",
			want:    []scannedEvent{{Raw: "data: hello\n\n", Data: "hello", HasData: true}},
			wantErr: io.EOF,
		},
		{
			name:  "two events",
			input: "data: a\n\ndata: b\n\n",
			want: []scannedEvent{
				{Raw: "data: a\n\n", Data: "a", HasData: true},
				{Raw: "data: b\n\n", Data: "b", HasData: true},
			},
			wantErr: io.EOF,
		},
		{
			name:    "multi-line data joined with LF",
			input:   "data: first\ndata: second\ndata:third\n\n",
			want:    []scannedEvent{{Raw: "data: first\ndata: second\ndata:third\n\n", Data: "first\nsecond\nthird", HasData: true}},
			wantErr: io.EOF,
		},
		{
			name:  "CRLF line endings kept in raw",
			input: "data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n",
			want: []scannedEvent{
				{Raw: "data: a\r\ndata: b\r\n\r\n", Data: "a\nb", HasData: true},
				{Raw: "data: c\r\n\r\n", Data: "c", HasData: true},
			},
			wantErr: io.EOF,
		},
		{
			name:  "CR line endings",
			input: "data: a\rdata: b\r\rdata: c\r\r",
			want: []scannedEvent{
				{Raw: "data: a\rdata: b\r\r", Data: "a\nb", HasData: true},
				{Raw: "data: c\r\r", Data: "c", HasData: true},
			},
			wantErr: io.EOF,
		},
		{
			name:    "mixed line endings",
			input:   "data: a\r\ndata: b\rdata: c\n\r\n",
			want:    []scannedEvent{{Raw: "data: a\r\ndata: b\rdata: c\n\r\n", Data: "a\nb\nc", HasData: true}},
			wantErr: io.EOF,
		},
		{
			name:  "comment block returned without data",
			input: ": keep-alive\n\ndata: a\n: inside\ndata: b\n\n",
			want: []scannedEvent{
				{Raw: ": keep-alive\n\n"},
				{Raw: "data: a\n: inside\ndata: b\n\n", Data: "a\nb", HasData: true},
			},
			wantErr: io.EOF,
		},
		{
			name:    "trailing comment without line ending",
			input:   "data: a\n\n:trailing",
			want:    []scannedEvent{{Raw: "data: a\n\n", Data: "a", HasData: true}},
			wantErr: io.EOF,
		},
		{
			name:  "event and id fields kept in raw",
			input: "event: ping\nid: 7\n\nevent: error\ndata: bad\n\n",
			want: []scannedEvent{
				{Raw: "event: ping\nid: 7\n\n"},
				{Raw: "event: error\ndata: bad\n\n", Data: "bad", HasData: true},
			},
			wantErr: io.EOF,
		},
		{
			name:    "only one space after colon removed",
			input:   "data:  two spaces\ndata:\ttab\n\n",
			want:    []scannedEvent{{Raw: "data:  two spaces\ndata:\ttab\n\n", Data: " two spaces\n\ttab", HasData: true}},
			wantErr: io.EOF,
		},
		{
			name:    "field without colon",
			input:   "data\ndata\n\n",
			want:    []scannedEvent{{Raw: "data\ndata\n\n", Data: "\n", HasData: true}},
			wantErr: io.EOF,
		},
		{
			name:    "empty data line",
			input:   "data:\n\n",
			want:    []scannedEvent{{Raw: "data:\n\n", HasData: true}},
			wantErr: io.EOF,
		},
		{
			name:  "blank lines between events",
			input: "\n\ndata: a\n\n",
			want: []scannedEvent{
				{Raw: "\n"},
				{Raw: "\n"},
				{Raw: "data: a\n\n", Data: "a", HasData: true},
			},
			wantErr: io.EOF,
		},
		{
			name:    "byte order mark skipped",
			input:   "\uFEFFdata: a\n\n",
			want:    []scannedEvent{{Raw: "data: a\n\n", Data: "a", HasData: true}},
			wantErr: io.EOF,
		},
		{
			name:    "model string with escapes",
			input:   "data: " + escapedModelChunk + "\n\n",
			want:    []scannedEvent{{Raw: "data: " + escapedModelChunk + "\n\n", Data: escapedModelChunk, HasData: true}},
			wantErr: io.EOF,
		},
		{
			name:    "chunk without model",
			input:   "data: " + noModelChunk + "\r\n\r\n",
			want:    []scannedEvent{{Raw: "data: " + noModelChunk + "\r\n\r\n", Data: noModelChunk, HasData: true}},
			wantErr: io.EOF,
		},
		{
			name:    "empty stream",
			input:   "",
			wantErr: io.EOF,
		},
		{
			name:    "cut inside a data line",
			input:   "data: a\n\ndata: {\"cho",
			want:    []scannedEvent{{Raw: "data: a\n\n", Data: "a", HasData: true}},
			wantErr: io.ErrUnexpectedEOF,
		},
		{
			name:    "cut before the blank line",
			input:   "data: a\n",
			wantErr: io.ErrUnexpectedEOF,
		},
		{
			name:    "cut after an event field",
			input:   "event: x\n",
			wantErr: io.ErrUnexpectedEOF,
		},
	}

	readers := map[string]func(string) io.Reader{
		"whole":    func(s string) io.Reader { return strings.NewReader(s) },
		"one byte": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
	}
	for _, tt := range tests {
		for readerName, newReader := range readers {
			t.Run(tt.name+"/"+readerName, func(t *testing.T) {
				got, err := scanAll(NewEventScanner(newReader(tt.input), forwardBufferSize, DefaultMaxEventSize))

				if !sameBlocks(got, tt.want) {
					t.Errorf("events = %#v, want %#v", got, tt.want)
				}
				if err != tt.wantErr {
					t.Errorf("final error = %v, want %v", err, tt.wantErr)
				}
			})
		}
	}
}

// sameBlocks reports whether got equals want, except that a block of want
// ending in CRLF may end in CR in got: the scanner drops the LF of a blank
// line when it arrives in a later read than its CR.
func sameBlocks(got, want []scannedEvent) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] == want[i] {
			continue
		}
		split := want[i]
		if !strings.HasSuffix(split.Raw, "\r\n") {
			return false
		}
		split.Raw = strings.TrimSuffix(split.Raw, "\n")
		if got[i] != split {
			return false
		}
	}
	return true
}

// TestEventScannerSplitReads cuts a stream at every offset into two reads,
// with a buffer smaller than the stream, so that events cross reads and the
// buffer both moves and grows.
func TestEventScannerSplitReads(t *testing.T) {
	input := "\uFEFF: hello\r\n\r\n" +
		"data: " + roleChunk + "\r\n\r\n" +
		"event: chunk\ndata: " + escapedModelChunk + "\n\n" +
		"data: " + noModelChunk + "\rdata: second line\r\r" +
		"data: " + usageChunk + "\n\n" +
		"data: [DONE]\n\n"
	want := []scannedEvent{
		{Raw: ": hello\r\n\r\n"},
		{Raw: "data: " + roleChunk + "\r\n\r\n", Data: roleChunk, HasData: true},
		{Raw: "event: chunk\ndata: " + escapedModelChunk + "\n\n", Data: escapedModelChunk, HasData: true},
		{Raw: "data: " + noModelChunk + "\rdata: second line\r\r", Data: noModelChunk + "\nsecond line", HasData: true},
		{Raw: "data: " + usageChunk + "\n\n", Data: usageChunk, HasData: true},
		{Raw: "data: [DONE]\n\n", Data: "[DONE]", HasData: true},
	}

	for _, bufferSize := range []int{64, forwardBufferSize} {
		for cut := range len(input) + 1 {
			reader := &splitReader{parts: []string{input[:cut], input[cut:]}}
			got, err := scanAll(NewEventScanner(reader, bufferSize, DefaultMaxEventSize))
			if err != io.EOF {
				t.Fatalf("buffer %d, cut at %d: final error = %v, want io.EOF", bufferSize, cut, err)
			}
			if !sameBlocks(got, want) {
				t.Fatalf("buffer %d, cut at %d: events = %#v, want %#v", bufferSize, cut, got, want)
			}
		}
	}
}

// TestEventScannerMatchesSSEReader checks the scanner against SSEReader,
// which decodes every event, on inputs that cover the line rules together.
func TestEventScannerMatchesSSEReader(t *testing.T) {
	inputs := []string{
		"data: a\n\n",
		"data: a\r\n\r\ndata: b\rdata: c\r\r: x\n\nevent: e\ndata\n\n",
		"\uFEFF\uFEFFdata: a\n\n",
		"\uFEFF",
		"\xEF\xBB",
		"data: a\r",
		"data: a\r\r\n\ndata: b\n\n",
		":c\n:d\r\ndata: x\n\ndata",
		"id: 1\ndata: y\n\nretry: 5\n\n",
	}
	for _, input := range inputs {
		compareWithSSEReader(t, input)
	}
}

func FuzzEventScanner(f *testing.F) {
	f.Add("data: a\r\n\r\ndata: b\rdata: c\r\r: x\n\nevent: e\ndata\n\n")
	f.Add("\uFEFFdata: " + escapedModelChunk + "\n\ndata: [DONE]\n\n")
	f.Fuzz(compareWithSSEReader)
}

// compareWithSSEReader checks that the scanner finds the events and the end
// of input that SSEReader finds in input, and that a client that reads the
// blocks joined gets the same events.
func compareWithSSEReader(t *testing.T, input string) {
	wantData, wantErr := readAllData(input)

	scanner := NewEventScanner(iotest.HalfReader(strings.NewReader(input)), 64, DefaultMaxEventSize)
	got, err := scanAll(scanner)
	var gotData []string
	var raw strings.Builder
	for _, event := range got {
		raw.WriteString(event.Raw)
		if event.HasData {
			gotData = append(gotData, event.Data)
		}
	}

	if !reflect.DeepEqual(gotData, wantData) {
		t.Errorf("input %q: data = %q, want %q as SSEReader returns", input, gotData, wantData)
	}
	if err != wantErr {
		t.Errorf("input %q: final error = %v, want %v as SSEReader returns", input, err, wantErr)
	}
	// A client skips one byte order mark at the start of its stream, which
	// the scanner removed, so one goes in front here too. A second one in
	// the input is part of a field name and must stay there.
	relayed, relayedErr := readAllData(byteOrderMark + raw.String())
	if !reflect.DeepEqual(relayed, wantData) || relayedErr != io.EOF {
		t.Errorf("input %q: blocks joined %q parse to %q, %v; want %q, EOF", input, raw.String(), relayed, relayedErr, wantData)
	}
}

// readAllData returns the data of the events that SSEReader reads from
// input, and its final error.
func readAllData(input string) ([]string, error) {
	var data []string
	reader := NewSSEReader(strings.NewReader(input))
	for {
		event, err := reader.Next()
		if err != nil {
			return data, err
		}
		data = append(data, event.Data)
	}
}

func TestEventScannerLargeEvent(t *testing.T) {
	long := strings.Repeat("x", 100_000)
	input := "data: " + long + "\n\ndata: after\n\n"

	s := NewEventScanner(iotest.HalfReader(strings.NewReader(input)), 64, DefaultMaxEventSize)
	got, err := scanAll(s)
	if err != io.EOF {
		t.Fatalf("final error = %v, want io.EOF", err)
	}
	if len(got) != 2 || got[0].Data != long || got[1].Data != "after" {
		t.Errorf("got %d events, want the long one and \"after\"", len(got))
	}
}

func TestEventScannerEventTooLarge(t *testing.T) {
	tests := []struct {
		name  string
		input string
	}{
		{name: "one long line", input: "data: " + strings.Repeat("x", 200) + "\n\n"},
		{name: "many short lines", input: strings.Repeat("data: 0123456789\n", 20) + "\n"},
		{name: "long comment", input: ":" + strings.Repeat("x", 200) + "\n\n"},
		{name: "never ends", input: "data: " + strings.Repeat("x", 1000)},
	}

	for _, tt := range tests {
		for _, bufferSize := range []int{64, 4096} {
			t.Run(tt.name, func(t *testing.T) {
				s := NewEventScanner(strings.NewReader(tt.input), bufferSize, 100)

				_, err := s.Next()

				if !errors.Is(err, ErrEventTooLarge) {
					t.Errorf("buffer %d: Next() error = %v, want ErrEventTooLarge", bufferSize, err)
				}
			})
		}
	}
}

func TestEventScannerReadErrorPassedThrough(t *testing.T) {
	failure := errors.New("connection reset")
	input := io.MultiReader(strings.NewReader("data: a\n\ndata: b\n"), iotest.ErrReader(failure))
	s := NewEventScanner(input, 64, DefaultMaxEventSize)

	event, err := s.Next()
	if err != nil || string(event.Data) != "a" {
		t.Fatalf("first Next() = %q, %v; want data a", event.Data, err)
	}

	_, err = s.Next()
	if !errors.Is(err, failure) {
		t.Errorf("second Next() error = %v, want %v", err, failure)
	}
}

// A CR may be followed by an LF of the same line ending, but the scanner
// must not wait for the next byte before returning the event.
func TestEventScannerCRDoesNotBlock(t *testing.T) {
	pipeReader, pipeWriter := io.Pipe()
	defer pipeWriter.Close()
	go pipeWriter.Write([]byte("data: a\r\r"))

	done := make(chan scannedEvent, 1)
	s := NewEventScanner(pipeReader, 64, DefaultMaxEventSize)
	go func() {
		event, err := s.Next()
		if err != nil {
			t.Errorf("Next() error = %v", err)
		}
		done <- scannedEvent{Raw: string(event.Raw), Data: string(event.Data)}
	}()

	select {
	case got := <-done:
		if got.Data != "a" || got.Raw != "data: a\r\r" {
			t.Errorf("event = %+v, want data a", got)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Next() blocked on an event that ended in CR CR")
	}
}

func TestEventScannerBeforeRead(t *testing.T) {
	reader := &splitReader{parts: []string{"data: a\n\ndata: b\n\ndata: c\n", "\n"}}
	s := NewEventScanner(reader, 64, DefaultMaxEventSize)
	reads := 0
	s.BeforeRead(func() { reads++ })

	for _, want := range []string{"a", "b"} {
		event, err := s.Next()
		if err != nil || string(event.Data) != want {
			t.Fatalf("Next() = %q, %v; want %q", event.Data, err, want)
		}
	}
	if reads != 1 {
		t.Errorf("BeforeRead ran %d times for two events of one read, want 1", reads)
	}

	if event, err := s.Next(); err != nil || string(event.Data) != "c" {
		t.Fatalf("third Next() = %q, %v; want c", event.Data, err)
	}
	if reads != 2 {
		t.Errorf("BeforeRead ran %d times before the event that took a second read, want 2", reads)
	}
}

func TestEventScannerReset(t *testing.T) {
	s := NewEventScanner(strings.NewReader("data: a\n"), 64, DefaultMaxEventSize)
	if _, err := s.Next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("Next() error = %v, want io.ErrUnexpectedEOF", err)
	}

	s.Reset(strings.NewReader("data: b\n\n"))
	event, err := s.Next()
	if err != nil || string(event.Raw) != "data: b\n\n" {
		t.Errorf("Next() after Reset = %q, %v; want the new reader's event alone", event.Raw, err)
	}
}
