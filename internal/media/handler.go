package media

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// errLinkQuery is the Verify-style error for a query that is not exactly
// one expires and one sig value.
var errLinkQuery = errors.New("media link query malformed")

// mediaHandler serves signed media links. See NewHandler.
type mediaHandler struct {
	storage Storage
	signer  *Signer
	logger  *slog.Logger
}

// NewHandler returns the handler of GET and HEAD
// /media/images/{object key}?expires=&sig=. The signature is the only
// credential. It takes the key from the escaped request path and decodes it
// once, so mount it where the path reaches it unchanged. A router that
// decodes or cleans the path first would hide double encoding and "..".
//
// Responses:
//   - 403 invalid_media_link, with one fixed body and no object headers, for
//     any link that Signer.Verify rejects or that lacks its query values.
//   - 404 media_not_found when the link is valid but the object is missing.
//   - 200, 206 for a single byte range, 304 for a matching If-None-Match or
//     an unchanged If-Modified-Since, 416 for an unsatisfiable range.
//     Requests for several ranges get the whole object with 200, which
//     RFC 9110 allows. If-Range with an ETag or a date is honored.
//   - 500, or 502 for a remote storage, when the storage fails. The client
//     gets no details, and the log gets the object key and error.
//   - 405 for methods other than GET and HEAD.
//
// Cache-Control is "private, max-age=N", where N is never more than the
// seconds left until the link expires, floored, nor more than the TTL.
func NewHandler(storage Storage, signer *Signer, logger *slog.Logger) http.Handler {
	if storage == nil || signer == nil {
		panic("media.NewHandler: storage and signer must not be nil")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &mediaHandler{storage: storage, signer: signer, logger: logger}
}

func (h *mediaHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.logger.DebugContext(r.Context(), "media request method not allowed", "method", r.Method)
		w.Header().Set("Allow", "GET, HEAD")
		writeMediaError(w, http.StatusMethodNotAllowed, "invalid_request_error", "method_not_allowed", "media links support only GET and HEAD")
		return
	}

	now := time.Now()
	key, expires, err := h.verify(r, now)
	if err != nil {
		// Rejected links are client errors and can be numerous, so they
		// are logged at debug level. The signature is never logged.
		h.logger.DebugContext(r.Context(), "media link rejected", "object_key", truncate(key, 256), "error", err)
		writeMediaError(w, http.StatusForbidden, "permission_error", "invalid_media_link", "the media link is invalid or expired")
		return
	}

	// The floored time left is at least 0 and at most the TTL, so no cache
	// keeps the response after the link has expired.
	remaining := min(time.Unix(expires, 0).Sub(now), h.signer.ttl)
	maxAge := max(int64(remaining/time.Second), 0)

	if r.Method == http.MethodHead || isConditional(r) || (r.Method == http.MethodGet && r.Header.Get("Range") != "") {
		h.serveChecked(w, r, key, maxAge)
		return
	}

	// A plain GET opens the object once, without a Head first.
	body, info, err := h.storage.Get(r.Context(), key, 0, -1)
	if err != nil {
		h.writeStorageError(w, r, key, err)
		return
	}
	defer body.Close()
	h.writeObject(w, r, key, body, info, maxAge)
}

// verify returns the object key and expiry of a valid link.
func (h *mediaHandler) verify(r *http.Request, now time.Time) (string, int64, error) {
	escaped, ok := strings.CutPrefix(r.URL.EscapedPath(), PathPrefix)
	if !ok {
		return "", 0, fmt.Errorf("%w: the path does not start with %s", ErrLinkKey, PathPrefix)
	}
	key, err := url.PathUnescape(escaped)
	if err != nil {
		return escaped, 0, fmt.Errorf("%w: %w", ErrLinkKey, err)
	}

	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return key, 0, fmt.Errorf("%w: %w", errLinkQuery, err)
	}
	expires, sig := query["expires"], query["sig"]
	if len(expires) != 1 || len(sig) != 1 {
		return key, 0, fmt.Errorf("%w: want one expires and one sig, got %d and %d", errLinkQuery, len(expires), len(sig))
	}
	if err := h.signer.Verify(key, expires[0], sig[0], now); err != nil {
		return key, 0, err
	}
	// Verify has checked the canonical decimal form.
	expiresUnix, _ := strconv.ParseInt(expires[0], 10, 64)
	return key, expiresUnix, nil
}

