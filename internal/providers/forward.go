package providers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ForwardError is an *UpstreamError for a response with a non-2xx status,
// together with that response's header, so that a proxy can relay the status,
// the body and the Content-Type and Retry-After headers.
type ForwardError struct {
	*UpstreamError
	// Header is the header of the upstream's error response.
	Header http.Header
}

// Unwrap returns the *UpstreamError, so that errors.As finds it.
func (e *ForwardError) Unwrap() error { return e.UpstreamError }

// maxRetryAfterSeconds caps a Retry-After in seconds, so that a huge value
// cannot overflow time.Duration.
const maxRetryAfterSeconds = 24 * 60 * 60

// ParseRetryAfter parses a Retry-After value, either seconds or an HTTP date
// (RFC 9110, section 10.2.3), relative to now. It returns 0 for an empty,
// invalid or past value.
func ParseRetryAfter(value string, now time.Time) time.Duration {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0
	}

	if seconds, err := strconv.ParseInt(value, 10, 64); err == nil {
		if seconds <= 0 {
			return 0
		}
		return time.Duration(min(seconds, maxRetryAfterSeconds)) * time.Second
	}

	date, err := http.ParseTime(value)
	if err != nil || !date.After(now) {
		return 0
	}
	return date.Sub(now)
}

// forwardBufferSize is the read buffer of a forwarded stream, as large as
// httputil.ReverseProxy's copy buffer, so that events that arrived together
// take one read. Client.forwardScanners recycles the scanners and their
// buffers.
const forwardBufferSize = 32 << 10

// Forwarded is an upstream response with a 2xx status whose body has not
// been read yet. It is not safe for concurrent use, and the caller must
// Close it.
type Forwarded struct {
	// StatusCode and Header are those of the upstream's response.
	StatusCode int
	Header     http.Header

	call   *call
	events *EventScanner
	// beforeRead runs before each read from the response body.
	beforeRead func()
	// streamed is set once NextEvent has returned an event with data.
	streamed bool
	// rearm is set when an event with data was returned since the idle
	// deadline was last moved.
	rearm     bool
	idleCause *timeoutError
}

// Forward posts body, an encoded chat completion request, unchanged to the
// chat completions endpoint of p, with p's key and extra headers, and
// returns once the response headers have arrived. stream selects the Accept
// header and keeps the first-byte deadline running until the first SSE
// event.
//
// The provider's timeout_seconds bounds the whole call, including the body
// read. A response with a non-2xx status is returned as a *ForwardError with
// its body read and capped. When ctx ends, the error wraps ctx.Err(). Every
// other failure is an *UpstreamError.
func (c *Client) Forward(ctx context.Context, p Provider, body []byte, stream bool) (*Forwarded, error) {
	cl, err := c.send(ctx, p, body, stream)
	if err != nil {
		return nil, err
	}
	return &Forwarded{StatusCode: cl.resp.StatusCode, Header: cl.resp.Header, call: cl}, nil
}

// Close ends the call and releases its connection. The Forwarded must not
// be used afterwards.
func (f *Forwarded) Close() {
	f.call.close()
	if f.events != nil {
		f.events.Reset(nil)
		// A scanner whose buffer grew for a large event is left to the
		// garbage collector.
		if len(f.events.buf) == forwardBufferSize {
			f.call.client.forwardScanners.Put(f.events)
		}
		f.events = nil
	}
}

// IsEventStream reports whether the response is a text/event-stream.
func (f *Forwarded) IsEventStream() bool {
	mediaType, _, _ := strings.Cut(f.Header.Get("Content-Type"), ";")
	return strings.EqualFold(strings.TrimSpace(mediaType), "text/event-stream")
}

// ReadBody reads the whole response body. The idle timeout applies between
// reads. Errors are as for Client.Chat.
func (f *Forwarded) ReadBody() ([]byte, error) {
	return f.call.readBody(maxResponseBody)
}

