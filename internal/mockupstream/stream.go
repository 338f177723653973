package mockupstream

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

const systemFingerprint = "fp_mock"

// chunkWriter writes chat.completion.chunk events and flushes each one. It
// encodes the parts shared by all chunks of a stream once, so writing a
// content chunk does not allocate once buf has grown to the chunk size.
type chunkWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController

	// meta is `data: {"id":...,"object":...,"created":...,"model":...,"system_fingerprint":...,`.
	meta []byte

	// usageTail is `,"usage":null` when the client asked for a usage chunk,
	// because OpenAI then sends a null usage in every other chunk.
	usageTail []byte

	contentHead []byte
	contentTail []byte
	buf         []byte
}

func newChunkWriter(w http.ResponseWriter, plan completionPlan) *chunkWriter {
	cw := &chunkWriter{w: w, rc: http.NewResponseController(w), buf: make([]byte, 0, 512)}

	meta := []byte(`data: {"id":`)
	meta = appendJSONString(meta, plan.id)
	meta = append(meta, `,"object":"chat.completion.chunk","created":`...)
	meta = strconv.AppendInt(meta, plan.created, 10)
	meta = append(meta, `,"model":`...)
	meta = appendJSONString(meta, plan.model)
	meta = append(meta, `,"system_fingerprint":"`+systemFingerprint+`",`...)
	cw.meta = meta

	if plan.includeUsage {
		cw.usageTail = []byte(`,"usage":null`)
	}

	cw.contentHead = append(append([]byte(nil), meta...), `"choices":[{"index":0,"delta":{"content":"`...)
	cw.contentTail = append([]byte(` "},"logprobs":null,"finish_reason":null}]`), cw.usageTail...)
	cw.contentTail = append(cw.contentTail, "}\n\n"...)

	return cw
}

func (cw *chunkWriter) writeRoleChunk() error {
	cw.buf = append(cw.buf[:0], cw.meta...)
	cw.buf = append(cw.buf, `"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]`...)
	cw.buf = append(cw.buf, cw.usageTail...)
	cw.buf = append(cw.buf, "}\n\n"...)
	return cw.writeRaw(cw.buf)
}

// writeContentChunk sends token followed by a space as the delta content.
func (cw *chunkWriter) writeContentChunk(token string) error {
	cw.buf = append(cw.buf[:0], cw.contentHead...)
	cw.buf = appendJSONStringContent(cw.buf, token)
	cw.buf = append(cw.buf, cw.contentTail...)
	return cw.writeRaw(cw.buf)
}

func (cw *chunkWriter) writeFinishChunk(finishReason string) error {
	cw.buf = append(cw.buf[:0], cw.meta...)
	cw.buf = append(cw.buf, `"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":`...)
	cw.buf = appendJSONString(cw.buf, finishReason)
	cw.buf = append(cw.buf, "}]"...)
	cw.buf = append(cw.buf, cw.usageTail...)
	cw.buf = append(cw.buf, "}\n\n"...)
	return cw.writeRaw(cw.buf)
}

func (cw *chunkWriter) writeUsageChunk(promptTokens, completionTokens int) error {
	cw.buf = append(cw.buf[:0], cw.meta...)
	cw.buf = append(cw.buf, `"choices":[],"usage":{"prompt_tokens":`...)
	cw.buf = strconv.AppendInt(cw.buf, int64(promptTokens), 10)
	cw.buf = append(cw.buf, `,"completion_tokens":`...)
	cw.buf = strconv.AppendInt(cw.buf, int64(completionTokens), 10)
	cw.buf = append(cw.buf, `,"total_tokens":`...)
	cw.buf = strconv.AppendInt(cw.buf, int64(promptTokens+completionTokens), 10)
	cw.buf = append(cw.buf, "}}\n\n"...)
	return cw.writeRaw(cw.buf)
}

// writeRaw writes one complete event and flushes it to the client.
func (cw *chunkWriter) writeRaw(event []byte) error {
	if _, err := cw.w.Write(event); err != nil {
		return fmt.Errorf("write stream chunk: %w", err)
	}
	return cw.flush()
}

func (cw *chunkWriter) flush() error {
	if err := cw.rc.Flush(); err != nil {
		return fmt.Errorf("flush stream: %w", err)
	}
	return nil
}

func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = appendJSONStringContent(dst, s)
	return append(dst, '"')
}

// appendJSONStringContent appends s escaped for the inside of a JSON string.
// s must be valid UTF-8, which holds for strings decoded by encoding/json.
func appendJSONStringContent(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"

	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// pacer waits on one reusable timer and stops waiting when the request
// context ends. It relies on the timer semantics of Go 1.23 and later, where
// Reset never delivers a value from an earlier expiry.
type pacer struct {
	timer *time.Timer
}

func newPacer() *pacer {
	return &pacer{}
}

// sleep waits for d and returns the context error if ctx ends first.
func (p *pacer) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}

	if p.timer == nil {
		p.timer = time.NewTimer(d)
	} else {
		p.timer.Reset(d)
	}

	select {
	case <-ctx.Done():
		p.timer.Stop()
		return ctx.Err()
	case <-p.timer.C:
		return nil
	}
}

func (p *pacer) sleepUntil(ctx context.Context, deadline time.Time) error {
	return p.sleep(ctx, time.Until(deadline))
}

func (p *pacer) stop() {
	if p.timer != nil {
		p.timer.Stop()
	}
}
