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

func readAllEvents(r *SSEReader) ([]Event, error) {
	var events []Event
	for {
		event, err := r.Next()
		if err != nil {
			return events, err
		}
		events = append(events, event)
	}
}

func TestSSEReaderParsing(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		want    []Event
		wantErr error
	}{
		{
			name:    "single event",
			input:   "data: hello\n\n",
			want:    []Event{{Name: "message", Data: "hello"}},
			wantErr: io.EOF,
		},
		{
			name:    "multi-line data joined with LF",
			input:   "data: first\ndata: second\ndata:third\n\n",
			want:    []Event{{Name: "message", Data: "first\nsecond\nthird"}},
			wantErr: io.EOF,
		},
		{
			name:    "comments ignored",
			input:   ": keep-alive\ndata: a\n: inside\ndata: b\n\n:trailing\n",
			want:    []Event{{Name: "message", Data: "a\nb"}},
			wantErr: io.EOF,
		},
		{
			name:    "CRLF line endings",
			input:   "data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n",
			want:    []Event{{Name: "message", Data: "a\nb"}, {Name: "message", Data: "c"}},
			wantErr: io.EOF,
		},
		{
			name:    "CR line endings",
			input:   "data: a\rdata: b\r\rdata: c\r\r",
			want:    []Event{{Name: "message", Data: "a\nb"}, {Name: "message", Data: "c"}},
			wantErr: io.EOF,
		},
		{
			name:    "mixed line endings",
			input:   "data: a\r\ndata: b\rdata: c\n\r\n",
			want:    []Event{{Name: "message", Data: "a\nb\nc"}},
			wantErr: io.EOF,
		},
		{
			name:    "only one space after colon removed",
			input:   "data:  two spaces\ndata:\ttab\n\n",
			want:    []Event{{Name: "message", Data: " two spaces\n\ttab"}},
			wantErr: io.EOF,
		},
		{
			name:    "colon inside value kept",
			input:   "data: {\"a\": \"b:c\"}\n\n",
			want:    []Event{{Name: "message", Data: `{"a": "b:c"}`}},
			wantErr: io.EOF,
		},
		{
			name:    "field without colon",
			input:   "data\ndata\n\n",
			want:    []Event{{Name: "message", Data: "\n"}},
			wantErr: io.EOF,
		},
		{
			name:    "empty data line dispatches empty event",
			input:   "data:\n\n",
			want:    []Event{{Name: "message", Data: ""}},
			wantErr: io.EOF,
		},
		{
			name:    "event without data not dispatched",
			input:   "event: ping\n\ndata: x\n\n",
			want:    []Event{{Name: "message", Data: "x"}},
			wantErr: io.EOF,
		},
		{
			name:    "event name reset after dispatch",
			input:   "event: error\ndata: bad\n\ndata: ok\n\n",
			want:    []Event{{Name: "error", Data: "bad"}, {Name: "message", Data: "ok"}},
			wantErr: io.EOF,
		},
		{
			name:  "id persists across events",
			input: "id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\n",
			want: []Event{
				{Name: "message", Data: "a", ID: "1"},
				{Name: "message", Data: "b", ID: "1"},
				{Name: "message", Data: "c", ID: ""},
			},
			wantErr: io.EOF,
		},
		{
			name:    "id with NUL ignored",
			input:   "id: 7\ndata: a\n\nid: 8\x009\ndata: b\n\n",
			want:    []Event{{Name: "message", Data: "a", ID: "7"}, {Name: "message", Data: "b", ID: "7"}},
			wantErr: io.EOF,
		},
		{
			name:    "retry and unknown fields ignored",
			input:   "retry: 1000\nfoo: bar\ndata: a\n\n",
			want:    []Event{{Name: "message", Data: "a"}},
			wantErr: io.EOF,
		},
		{
			name:    "leading byte order mark skipped",
			input:   "\uFEFFdata: a\n\n",
			want:    []Event{{Name: "message", Data: "a"}},
			wantErr: io.EOF,
		},
		{
			name:    "byte order mark only at start",
			input:   "data: a\n\n\uFEFFdata: b\n\n",
			want:    []Event{{Name: "message", Data: "a"}},
			wantErr: io.EOF,
		},
		{
			name:    "empty input",
			input:   "",
			want:    nil,
			wantErr: io.EOF,
		},
		{
			name:    "event without blank line dropped",
			input:   "data: a\n\ndata: b\n",
			want:    []Event{{Name: "message", Data: "a"}},
			wantErr: io.ErrUnexpectedEOF,
		},
		{
			name:    "unterminated line dropped",
			input:   "data: a\n\ndata: b",
			want:    []Event{{Name: "message", Data: "a"}},
			wantErr: io.ErrUnexpectedEOF,
		},
		{
			name:    "trailing unterminated comment is clean EOF",
			input:   "data: a\n\n: bye",
			want:    []Event{{Name: "message", Data: "a"}},
			wantErr: io.EOF,
		},
	}

	readers := map[string]func(string) io.Reader{
		"whole":    func(s string) io.Reader { return strings.NewReader(s) },
		"one byte": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
	}

	for _, tt := range tests {
		for readerName, newReader := range readers {
			t.Run(tt.name+"/"+readerName, func(t *testing.T) {
				got, err := readAllEvents(NewSSEReader(newReader(tt.input)))

				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("events = %#v, want %#v", got, tt.want)
				}
				if err != tt.wantErr {
					t.Errorf("final error = %v, want %v", err, tt.wantErr)
				}
			})
		}
	}
}