// readBody reads the whole response body, or fails with ErrorMalformed once
// it exceeds limit bytes. The idle timeout applies between reads.
func (cl *call) readBody(limit int64) ([]byte, error) {
	idleCause := &timeoutError{limit: cl.client.opts.IdleTimeout, waitingFor: "more of the response body"}
	cl.watchdog.arm(cl.client.opts.IdleTimeout, idleCause)
	body := &watchedReader{reader: cl.resp.Body, watchdog: cl.watchdog, limit: cl.client.opts.IdleTimeout, cause: idleCause}

	data, err := readCapped(body, cl.resp.ContentLength, limit)
	if err != nil {
		if ctxErr := cl.ctx.Err(); ctxErr != nil {
			return nil, cl.canceled(ctxErr)
		}
		if timeout := cl.timeout(false); timeout != nil {
			return nil, timeout
		}
		return nil, &UpstreamError{Kind: ErrorStreamCut, Message: "read response body: " + err.Error()}
	}
	if int64(len(data)) > limit {
		return nil, cl.malformed(fmt.Sprintf("response body exceeds %d bytes", limit), "", false)
	}
	cl.watchdog.stop()
	return data, nil
}

// readCapped reads r to its end, or to one byte past limit. A known
// contentLength sizes the buffer at once.
func readCapped(r io.Reader, contentLength, limit int64) ([]byte, error) {
	if contentLength <= 0 || contentLength > limit {
		return io.ReadAll(io.LimitReader(r, limit+1))
	}

	buf := make([]byte, contentLength)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	// The transport enforces Content-Length, so this read returns io.EOF at
	// once. Seeing it lets the transport reuse the connection.
	var extra [1]byte
	if n, err := r.Read(extra[:]); n > 0 || !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("response body is longer than its Content-Length %d: %v", contentLength, err)
	}
	return buf, nil
}

// BeforeRead sets a function that NextEvent calls before each read from the
// response body, which may block. A proxy flushes its client there, so that
// events that arrived together leave in one write and no event waits
// unflushed for the next one. Call it before the first NextEvent.
func (f *Forwarded) BeforeRead(fn func()) {
	f.beforeRead = fn
}

// NextEvent returns the next block of a streaming response as it arrived,
// for a proxy to relay. Blocks without data, such as keep-alive comments,
// are returned too, with HasData unset. The returned slices are valid until
// the next call.
//
// The first event with data must arrive within the first-byte timeout and
// each later one within the idle timeout of the one before. The idle
// deadline moves when NextEvent next has to read from the body, not at each
// event, which saves a timer reset per event of a burst.
//
// It returns io.EOF when the body ended at an event boundary, and leaves to
// the caller whether that end was complete. A body that ended inside an
// event or failed to read is an *UpstreamError of kind ErrorStreamCut, an
// expired deadline one of kind ErrorTimeout, and an oversized event one of
// kind ErrorMalformed. When the caller's context ends, the error wraps
// ctx.Err().
func (f *Forwarded) NextEvent() (RawEvent, error) {
	cl := f.call
	if f.events == nil {
		scanner, _ := cl.client.forwardScanners.Get().(*EventScanner)
		if scanner == nil {
			scanner = NewEventScanner(nil, forwardBufferSize, DefaultMaxEventSize)
		}
		scanner.Reset(cl.resp.Body)
		scanner.BeforeRead(f.beforeReading)
		f.events = scanner
		f.idleCause = &timeoutError{limit: cl.client.opts.IdleTimeout, waitingFor: "the next stream event"}
	}

	event, err := f.events.Next()
	if err == nil {
		if event.HasData {
			if !f.streamed {
				// The first-byte deadline ends here, even when later events
				// are already buffered.
				f.streamed = true
				cl.watchdog.arm(cl.client.opts.IdleTimeout, f.idleCause)
			} else {
				f.rearm = true
			}
		}
		return event, nil
	}

	if ctxErr := cl.ctx.Err(); ctxErr != nil {
		return RawEvent{}, cl.canceled(ctxErr)
	}
	if timeout := cl.timeout(f.streamed); timeout != nil {
		return RawEvent{}, timeout
	}
	switch {
	case errors.Is(err, io.EOF):
		return RawEvent{}, io.EOF
	case errors.Is(err, ErrEventTooLarge):
		return RawEvent{}, &UpstreamError{Kind: ErrorMalformed, Message: err.Error(), Streamed: f.streamed}
	default:
		return RawEvent{}, &UpstreamError{Kind: ErrorStreamCut, Message: "stream ended inside an event: " + err.Error(), Streamed: f.streamed}
	}
}