// serveChecked serves HEAD, conditional and range requests, which need the
// object's description before its body.
func (h *mediaHandler) serveChecked(w http.ResponseWriter, r *http.Request, key string, maxAge int64) {
	ctx := r.Context()
	info, err := h.storage.Head(ctx, key)
	if err != nil {
		h.writeStorageError(w, r, key, err)
		return
	}

	if notModified(r, info) {
		setCacheHeaders(w.Header(), info, maxAge)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if r.Method == http.MethodHead {
		setObjectHeaders(w.Header(), info, maxAge, info.Size)
		w.WriteHeader(http.StatusOK)
		return
	}

	start, end, outcome := parseRange(r.Header.Get("Range"), info.Size)
	if outcome != rangeNone && !ifRangeMatches(r.Header.Get("If-Range"), info) {
		outcome = rangeNone
	}
	switch outcome {
	case rangeUnsatisfiable:
		h.logger.DebugContext(ctx, "media range not satisfiable", "object_key", key, "range", r.Header.Get("Range"), "size", info.Size)
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", info.Size))
		writeMediaError(w, http.StatusRequestedRangeNotSatisfiable, "invalid_request_error", "range_not_satisfiable",
			fmt.Sprintf("the requested range is outside the object of %d bytes", info.Size))
		return
	case rangeNone:
		start, end = 0, info.Size-1
	}

	// Reading to the end lets the local storage return its *os.File.
	length := int64(-1)
	if end < info.Size-1 {
		length = end - start + 1
	}
	body, bodyInfo, err := h.storage.Get(ctx, key, start, length)
	if err != nil {
		h.writeStorageError(w, r, key, err)
		return
	}
	defer body.Close()

	if bodyInfo.ETag != info.ETag || bodyInfo.Size != info.Size {
		// The object was replaced between Head and Get, so the range may
		// not fit it. Sending the new object whole is always correct. The
		// deferred Close above still closes the first body.
		body, bodyInfo, err = h.storage.Get(ctx, key, 0, -1)
		if err != nil {
			h.writeStorageError(w, r, key, err)
			return
		}
		defer body.Close()
		outcome = rangeNone
	}

	if outcome == rangeNone {
		h.writeObject(w, r, key, body, bodyInfo, maxAge)
		return
	}
	setObjectHeaders(w.Header(), info, maxAge, end-start+1)
	w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, info.Size))
	w.WriteHeader(http.StatusPartialContent)
	h.copyBody(r, w, key, body, end-start+1)
}

// writeObject sends the whole object with 200.
func (h *mediaHandler) writeObject(w http.ResponseWriter, r *http.Request, key string, body io.Reader, info ObjectInfo, maxAge int64) {
	setObjectHeaders(w.Header(), info, maxAge, info.Size)
	w.WriteHeader(http.StatusOK)
	h.copyBody(r, w, key, body, info.Size)
}

// copyBody streams the contentLength bytes of body after the headers are
// sent. io.Copy reaches the connection's ReadFrom, which uses sendfile for
// an *os.File or a fileSection. A whole file is wrapped in an
// io.LimitedReader, which sendfile also takes, so that the kernel is asked
// for exactly contentLength bytes and no extra call has to find the end.
func (h *mediaHandler) copyBody(r *http.Request, w http.ResponseWriter, key string, body io.Reader, contentLength int64) {
	if file, ok := body.(*os.File); ok {
		body = &io.LimitedReader{R: file, N: contentLength}
	}
	written, err := io.Copy(w, body)
	if err == nil && written != contentLength {
		err = fmt.Errorf("the storage returned %d bytes, want %d", written, contentLength)
	}
	if err != nil {
		// The status line is gone, so the client sees a short body. A
		// client that left cancels the request context first.
		level := slog.LevelWarn
		if r.Context().Err() != nil {
			level = slog.LevelDebug
		}
		h.logger.Log(r.Context(), level, "media response cut short", "object_key", key, "storage", h.storage.Name(), "error", err)
	}
}

