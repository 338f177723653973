package providers

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// DefaultMaxEventSize is the max size in bytes of one SSE event, counting
// every line of the event, that an SSEReader accepts.
const DefaultMaxEventSize = 4 << 20

// ErrEventTooLarge is returned by SSEReader.Next when an event or a single
// line exceeds the reader's max event size.
var ErrEventTooLarge = errors.New("sse: event exceeds the max event size")

const byteOrderMark = "\uFEFF"

// Event is one dispatched server-sent event.
type Event struct {
	// Name is the event type, "message" when the stream set none.
	Name string
	// Data is the event's data lines joined with "\n".
	Data string
	// ID is the last event ID seen on the stream, which persists across events.
	ID string
}

// SSEReader parses a text/event-stream body as specified by the WHATWG HTML
// standard, section "Server-sent events". It accepts CRLF, LF and CR line
// endings, skips comments and a leading byte order mark, and ignores the
// retry field and unknown fields. An SSEReader is not safe for concurrent use.
type SSEReader struct {
	reader       *bufio.Reader
	maxEventSize int

	line      []byte
	data      bytes.Buffer
	eventName string
	lastID    string

	// pending is set when field lines arrived since the last dispatch, so an
	// EOF now would drop an event.
	pending bool
	// skipLF is set after a CR line ending, because a following LF belongs to
	// the same line ending. The reader checks it lazily so that an event
	// ending in "\r\r" is dispatched without waiting for the next byte.
	skipLF  bool
	started bool
}

// NewSSEReader returns a reader that parses events from r.
func NewSSEReader(r io.Reader) *SSEReader {
	return &SSEReader{
		reader:       bufio.NewReaderSize(r, 32<<10),
		maxEventSize: DefaultMaxEventSize,
	}
}

// Next reads lines until it can dispatch an event and returns that event.
//
// At the end of the input Next returns io.EOF when the stream ended at an
// event boundary. It returns io.ErrUnexpectedEOF when the stream ended inside
// an event, which the standard drops and which usually means a broken
// connection. It returns ErrEventTooLarge for an oversized event and passes
// other read errors through unchanged.
func (r *SSEReader) Next() (Event, error) {
	for {
		line, err := r.readLine()
		if err != nil {
			return Event{}, err
		}

		if len(line) == 0 {
			event, ok := r.dispatch()
			if ok {
				return event, nil
			}
			continue
		}

		if err := r.processField(line); err != nil {
			return Event{}, err
		}
	}
}

// dispatch ends the current event and reports whether it has data to return.
func (r *SSEReader) dispatch() (Event, bool) {
	r.pending = false
	name := r.eventName
	r.eventName = ""

	if r.data.Len() == 0 {
		return Event{}, false
	}

	data := r.data.Bytes()
	data = data[:len(data)-1] // drop the "\n" appended after the last data line
	event := Event{Name: name, Data: string(data), ID: r.lastID}
	r.data.Reset()

	if event.Name == "" {
		event.Name = "message"
	}
	return event, true
}

func (r *SSEReader) processField(line []byte) error {
	if line[0] == ':' {
		return nil
	}
	r.pending = true

	field, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		field, value = line[:i], line[i+1:]
		value = bytes.TrimPrefix(value, []byte(" "))
	}

	switch string(field) {
	case "data":
		if r.data.Len()+len(value)+1 > r.maxEventSize {
			return fmt.Errorf("%w (%d bytes)", ErrEventTooLarge, r.maxEventSize)
		}
		r.data.Write(value)
		r.data.WriteByte('\n')
	case "event":
		r.eventName = string(value)
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			r.lastID = string(value)
		}
	}
	return nil
}

// readLine returns the next line without its line ending. The returned slice
// is valid until the next call.
func (r *SSEReader) readLine() ([]byte, error) {
	r.line = r.line[:0]

	if !r.started {
		r.started = true
		head, err := r.reader.Peek(len(byteOrderMark))
		if string(head) == byteOrderMark {
			r.reader.Discard(len(byteOrderMark))
		} else if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
	}

	for {
		if _, err := r.reader.Peek(1); err != nil {
			return nil, r.endOfInput(err)
		}
		buffered, _ := r.reader.Peek(r.reader.Buffered())

		if r.skipLF {
			r.skipLF = false
			if buffered[0] == '\n' {
				r.reader.Discard(1)
				continue
			}
		}

		end := bytes.IndexAny(buffered, "\r\n")
		if end < 0 {
			if err := r.appendLine(buffered); err != nil {
				return nil, err
			}
			r.reader.Discard(len(buffered))
			continue
		}

		if err := r.appendLine(buffered[:end]); err != nil {
			return nil, err
		}
		r.skipLF = buffered[end] == '\r'
		r.reader.Discard(end + 1)
		return r.line, nil
	}
}

func (r *SSEReader) appendLine(chunk []byte) error {
	if len(r.line)+len(chunk) > r.maxEventSize {
		return fmt.Errorf("%w (%d bytes)", ErrEventTooLarge, r.maxEventSize)
	}
	r.line = append(r.line, chunk...)
	return nil
}

// endOfInput maps a read error to the error that Next returns.
func (r *SSEReader) endOfInput(err error) error {
	if !errors.Is(err, io.EOF) {
		return err
	}

	// An unterminated last line counts as part of an event unless it is a
	// comment.
	partial := len(r.line) > 0 && !strings.HasPrefix(string(r.line), ":")
	if r.pending || partial {
		return io.ErrUnexpectedEOF
	}
	return io.EOF
}