// beforeReading moves the idle deadline when events arrived since it last
// moved, and then runs the caller's BeforeRead function.
func (f *Forwarded) beforeReading() {
	if f.rearm {
		f.rearm = false
		f.call.watchdog.arm(f.call.client.opts.IdleTimeout, f.idleCause)
	}
	if f.beforeRead != nil {
		f.beforeRead()
	}
}

// Drain reads the rest of the body for a short time after [DONE], so that
// an HTTP/1.1 connection can go back to the idle pool.
func (f *Forwarded) Drain() {
	f.call.drainAfterDone()
}

// EncodeForwardBody encodes the fields of a client's chat completion request
// for an upstream, with model replaced by the upstream model. For a
// streaming request it sets stream_options.include_usage, so that the
// upstream reports token usage in a last chunk. A stream_options value that
// is not an object is left as it is, for the upstream to reject.
//
// The values of fields must be valid JSON, as json.Unmarshal produces them;
// they are copied without being checked again. Keys are written in sorted
// order.
func EncodeForwardBody(fields map[string]json.RawMessage, model string, stream bool) ([]byte, error) {
	modelJSON, err := json.Marshal(model)
	if err != nil {
		return nil, fmt.Errorf("encode model: %w", err)
	}

	var options json.RawMessage
	if stream {
		options, err = withIncludeUsage(fields["stream_options"])
		if err != nil {
			return nil, err
		}
	}

	names := make([]string, 0, len(fields)+2)
	size := len(modelJSON) + len(options) + 64
	for name, value := range fields {
		names = append(names, name)
		size += len(name) + len(value) + 4
	}
	if _, ok := fields["model"]; !ok {
		names = append(names, "model")
	}
	if _, ok := fields["stream_options"]; !ok && options != nil {
		names = append(names, "stream_options")
	}
	slices.Sort(names)

	body := make([]byte, 0, size)
	body = append(body, '{')
	for i, name := range names {
		if i > 0 {
			body = append(body, ',')
		}
		key, err := json.Marshal(name)
		if err != nil {
			return nil, fmt.Errorf("encode field name %q: %w", name, err)
		}
		body = append(body, key...)
		body = append(body, ':')

		switch {
		case name == "model":
			body = append(body, modelJSON...)
		case name == "stream_options" && options != nil:
			body = append(body, options...)
		default:
			body = append(body, fields[name]...)
		}
	}
	return append(body, '}'), nil
}

// withIncludeUsage returns the stream_options object raw with include_usage
// set to true, or raw itself when it is present but not an object.
func withIncludeUsage(raw json.RawMessage) (json.RawMessage, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		return json.RawMessage(`{"include_usage":true}`), nil
	}
	if trimmed[0] != '{' {
		return raw, nil
	}

	var options map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &options); err != nil {
		return raw, nil
	}
	options["include_usage"] = json.RawMessage("true")
	encoded, err := json.Marshal(options)
	if err != nil {
		return nil, fmt.Errorf("encode stream_options: %w", err)
	}
	return encoded, nil
}

// ChunkInfo is the part of one chat.completion.chunk that a proxy acts on.
type ChunkInfo struct {
	// Finished is set when a choice carries a finish_reason.
	Finished bool
	// Usage is the chunk's usage object, or nil.
	Usage *Usage
	// UsageOnly is set for the chunk that include_usage adds: a usage
	// object and no choices.
	UsageOnly bool
	// Error is set when the chunk is an error object instead of a chunk.
	Error bool
}

