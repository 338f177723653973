package providers

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// RawEvent is one block of a text/event-stream as it arrived: its lines up
// to and including the blank line that ends it. Its slices point into the
// EventScanner's buffer and are valid until the next call to Next.
//
// A block whose last line ending is a CRLF that arrived split between two
// reads ends with the CR, and the LF is dropped. A client parses the bytes
// the same way with or without that LF.
type RawEvent struct {
	// Raw is the block's bytes, line endings and ending blank line included,
	// so that a proxy can relay it unchanged.
	Raw []byte
	// Data is the block's data lines joined with "\n", as an SSE client
	// dispatches them. It is empty when HasData is false.
	Data []byte
	// HasData is set when the block has at least one data field. A client
	// dispatches nothing for a block without one, such as a comment used as
	// a keep-alive.
	HasData bool
}

// dataSpan is the value of one data line, as offsets from the start of the
// block that the EventScanner is reading.
type dataSpan struct {
	start, end int
}

// EventScanner splits a text/event-stream body into blocks without copying
// or decoding them, so that a proxy can relay each block's bytes as they
// arrived. It follows the line rules of the WHATWG HTML standard, section
// "Server-sent events": CRLF, LF and CR line endings, comments, a leading
// byte order mark, and a data field without a colon. An EventScanner is not
// safe for concurrent use.
type EventScanner struct {
	reader io.Reader
	// beforeRead runs before each read from reader, which may block.
	beforeRead   func()
	maxEventSize int

	// buf[start:end] contains the bytes read but not yet returned, and next is
	// the offset of the first line of the current block not yet parsed.
	buf        []byte
	start, end int
	next       int

	// spans are the data values of the current block.
	spans []dataSpan
	// fields is set when the current block has a line other than a comment,
	// so that an end of input there cuts an event.
	fields bool
	// joined contains the data of a block with more than one data line.
	joined []byte

	// skipLF is set after a CR that was the last byte read, because an LF
	// that follows belongs to the same line ending.
	skipLF     bool
	bomChecked bool
	// err is the error of the last read, returned once the buffered blocks
	// are used up.
	err error
}

// NewEventScanner returns a scanner of r with a read buffer of size bytes
// that accepts blocks up to maxEventSize bytes.
func NewEventScanner(r io.Reader, size, maxEventSize int) *EventScanner {
	s := &EventScanner{buf: make([]byte, max(size, 64)), maxEventSize: maxEventSize}
	s.Reset(r)
	return s
}

// Reset discards the scanner's state and makes it read from r, keeping its
// buffer. It also removes the BeforeRead function.
func (s *EventScanner) Reset(r io.Reader) {
	*s = EventScanner{
		reader:       r,
		maxEventSize: s.maxEventSize,
		buf:          s.buf,
		spans:        s.spans[:0],
		joined:       s.joined[:0],
	}
}

// BeforeRead sets a function that Next calls before each read from the
// underlying reader. A proxy flushes its client there, so that blocks that
// arrived together leave in one write and no block waits unflushed.
func (s *EventScanner) BeforeRead(fn func()) {
	s.beforeRead = fn
}

// Next returns the next block, including blocks without a data field.
//
// At the end of the input it returns io.EOF when the stream ended between
// blocks, or after only a comment. It returns io.ErrUnexpectedEOF when the
// stream ended inside a block, which the standard drops and which usually
// means a broken connection. It returns ErrEventTooLarge for a block of more
// than the max event size, counting its line endings, and passes other read
// errors through unchanged.
func (s *EventScanner) Next() (RawEvent, error) {
	for {
		event, ok, err := s.scan()
		if err != nil {
			return RawEvent{}, err
		}
		if ok {
			return event, nil
		}
		if err := s.fill(); err != nil {
			return RawEvent{}, err
		}
	}
}

// scan parses the complete lines in the buffer and returns the block that
// the first blank line ends, if any.
func (s *EventScanner) scan() (RawEvent, bool, error) {
	if !s.bomChecked && !s.checkBOM() {
		return RawEvent{}, false, nil
	}

	for {
		if s.skipLF && s.next < s.end {
			s.skipLF = false
			if s.buf[s.next] == '\n' {
				s.next++
				if s.next-1 == s.start {
					// The LF ends the blank line of the block returned
					// before, which already counts as ended, so it is left
					// out of the next block's bytes.
					s.start = s.next
				}
			}
		}

		lineStart := s.next
		line, lineEnd, ok := s.lineAt(lineStart)
		if !ok {
			return RawEvent{}, false, s.checkSize(s.end)
		}
		s.next = lineEnd

		if len(line) == 0 {
			if err := s.checkSize(s.next); err != nil {
				return RawEvent{}, false, err
			}
			return s.dispatch(), true, nil
		}
		s.parseField(line, lineStart)
	}
}

