package api

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/aihigress/aihigress/internal/providers"
)

// doneData is the data of the event that ends an OpenAI stream.
const doneData = "[DONE]"

// errClientWrite wraps a failed write to the client of a stream.
var errClientWrite = errors.New("write to client failed")

// sseRelay writes upstream SSE events to the client. It flushes before each
// read from the upstream, so events that arrived together leave in one write.
type sseRelay struct {
	writer gin.ResponseWriter
	// unflushed is set while written events wait in the response buffer.
	unflushed bool
	// clientUsage is set when the client requested the usage chunk itself.
	// Otherwise the gateway requested it only for the request log, so it is
	// not relayed.
	clientUsage bool
	// finished is set once a chunk carried a finish_reason.
	finished bool
	buf      []byte
}

// forward relays one chunk event and records its usage.
func (r *sseRelay) forward(event providers.Event, info providers.ChunkInfo, call *gatewayCall) error {
	if info.Finished {
		r.finished = true
	}
	if info.Usage != nil {
		call.usage.prompt, call.usage.completion = info.Usage.PromptTokens, info.Usage.CompletionTokens
	}
	if info.UsageOnly && !r.clientUsage {
		return nil
	}
	return r.write(event.Name, event.Data)
}

// copyRest relays events until [DONE] or the end of the stream. It returns
// nil for a complete stream, an error wrapping errClientWrite when the client
// went away, and the upstream error otherwise. Time spent waiting for events
// counts as upstream time.
func (r *sseRelay) copyRest(forwarded *providers.Forwarded, call *gatewayCall) error {
	for {
		waitStarted := time.Now()
		event, err := forwarded.NextEvent()
		call.addUpstream(waitStarted)

		switch {
		case errors.Is(err, io.EOF) && r.finished:
			// Some upstreams end after the finish_reason without [DONE];
			// clients still expect it.
			return r.write("message", doneData)
		case errors.Is(err, io.EOF):
			return &providers.UpstreamError{Kind: providers.ErrorStreamCut, Message: "stream ended before [DONE] or a finish_reason", Streamed: true}
		case err != nil:
			return err
		}

		if event.Data == doneData {
			if err := r.write(event.Name, event.Data); err != nil {
				return err
			}
			// Drain may wait for the upstream, and the client should not.
			r.flush()
			forwarded.Drain()
			return nil
		}
		if err := r.forward(event, providers.InspectChunk(event.Data), call); err != nil {
			return err
		}
	}
}

// writeError ends a broken stream with an OpenAI-shape error event, which
// the OpenAI SDKs turn into an error for the caller. A failed write is
// ignored, because the stream ends either way.
func (r *sseRelay) writeError(code string) {
	data := fmt.Sprintf(`{"error":{"message":"the upstream stream failed after it started (%s); the request ID is in the X-Request-Id header","type":"server_error","code":%q,"param":null}}`,
		code, code)
	_ = r.write("message", data)
}

// flush sends the buffered events to the client.
func (r *sseRelay) flush() {
	if r.unflushed {
		r.unflushed = false
		r.writer.Flush()
	}
}

// write buffers one event for the next flush. Data lines become one "data:"
// line each, as the SSE format requires.
func (r *sseRelay) write(name, data string) error {
	buf := r.buf[:0]
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
	buf = append(buf, '\n')
	r.buf = buf

	r.unflushed = true
	if _, err := r.writer.Write(buf); err != nil {
		return fmt.Errorf("%w: %w", errClientWrite, err)
	}
	return nil
}