func (h *mediaHandler) writeStorageError(w http.ResponseWriter, r *http.Request, key string, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		// A valid link to a missing object means that the object was
		// deleted or never written, which is worth seeing in the log.
		h.logger.InfoContext(r.Context(), "media object not found", "object_key", key, "storage", h.storage.Name())
		writeMediaError(w, http.StatusNotFound, "not_found_error", "media_not_found", "the media object does not exist")
	case errors.Is(err, ErrInvalidKey):
		// Verify applies the same key rules, so only a storage with
		// stricter rules gets here. The response is the one for bad links.
		h.logger.DebugContext(r.Context(), "media link rejected by the storage", "object_key", key, "error", err)
		writeMediaError(w, http.StatusForbidden, "permission_error", "invalid_media_link", "the media link is invalid or expired")
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		h.logger.DebugContext(r.Context(), "media request canceled by the client", "object_key", key)
	default:
		h.logger.ErrorContext(r.Context(), "read media object", "object_key", key, "storage", h.storage.Name(), "error", err)
		status := http.StatusInternalServerError
		if h.storage.Name() == "oss" {
			status = http.StatusBadGateway
		}
		writeMediaError(w, status, "server_error", "media_storage_error", "reading the media object failed; try again later")
	}
}

// setObjectHeaders sets the headers of a 200 or 206 response.
func setObjectHeaders(header http.Header, info ObjectInfo, maxAge, contentLength int64) {
	setCacheHeaders(header, info, maxAge)
	header.Set("Content-Type", servedContentType(info.ContentType))
	header.Set("Content-Length", strconv.FormatInt(contentLength, 10))
	header.Set("Accept-Ranges", "bytes")
	header.Set("X-Content-Type-Options", "nosniff")
}

// setCacheHeaders sets the headers that a 304 repeats from the 200.
func setCacheHeaders(header http.Header, info ObjectInfo, maxAge int64) {
	header.Set("Cache-Control", "private, max-age="+strconv.FormatInt(maxAge, 10))
	if info.ETag != "" {
		header.Set("ETag", info.ETag)
	}
	if !info.LastModified.IsZero() {
		header.Set("Last-Modified", info.LastModified.UTC().Format(http.TimeFormat))
	}
}

// servedContentType passes on only the image types that DetectContentType
// returns, so a storage that kept a caller's text/html cannot make the API's
// origin serve a page.
func servedContentType(contentType string) string {
	switch contentType {
	case "image/png", "image/jpeg", "image/gif", "image/webp":
		return contentType
	default:
		return "application/octet-stream"
	}
}

// mediaErrorBody is the OpenAI error shape that the rest of the API uses.
type mediaErrorBody struct {
	Error mediaErrorDetail `json:"error"`
}

type mediaErrorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Code    string  `json:"code"`
	Param   *string `json:"param"`
}