// checkSize returns ErrEventTooLarge when the current block, up to offset
// end, is larger than the max event size.
func (s *EventScanner) checkSize(end int) error {
	if end-s.start > s.maxEventSize {
		return fmt.Errorf("%w (%d bytes)", ErrEventTooLarge, s.maxEventSize)
	}
	return nil
}

// checkBOM skips a byte order mark at the start of the stream. It returns
// false while too few bytes have arrived to tell.
func (s *EventScanner) checkBOM() bool {
	head := s.buf[s.start:s.end]
	if len(head) < len(byteOrderMark) && s.err == nil && bytes.HasPrefix([]byte(byteOrderMark), head) {
		return false
	}

	s.bomChecked = true
	if bytes.HasPrefix(head, []byte(byteOrderMark)) {
		s.start += len(byteOrderMark)
		s.next = s.start
	}
	return true
}

// lineAt returns the line that starts at offset pos without its line ending,
// and the offset after the line ending. It returns false when the line has
// not fully arrived. A CR that is the last byte read ends the line at once
// and sets skipLF, so that a block ending in "\r\r" is not held back.
func (s *EventScanner) lineAt(pos int) (line []byte, lineEnd int, ok bool) {
	rest := s.buf[pos:s.end]
	lf := bytes.IndexByte(rest, '\n')
	segment := rest
	if lf >= 0 {
		segment = rest[:lf]
	}

	if cr := bytes.IndexByte(segment, '\r'); cr >= 0 {
		if lf >= 0 && cr == len(segment)-1 {
			return segment[:cr], pos + lf + 1, true
		}
		lineEnd = pos + cr + 1
		s.skipLF = lineEnd == s.end
		return segment[:cr], lineEnd, true
	}
	if lf < 0 {
		return nil, 0, false
	}
	return segment, pos + lf + 1, true
}

// parseField records a data line of the current block. Other fields only
// mark the block as started, because a proxy relays them unchanged.
func (s *EventScanner) parseField(line []byte, lineStart int) {
	if line[0] == ':' {
		return
	}
	s.fields = true

	name, value := line, []byte(nil)
	if colon := bytes.IndexByte(line, ':'); colon >= 0 {
		name, value = line[:colon], line[colon+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	if string(name) != "data" {
		return
	}

	// value is the end of line, so its offset follows from the lengths.
	valueEnd := lineStart + len(line) - s.start
	s.spans = append(s.spans, dataSpan{start: valueEnd - len(value), end: valueEnd})
}

// dispatch returns the block that ends at s.next and starts the next one.
func (s *EventScanner) dispatch() RawEvent {
	event := RawEvent{Raw: s.buf[s.start:s.next], HasData: len(s.spans) > 0}
	block := s.buf[s.start:s.next]

	switch len(s.spans) {
	case 0:
	case 1:
		event.Data = block[s.spans[0].start:s.spans[0].end]
	default:
		joined := s.joined[:0]
		for i, span := range s.spans {
			if i > 0 {
				joined = append(joined, '\n')
			}
			joined = append(joined, block[span.start:span.end]...)
		}
		s.joined = joined
		event.Data = joined
	}

	s.start = s.next
	s.spans = s.spans[:0]
	s.fields = false
	return event
}

// fill reads more of the stream into the buffer. It moves the unfinished
// block to the front of the buffer first and grows the buffer when the block
// fills it.
func (s *EventScanner) fill() error {
	if s.err != nil {
		return s.endOfInput()
	}

	if s.start > 0 {
		n := copy(s.buf, s.buf[s.start:s.end])
		s.next -= s.start
		s.end = n
		s.start = 0
	}
	if s.end == len(s.buf) {
		// scan has checked that the block is at most maxEventSize bytes.
		// One byte more lets the next scan reject a larger block.
		grown := make([]byte, min(2*len(s.buf), s.maxEventSize+1))
		copy(grown, s.buf[:s.end])
		s.buf = grown
	}

	if s.beforeRead != nil {
		s.beforeRead()
	}
	n, err := s.reader.Read(s.buf[s.end:])
	s.end += n
	if err == nil {
		return nil
	}
	s.err = err
	if n > 0 {
		// The bytes that came with the error may complete a block.
		return nil
	}
	return s.endOfInput()
}

// endOfInput returns the error for a stream whose reads have ended with
// s.err and whose complete blocks were all returned.
func (s *EventScanner) endOfInput() error {
	if !errors.Is(s.err, io.EOF) {
		return s.err
	}

	// Every complete line is parsed, so what is left is one line without
	// its line ending, which counts as part of a block unless it is a
	// comment.
	partial := s.buf[s.next:s.end]
	if s.fields || len(partial) > 0 && partial[0] != ':' {
		return io.ErrUnexpectedEOF
	}
	return io.EOF
}
