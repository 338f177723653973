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

// sseRelay writes upstream SSE events to the client. It relays each event's
// bytes as they arrived and collects them until the next read from the
// upstream, so that events that arrived together leave in one write and one
// flush, as from a plain reverse proxy.
type sseRelay struct {
	writer gin.ResponseWriter
	// pending contains the events not yet written to the client.
	pending []byte
	// err is the first failed write to the client, wrapping errClientWrite.
	err error
	// clientUsage is set when the client requested the usage chunk itself.
	// Otherwise the gateway requested it only for the request log, so it is
	// not relayed.
	clientUsage bool
	// finished is set once a chunk carried a finish_reason.
	finished bool
}

// forward queues one chunk event and records its usage.
func (r *sseRelay) forward(event providers.RawEvent, info providers.ChunkInfo, call *gatewayCall) {
	if info.Finished {
		r.finished = true
	}
	if info.Usage != nil {
		call.usage.prompt, call.usage.completion = info.Usage.PromptTokens, info.Usage.CompletionTokens
	}
	if info.UsageOnly && !r.clientUsage {
		return
	}
	r.pending = append(r.pending, event.Raw...)
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
		if r.err != nil {
			// A flush before the read failed to reach the client.
			return r.err
		}

		switch {
		case errors.Is(err, io.EOF) && r.finished:
			// Some upstreams end after the finish_reason without [DONE];
			// clients still expect it.
			r.write("message", doneData)
			return r.flush()
		case errors.Is(err, io.EOF):
			return &providers.UpstreamError{Kind: providers.ErrorStreamCut, Message: "stream ended before [DONE] or a finish_reason", Streamed: true}
		case err != nil:
			return err
		}

		switch {
		case !event.HasData:
			// Comments, such as keep-alives, go on to the client.
			r.pending = append(r.pending, event.Raw...)
		case isDone(event.Data):
			r.pending = append(r.pending, event.Raw...)
			// Drain may wait for the upstream, and the client should not.
			if err := r.flush(); err != nil {
				return err
			}
			forwarded.Drain()
			return nil
		default:
			r.forward(event, providers.InspectLaterChunk(event.Data), call)
		}
	}
}

// isDone reports whether data is the [DONE] marker that ends an OpenAI
// stream.
func isDone(data []byte) bool {
	return string(data) == doneData
}

// writeError queues an OpenAI-shape error event that ends a broken stream,
// which the OpenAI SDKs turn into an error for the caller.
func (r *sseRelay) writeError(code string) {
	data := fmt.Sprintf(`{"error":{"message":"the upstream stream failed after it started (%s); the request ID is in the X-Request-Id header","type":"server_error","code":%q,"param":null}}`,
		code, code)
	r.write("message", data)
}

// flush writes the queued events to the client and flushes them. It runs
// before each read from the upstream. It returns the first failed write,
// which it also keeps in r.err for the caller of the read.
func (r *sseRelay) flush() error {
	if r.err != nil || len(r.pending) == 0 {
		return r.err
	}
	_, err := r.writer.Write(r.pending)
	r.pending = r.pending[:0]
	if err != nil {
		r.err = fmt.Errorf("%w: %w", errClientWrite, err)
		return r.err
	}
	r.writer.Flush()
	return nil
}

// write queues one event that the gateway makes itself. Data lines become
// one "data:" line each, as the SSE format requires.
func (r *sseRelay) write(name, data string) {
	buf := r.pending
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
	r.pending = append(buf, '\n')
}
