package fakeoss

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// maxKeyBytes is the OSS limit on the length of an object key.
const maxKeyBytes = 1023

// apiError is an OSS error response.
type apiError struct {
	status       int
	code         string
	message      string
	key          string
	accessKeyID  string
	stringToSign string
}

// errorBody is the XML body of an OSS error response.
type errorBody struct {
	XMLName        xml.Name `xml:"Error"`
	Code           string   `xml:"Code"`
	Message        string   `xml:"Message"`
	RequestID      string   `xml:"RequestId"`
	HostID         string   `xml:"HostId"`
	Key            string   `xml:"Key,omitempty"`
	OSSAccessKeyID string   `xml:"OSSAccessKeyId,omitempty"`
	StringToSign   string   `xml:"StringToSign,omitempty"`
}

// ServeHTTP serves one OSS request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	requestID := s.nextRequestID()
	w.Header().Set("X-Oss-Request-Id", requestID)
	w.Header().Set("Server", "fakeoss")
	w.Header().Set("Date", s.opts.Now().UTC().Format(http.TimeFormat))

	if apiErr := s.serve(w, r); apiErr != nil {
		s.writeError(w, r, requestID, apiErr)
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) *apiError {
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if bucket == "" || key == "" {
		return &apiError{status: http.StatusNotImplemented, code: "NotImplemented",
			message: "fakeoss implements only object requests on path-style URLs: /<bucket>/<key>."}
	}
	if bucket != s.opts.Bucket {
		return &apiError{status: http.StatusNotFound, code: "NoSuchBucket",
			message: fmt.Sprintf("The bucket %q does not exist; this server has only %q.", bucket, s.opts.Bucket)}
	}
	if len(key) > maxKeyBytes || strings.HasPrefix(key, `\`) {
		return &apiError{status: http.StatusBadRequest, code: "InvalidObjectName",
			message: "The object key is longer than 1023 bytes or starts with a backslash.", key: key}
	}
	if r.URL.RawQuery != "" {
		// Sub-resources such as ?acl select other operations, and
		// response-* parameters override headers. None is implemented.
		return &apiError{status: http.StatusNotImplemented, code: "NotImplemented",
			message: "fakeoss implements no query parameters: sub-resources and response overrides are not supported."}
	}

	if apiErr := s.authenticate(r, key); apiErr != nil {
		s.mu.Lock()
		s.counts.AuthFailures++
		s.mu.Unlock()
		return apiErr
	}

	switch r.Method {
	case http.MethodPut:
		return s.putObject(w, r, key)
	case http.MethodGet, http.MethodHead:
		return s.getObject(w, r, key)
	case http.MethodDelete:
		return s.deleteObject(w, key)
	default:
		return &apiError{status: http.StatusMethodNotAllowed, code: "MethodNotAllowed",
			message: fmt.Sprintf("fakeoss implements PUT, GET, HEAD and DELETE on objects, not %s.", r.Method)}
	}
}

func (s *Server) putObject(w http.ResponseWriter, r *http.Request, key string) *apiError {
	s.mu.Lock()
	s.counts.Put++
	s.mu.Unlock()

	if r.Header.Get("X-Oss-Copy-Source") != "" {
		return &apiError{status: http.StatusNotImplemented, code: "NotImplemented", message: "fakeoss does not implement CopyObject."}
	}
	tooLarge := &apiError{status: http.StatusBadRequest, code: "EntityTooLarge",
		message: fmt.Sprintf("The body is larger than this server's limit of %d bytes.", s.opts.MaxObjectSize)}
	if r.ContentLength > s.opts.MaxObjectSize {
		return tooLarge
	}
	var body bytes.Buffer
	if r.ContentLength > 0 {
		// The extra MinRead bytes let ReadFrom see EOF without growing the
		// buffer again.
		body.Grow(int(r.ContentLength) + bytes.MinRead)
	}
	_, err := body.ReadFrom(io.LimitReader(r.Body, s.opts.MaxObjectSize+1))
	data := body.Bytes()
	if err != nil {
		return &apiError{status: http.StatusBadRequest, code: "IncompleteBody",
			message: fmt.Sprintf("Reading the request body failed: %v.", err)}
	}
	if int64(len(data)) > s.opts.MaxObjectSize {
		return tooLarge
	}
	if r.ContentLength >= 0 && int64(len(data)) != r.ContentLength {
		return &apiError{status: http.StatusBadRequest, code: "IncompleteBody",
			message: fmt.Sprintf("The body has %d bytes but Content-Length is %d.", len(data), r.ContentLength)}
	}

	sum := md5.Sum(data)
	if header := r.Header.Get("Content-MD5"); header != "" {
		want, err := base64.StdEncoding.DecodeString(header)
		if err != nil || len(want) != md5.Size {
			return &apiError{status: http.StatusBadRequest, code: "InvalidDigest",
				message: "Content-MD5 is not the base64 of a 16-byte MD5 digest."}
		}
		if !bytes.Equal(want, sum[:]) {
			return &apiError{status: http.StatusBadRequest, code: "InvalidDigest",
				message: "Content-MD5 does not match the MD5 of the body."}
		}
	}

	obj := s.newObject(data, r.Header.Get("Content-Type"))
	s.mu.Lock()
	s.objects[key] = obj
	s.mu.Unlock()

	w.Header().Set("ETag", obj.ETag)
	w.Header().Set("Content-MD5", base64.StdEncoding.EncodeToString(sum[:]))
	w.Header().Set("X-Oss-Hash-Crc64ecma", strconv.FormatUint(obj.CRC64, 10))
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) getObject(w http.ResponseWriter, r *http.Request, key string) *apiError {
	s.mu.Lock()
	if r.Method == http.MethodHead {
		s.counts.Head++
	} else {
		s.counts.Get++
	}
	// Stored objects are never modified in place, so obj.Data can be read
	// after the lock is released.
	obj, ok := s.objects[key]
	s.mu.Unlock()
	if !ok {
		return &apiError{status: http.StatusNotFound, code: "NoSuchKey",
			message: "The specified key does not exist.", key: key}
	}

	header := w.Header()
	header.Set("Content-Type", obj.ContentType)
	header.Set("ETag", obj.ETag)
	header.Set("Last-Modified", obj.LastModified.Format(http.TimeFormat))
	header.Set("X-Oss-Hash-Crc64ecma", strconv.FormatUint(obj.CRC64, 10))
	header.Set("X-Oss-Object-Type", "Normal")
	header.Set("Accept-Ranges", "bytes")

	size := int64(len(obj.Data))
	if r.Method == http.MethodHead {
		header.Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusOK)
		return nil
	}

	standard := strings.EqualFold(r.Header.Get("X-Oss-Range-Behavior"), "standard")
	first, last, outcome := resolveRange(r.Header.Get("Range"), size, standard)
	switch outcome {
	case rangeUnsatisfiable:
		return &apiError{status: http.StatusRequestedRangeNotSatisfiable, code: "InvalidRange",
			message: fmt.Sprintf("The requested range cannot be satisfied for an object of %d bytes.", size), key: key}
	case rangeWhole:
		header.Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(obj.Data)
	case rangePartial:
		header.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, size))
		header.Set("Content-Length", strconv.FormatInt(last-first+1, 10))
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(obj.Data[first : last+1])
	}
	return nil
}

func (s *Server) deleteObject(w http.ResponseWriter, key string) *apiError {
	s.mu.Lock()
	s.counts.Delete++
	delete(s.objects, key)
	s.mu.Unlock()

	// OSS responds 204 whether or not the object existed.
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// writeError writes apiErr as OSS does: an XML body, or for HEAD, which
// has no body, the same XML base64-encoded in the x-oss-err header.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, requestID string, apiErr *apiError) {
	body, err := xml.Marshal(errorBody{
		Code:           apiErr.code,
		Message:        apiErr.message,
		RequestID:      requestID,
		HostID:         r.Host,
		Key:            apiErr.key,
		OSSAccessKeyID: apiErr.accessKeyID,
		StringToSign:   apiErr.stringToSign,
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	body = append([]byte(xml.Header), body...)

	if r.Method == http.MethodHead {
		w.Header().Set("X-Oss-Err", base64.StdEncoding.EncodeToString(body))
		w.WriteHeader(apiErr.status)
		return
	}
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(apiErr.status)
	_, _ = w.Write(body)
}

func (s *Server) nextRequestID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requestID++
	return fmt.Sprintf("FAKE%020X", s.requestID)
}
