package api

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Reconnect delays that the reconnect frame sets with its retry: field. Each
// stream gets a random delay in [minReconnectDelay, maxReconnectDelay), so
// that the clients of a stopping server do not all reconnect in the same
// instant.
const (
	minReconnectDelay = time.Second
	maxReconnectDelay = 2 * time.Second
)

// drainState records the shutdown of the server. The zero value is a
// server that is not shutting down.
type drainState struct {
	// draining is set from StartDraining on, and makes /readyz return 503.
	draining atomic.Bool

	once sync.Once
	// ending is canceled by EndStreams.
	ending    context.Context
	endCancel context.CancelFunc

	// reconnects counts the streams that ended with a reconnect frame.
	reconnects atomic.Int64
}

func (d *drainState) init() {
	d.once.Do(func() { d.ending, d.endCancel = context.WithCancel(context.Background()) })
}

// StartDraining makes GET /readyz return 503, so that load balancers stop
// sending new requests. Everything else goes on as before.
func (s *Server) StartDraining() {
	s.drain.draining.Store(true)
}

// EndStreams starts draining if it has not started, and ends the long
// requests that can resume elsewhere. Every open run event stream sends a
// reconnect frame and ends, and so does every stream that opens later.
// Synchronous message posts and image requests stop waiting for their run
// and respond with 202. Call it when the HTTP server has closed its listener.
func (s *Server) EndStreams() {
	s.StartDraining()
	s.drain.init()
	s.drain.endCancel()
}

// StreamsReconnected returns how many event streams ended with a reconnect
// frame since EndStreams.
func (s *Server) StreamsReconnected() int64 {
	return s.drain.reconnects.Load()
}

// untilStreamsEnd returns a context that is canceled with parent or when
// EndStreams is called, whichever comes first.
func (s *Server) untilStreamsEnd(parent context.Context) (context.Context, context.CancelFunc) {
	s.drain.init()
	ctx, cancel := context.WithCancel(parent)
	if s.drain.ending.Err() != nil {
		// AfterFunc would cancel in another goroutine, a moment later.
		cancel()
		return ctx, cancel
	}
	stop := context.AfterFunc(s.drain.ending, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// streamsEnding reports whether EndStreams has been called.
func (s *Server) streamsEnding() bool {
	s.drain.init()
	return s.drain.ending.Err() != nil
}

// reconnectFrame returns the last frame of a stream that EndStreams ended.
// Its id: is the cursor of the last frame sent, so that the Last-Event-ID of
// a reconnecting EventSource resumes right after it. Its retry: sets the
// EventSource's reconnect delay in milliseconds.
func reconnectFrame(runID string, lastID int64, delay time.Duration) []byte {
	buf := make([]byte, 0, 192)
	buf = append(buf, "id: "...)
	buf = strconv.AppendInt(buf, lastID, 10)
	buf = append(buf, "\nretry: "...)
	buf = strconv.AppendInt(buf, delay.Milliseconds(), 10)
	buf = append(buf, "\nevent: reconnect\ndata: "...)
	buf = fmt.Appendf(buf, `{"type":"reconnect","run_id":%q,"last_seq":%d,"retry_ms":%d,"reason":"server_shutdown"}`,
		runID, lastID, delay.Milliseconds())
	return append(buf, "\n\n"...)
}

// reconnectDelay returns a random delay in [minReconnectDelay,
// maxReconnectDelay).
func reconnectDelay() time.Duration {
	return minReconnectDelay + rand.N(maxReconnectDelay-minReconnectDelay)
}
