package mockupstream

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	maxImagesPerRequest = 10

	// imageOutputTokens and geminiImageTokens are the fixed token counts
	// per image that usage reports on the OpenAI and the Gemini route. They
	// are of the order that real image models report, and only their
	// stability matters.
	imageOutputTokens = 1056
	geminiImageTokens = 1290

	maxQuotedPromptRunes = 200
)

// imageOverrides are the X-Mock-* headers that apply to image routes.
type imageOverrides struct {
	// latency is the wait before the response headers, taken from
	// Options.TimeToFirstToken or X-Mock-TTFT-Ms.
	latency   time.Duration
	slowStart time.Duration

	// imageBytes is the PNG length to reach, or 0 for a small image.
	imageBytes int

	// downloadFault is faultNone or one of the url- faults.
	downloadFault fault
}

func (h *Handler) parseImageOverrides(header http.Header) (imageOverrides, error) {
	base, err := h.parseOverrides(header)
	if err != nil {
		return imageOverrides{}, err
	}

	overrides := imageOverrides{
		latency:    base.timeToFirstToken,
		slowStart:  base.slowStart,
		imageBytes: h.imageBytes,
	}

	if value := header.Get("X-Mock-Image-Bytes"); value != "" {
		n, err := strconv.Atoi(value)
		if err != nil || n < 0 || n > maxImageBytes {
			return overrides, invalidHeader("X-Mock-Image-Bytes", value, fmt.Sprintf("an integer number of bytes from 0 to %d", maxImageBytes))
		}
		overrides.imageBytes = n
	}

	if value := header.Get("X-Mock-Image-URL-Fault"); value != "" {
		f, ok := parseFault("url-" + value)
		if !ok || !f.isDownloadFault() {
			return overrides, invalidHeader("X-Mock-Image-URL-Fault", value, "one of 404, oversized, stall")
		}
		overrides.downloadFault = f
	}

	return overrides, nil
}

// resolveFault returns the fault that the request selects, or faultNone
// when a fault-once key has already had its fault.
func (h *Handler) resolveFault(header http.Header, model string) (fault, error) {
	choice, err := chooseFault(header, model)
	if err != nil {
		return faultNone, err
	}
	if choice.fault != faultNone && choice.onceKey != "" && !h.faultOnce.claim(choice.onceKey) {
		return faultNone, nil
	}
	return choice.fault, nil
}

func misplacedDownloadFault(f fault) *apiError {
	return &apiError{
		status:  http.StatusBadRequest,
		errType: "invalid_request_error",
		message: fmt.Sprintf("Fault %q applies only to %s with response_format \"url\".", string(f), imageGenerationsPath),
	}
}

// quotePrompt returns prompt with its whitespace collapsed and cut to
// maxQuotedPromptRunes runes, for the text that a mock reply quotes.
func quotePrompt(prompt string) string {
	return truncateRunes(strings.Join(strings.Fields(prompt), " "), maxQuotedPromptRunes)
}

// imageBody is a JSON response body whose base64 image strings are encoded
// while it is written. A response therefore holds one PNG at a time, and
// its length is known before any PNG exists.
type imageBody struct {
	segments []bodySegment
	length   int64

	// buf is the text segment under construction. Builders append JSON to
	// it between appendImage calls.
	buf []byte
}

// bodySegment is literal JSON text, or the base64 encoding of an image
// when text is nil.
type bodySegment struct {
	text     []byte
	image    imageSpec
	imageLen int
}

// appendImage ends the current text segment and adds the base64 string
// content of the PNG of spec.
func (b *imageBody) appendImage(spec imageSpec) error {
	n, err := spec.encodedLen()
	if err != nil {
		return err
	}

	b.endText()
	b.segments = append(b.segments, bodySegment{image: spec, imageLen: n})
	b.length += int64(base64.StdEncoding.EncodedLen(n))
	return nil
}

func (b *imageBody) endText() {
	if len(b.buf) == 0 {
		return
	}
	b.segments = append(b.segments, bodySegment{text: b.buf})
	b.length += int64(len(b.buf))
	b.buf = nil
}

// writeTo encodes the images one by one and writes the body to w.
func (b *imageBody) writeTo(w io.Writer) error {
	b.endText()
	bw := bufio.NewWriterSize(w, 64<<10)

	for _, segment := range b.segments {
		if segment.text != nil {
			if _, err := bw.Write(segment.text); err != nil {
				return err
			}
			continue
		}

		encoded, err := segment.image.encode()
		if err != nil {
			return err
		}
		if len(encoded) != segment.imageLen {
			return fmt.Errorf("PNG is %d bytes, but Content-Length counted %d", len(encoded), segment.imageLen)
		}

		encoder := base64.NewEncoder(base64.StdEncoding, bw)
		if _, err := encoder.Write(encoded); err != nil {
			return err
		}
		if err := encoder.Close(); err != nil {
			return err
		}
	}

	return bw.Flush()
}

// errBodyCut is the error that cutWriter returns once it has written its
// limit.
var errBodyCut = errors.New("body cut by the cut fault")

// cutWriter passes the first remaining bytes to w and drops the rest.
type cutWriter struct {
	w         io.Writer
	remaining int64
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if int64(len(p)) <= c.remaining {
		n, err := c.w.Write(p)
		c.remaining -= int64(n)
		return n, err
	}

	n, err := c.w.Write(p[:c.remaining])
	c.remaining -= int64(n)
	if err != nil {
		return n, err
	}
	return n, errBodyCut
}

// sendImageBody writes body as a 200 JSON response after latency. It
// applies the body faults the way a non-streaming chat completion does.
// cut-before-first closes the connection after the headers, and cut after
// half of the Content-Length. malformed sends "{not json", and stall sends
// the headers and waits for the client to leave. It returns an error only
// when the client has gone or the response could not be written.
func (h *Handler) sendImageBody(ctx context.Context, w http.ResponseWriter, p *pacer, f fault, latency time.Duration, body *imageBody) error {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/json")

	if f == faultCutBeforeFirst {
		w.WriteHeader(http.StatusOK)
		if err := rc.Flush(); err != nil {
			return err
		}
		abortResponse()
	}

	if err := p.sleep(ctx, latency); err != nil {
		return err
	}

	switch f {
	case faultMalformed:
		_, err := w.Write([]byte("{not json"))
		return err

	case faultStall:
		w.WriteHeader(http.StatusOK)
		if err := rc.Flush(); err != nil {
			return err
		}
		<-ctx.Done()
		return ctx.Err()
	}

	body.endText()
	w.Header().Set("Content-Length", strconv.FormatInt(body.length, 10))
	w.WriteHeader(http.StatusOK)

	if f == faultCut {
		err := body.writeTo(&cutWriter{w: w, remaining: body.length / 2})
		if !errors.Is(err, errBodyCut) {
			return err
		}
		if err := rc.Flush(); err != nil {
			return err
		}
		abortResponse()
	}

	return body.writeTo(w)
}

func (h *Handler) logImageStopped(ctx context.Context, route string, err error) {
	h.logger.DebugContext(ctx, "image response stopped early", "route", route, "error", err)
}