func writeMediaError(w http.ResponseWriter, status int, errorType, code, message string) {
	body, err := json.Marshal(mediaErrorBody{Error: mediaErrorDetail{Message: message, Type: errorType, Code: code}})
	if err != nil {
		panic(fmt.Sprintf("marshal media error body: %v", err)) // Strings always marshal.
	}
	header := w.Header()
	header.Set("Content-Type", "application/json")
	header.Set("Content-Length", strconv.Itoa(len(body)))
	header.Set("Cache-Control", "no-store")
	header.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// isConditional reports whether r has a validator that can lead to 304.
func isConditional(r *http.Request) bool {
	return r.Header.Get("If-None-Match") != "" || r.Header.Get("If-Modified-Since") != ""
}

// notModified evaluates If-None-Match with the weak comparison, or, when it
// is absent, If-Modified-Since, as RFC 9110 section 13.2.2 orders them.
func notModified(r *http.Request, info ObjectInfo) bool {
	if values := r.Header.Values("If-None-Match"); len(values) > 0 {
		return etagListMatches(strings.Join(values, ","), info.ETag)
	}
	since := r.Header.Get("If-Modified-Since")
	if since == "" || info.LastModified.IsZero() {
		return false
	}
	t, err := http.ParseTime(since)
	if err != nil {
		return false
	}
	// Last-Modified has second precision, so the stored time is compared
	// at that precision.
	return !info.LastModified.Truncate(time.Second).After(t)
}

// etagListMatches reports whether the If-None-Match list contains "*" or an
// entity tag equal to etag under the weak comparison, which ignores "W/".
func etagListMatches(list, etag string) bool {
	want := strings.TrimPrefix(etag, "W/")
	for {
		list = strings.TrimLeft(list, " \t,")
		if list == "" {
			return false
		}
		if list[0] == '*' {
			// The caller has found the object, so "*" matches.
			return true
		}
		tag, rest, ok := cutETag(list)
		if !ok {
			return false
		}
		if want != "" && strings.TrimPrefix(tag, "W/") == want {
			return true
		}
		list = rest
	}
}

// cutETag splits the entity tag at the start of s from the rest. An entity
// tag may contain commas, so the list cannot simply be split at them.
func cutETag(s string) (tag, rest string, ok bool) {
	opaque := strings.TrimPrefix(s, "W/")
	if len(opaque) < 2 || opaque[0] != '"' {
		return "", "", false
	}
	closing := strings.IndexByte(opaque[1:], '"')
	if closing < 0 {
		return "", "", false
	}
	n := len(s) - len(opaque) + closing + 2
	return s[:n], s[n:], true
}

// ifRangeMatches evaluates If-Range. An entity tag must match strongly,
// and a date must equal Last-Modified, because only then is a part of the
// client's copy also a part of the stored object.
func ifRangeMatches(value string, info ObjectInfo) bool {
	value = strings.TrimSpace(value)
	switch {
	case value == "":
		return true
	case strings.HasPrefix(value, "W/"):
		return false
	case strings.HasPrefix(value, `"`):
		return !strings.HasPrefix(info.ETag, "W/") && value == info.ETag
	}
	t, err := http.ParseTime(value)
	return err == nil && !info.LastModified.IsZero() && info.LastModified.Truncate(time.Second).Equal(t)
}

// rangeOutcome is the result of parseRange.
type rangeOutcome int

const (
	// rangeNone means the whole object is sent: no Range header, a header
	// that is invalid or not in bytes, or several ranges.
	rangeNone rangeOutcome = iota
	rangeSatisfiable
	rangeUnsatisfiable
)

// parseRange parses a Range header of one byte range against an object of
// size bytes and returns the first and last byte positions, inclusive.
// Following RFC 9110 section 14.2, an invalid header is ignored rather than
// rejected, and a last position past the end is clamped.
func parseRange(header string, size int64) (start, end int64, outcome rangeOutcome) {
	header = strings.TrimSpace(header)
	if len(header) < len("bytes=") || !strings.EqualFold(header[:len("bytes=")], "bytes=") {
		return 0, 0, rangeNone
	}
	spec := strings.TrimSpace(header[len("bytes="):])
	if strings.Contains(spec, ",") {
		return 0, 0, rangeNone
	}
	first, last, ok := strings.Cut(spec, "-")
	if !ok {
		return 0, 0, rangeNone
	}
	first, last = strings.TrimSpace(first), strings.TrimSpace(last)

	if first == "" {
		// bytes=-n requests the last n bytes.
		suffix, ok := parseBytePosition(last)
		switch {
		case !ok:
			return 0, 0, rangeNone
		case suffix == 0 || size == 0:
			return 0, 0, rangeUnsatisfiable
		}
		return size - min(suffix, size), size - 1, rangeSatisfiable
	}

	start, ok = parseBytePosition(first)
	if !ok {
		return 0, 0, rangeNone
	}
	end = size - 1
	if last != "" {
		end, ok = parseBytePosition(last)
		if !ok || end < start {
			return 0, 0, rangeNone
		}
		end = min(end, size-1)
	}
	if start >= size {
		return 0, 0, rangeUnsatisfiable
	}
	return start, end, rangeSatisfiable
}

// parseBytePosition parses a non-empty run of ASCII digits.
func parseBytePosition(s string) (int64, bool) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}