func TestSSEReaderLongLine(t *testing.T) {
	long := strings.Repeat("x", 1<<20)

	r := NewSSEReader(strings.NewReader("data: " + long + "\n\n"))
	event, err := r.Next()

	if err != nil {
		t.Fatalf("Next() error = %v", err)
	}
	if event.Data != long {
		t.Errorf("len(Data) = %d, want %d", len(event.Data), len(long))
	}
}

func TestSSEReaderEventTooLarge(t *testing.T) {
	tests := []struct {
		name  string
		input string
	}{
		{name: "one long line", input: "data: " + strings.Repeat("x", 200) + "\n\n"},
		{name: "many short lines", input: strings.Repeat("data: 0123456789\n", 20) + "\n"},
		{name: "long comment", input: ":" + strings.Repeat("x", 200) + "\n\n"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewSSEReader(strings.NewReader(tt.input))
			r.maxEventSize = 100

			_, err := r.Next()

			if !errors.Is(err, ErrEventTooLarge) {
				t.Errorf("Next() error = %v, want ErrEventTooLarge", err)
			}
		})
	}
}

func TestSSEReaderReadErrorPassedThrough(t *testing.T) {
	failure := errors.New("connection reset")
	input := io.MultiReader(strings.NewReader("data: a\n\ndata: b\n"), iotest.ErrReader(failure))
	r := NewSSEReader(input)

	event, err := r.Next()
	if err != nil || event.Data != "a" {
		t.Fatalf("first Next() = %#v, %v; want data a", event, err)
	}

	_, err = r.Next()
	if !errors.Is(err, failure) {
		t.Errorf("second Next() error = %v, want %v", err, failure)
	}
}

// A CR may be followed by an LF of the same line ending, but the reader must
// not wait for the next byte before dispatching the event.
func TestSSEReaderCRDoesNotBlock(t *testing.T) {
	pipeReader, pipeWriter := io.Pipe()
	defer pipeWriter.Close()

	go pipeWriter.Write([]byte("data: a\r\r"))

	type result struct {
		event Event
		err   error
	}
	done := make(chan result, 1)
	r := NewSSEReader(pipeReader)
	go func() {
		event, err := r.Next()
		done <- result{event, err}
	}()

	select {
	case got := <-done:
		if got.err != nil {
			t.Fatalf("Next() error = %v", got.err)
		}
		if got.event.Data != "a" {
			t.Errorf("Data = %q, want %q", got.event.Data, "a")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Next() blocked after an event that ended with CR CR")
	}

	go pipeWriter.Write([]byte("\ndata: b\n\n"))
	event, err := r.Next()
	if err != nil {
		t.Fatalf("second Next() error = %v", err)
	}
	if event.Data != "b" {
		t.Errorf("second Data = %q, want %q", event.Data, "b")
	}
}