// The member names that InspectChunk searches for, each with its closing
// quote but not its opening one: see indexMember.
var (
	finishReasonName = []byte(`finish_reason"`)
	usageName        = []byte(`usage"`)
	errorName        = []byte(`error"`)
)

// InspectChunk reads the parts of a chunk's JSON data that a proxy needs
// before the chunk reaches its client. It decodes data only when a usage
// object or an error member is present, so that plain content chunks cost
// a few substring searches.
func InspectChunk(data []byte) ChunkInfo {
	info := ChunkInfo{Finished: memberStartsWith(data, finishReasonName, '"')}
	if memberStartsWith(data, usageName, '{') || indexMember(data, errorName, 0) >= 0 {
		return decodeChunk(data, info)
	}
	return info
}

// InspectLaterChunk is InspectChunk without the error check, for the chunks
// that follow one that reached the client. A proxy relays those as they are,
// errors included, so the search for an error member is left out.
func InspectLaterChunk(data []byte) ChunkInfo {
	info := ChunkInfo{Finished: memberStartsWith(data, finishReasonName, '"')}
	if memberStartsWith(data, usageName, '{') {
		return decodeChunk(data, info)
	}
	return info
}

// decodeChunk adds the usage and error members of data to info. It reads
// the top-level members of data and decodes only the usage object instead
// of the whole chunk. Data that is not a JSON object, or whose usage object
// does not decode, leaves info as it is.
func decodeChunk(data []byte, info ChunkInfo) ChunkInfo {
	var usage, choices, errorValue []byte
	ok := forEachMember(data, func(name, value []byte) {
		switch string(name) {
		case "usage":
			usage = value
		case "choices":
			choices = value
		case "error":
			errorValue = value
		}
	})
	if !ok {
		return info
	}

	if len(usage) > 0 && usage[0] == '{' {
		info.Usage = &Usage{}
		if err := json.Unmarshal(usage, info.Usage); err != nil {
			return ChunkInfo{Finished: info.Finished}
		}
		// A missing, null or empty choices array counts as no choices.
		info.UsageOnly = len(choices) == 0 || string(choices) == "null" || isEmptyArray(choices)
	}
	info.Error = len(errorValue) > 0 && string(errorValue) != "null"
	return info
}

// memberStartsWith reports whether data contains the member name, quoted,
// followed by a colon and a value that starts with first. A member name
// inside a JSON string cannot match, because its quotes would be escaped.
func memberStartsWith(data, name []byte, first byte) bool {
	for offset := 0; ; {
		i := indexMember(data, name, offset)
		if i < 0 {
			return false
		}
		offset = i + len(name)
		rest := skipJSONSpace(data, offset)
		if rest < len(data) && data[rest] == ':' {
			rest = skipJSONSpace(data, rest+1)
			if rest < len(data) && data[rest] == first {
				return true
			}
		}
	}
}

// indexMember returns the index just after the opening quote of the first
// quoted name in data at or after offset, or -1. name ends with the closing
// quote. It searches for name and then checks the opening quote, because a
// search that starts with a quote, the most frequent byte of JSON, stops at
// every string.
func indexMember(data, name []byte, offset int) int {
	for {
		i := bytes.Index(data[offset:], name)
		if i < 0 {
			return -1
		}
		i += offset
		if i > 0 && data[i-1] == '"' {
			return i
		}
		offset = i + 1
	}
}

// skipJSONSpace returns the offset of the first byte at or after offset
// that is not JSON whitespace.
func skipJSONSpace(data []byte, offset int) int {
	for offset < len(data) {
		switch data[offset] {
		case ' ', '\t', '\r', '\n':
			offset++
		default:
			return offset
		}
	}
	return offset
}
