package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/aihigress/aihigress/models"
)

// OverheadHeader is the response header with the time, in milliseconds, that
// a gateway request spent in the gateway itself before its response headers
// were written, upstream waits excluded.
const OverheadHeader = "X-Aihigress-Overhead-Ms"

// gatewayCallKey is the gin context key of the request's *gatewayCall.
const gatewayCallKey = "gateway_call"

// maxErrorCapture is how many bytes of an error response body the request
// log reads its error code from.
const maxErrorCapture = 2048

// gatewayCall is the state of one gateway request that the handlers fill in
// and observeGateway turns into the overhead header and a request log row.
// Only the request's goroutine uses it.
type gatewayCall struct {
	start time.Time
	// upstream is the time spent waiting on upstreams so far, summed over
	// attempts.
	upstream time.Duration

	logicalModel  string
	providerID    string
	upstreamModel string
	stream        bool
	usage         struct{ prompt, completion int }
	// errorCode overrides the code read from an error response body, and
	// is the only code for failures after a 2xx status was sent.
	errorCode string
	// streamOpen is set once the headers of a streaming response were sent,
	// after which every outcome must be written as stream events.
	streamOpen bool
	// metrics is the current attempt's state for the provider metrics.
	metrics attemptMetrics
}

// gatewayCallOf returns the request's gateway state. Outside observeGateway
// it returns a fresh value that nothing reads, so handlers need no nil check.
func gatewayCallOf(c *gin.Context) *gatewayCall {
	if value, ok := c.Get(gatewayCallKey); ok {
		if call, ok := value.(*gatewayCall); ok {
			return call
		}
	}
	call := &gatewayCall{start: time.Now()}
	c.Set(gatewayCallKey, call)
	return call
}

// addUpstream adds the time since since to the upstream time.
func (g *gatewayCall) addUpstream(since time.Time) {
	g.upstream += time.Since(since)
}

// overhead returns the time spent in the gateway so far, upstream waits
// excluded.
func (g *gatewayCall) overhead() time.Duration {
	return max(time.Since(g.start)-g.upstream, 0)
}

// observeGateway measures a gateway request: it sets the overhead header when
// the response headers are written, and records a request log row when the
// handlers return. It runs before authentication, so that rejected requests
// get the header and a row too.
func (s *Server) observeGateway(c *gin.Context) {
	call := &gatewayCall{start: time.Now()}
	c.Set(gatewayCallKey, call)
	writer := &overheadWriter{ResponseWriter: c.Writer, call: call}
	c.Writer = writer

	c.Next()

	// A handler that set a status without a body has not written the
	// headers yet, and gin would write them past this writer.
	writer.WriteHeaderNow()
	c.Writer = writer.ResponseWriter

	if s.RequestLog == nil {
		return
	}
	s.RequestLog.Record(s.requestLogRow(c, call, writer))
}

// requestLogRow builds the request log row of a finished gateway request.
func (s *Server) requestLogRow(c *gin.Context, call *gatewayCall, writer *overheadWriter) models.RequestLog {
	row := models.RequestLog{
		CreatedAt:        call.start.UTC(),
		RequestID:        c.GetString("request_id"),
		Method:           c.Request.Method,
		Path:             c.Request.URL.Path,
		LogicalModel:     call.logicalModel,
		ProviderID:       call.providerID,
		UpstreamModel:    call.upstreamModel,
		StatusCode:       writer.Status(),
		LatencyMS:        milliseconds(time.Since(call.start)),
		UpstreamMS:       milliseconds(call.upstream),
		PromptTokens:     call.usage.prompt,
		CompletionTokens: call.usage.completion,
		Stream:           call.stream,
		ErrorCode:        call.errorCode,
	}
	if key := currentAPIKey(c); key != nil {
		row.APIKeyID = &key.KeyID
	}
	if userID := c.GetString("user_id"); userID != "" {
		row.UserID = &userID
	}
	if row.ErrorCode == "" && row.StatusCode >= 400 {
		row.ErrorCode = errorCodeOf(writer.errorBody)
	}
	return row
}

// errorCodeOf returns error.code of an OpenAI-shape error body, or "" when
// body has none.
func errorCodeOf(body []byte) string {
	var parsed struct {
		Error struct {
			Code json.RawMessage `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &parsed) != nil {
		return ""
	}
	var code string
	if json.Unmarshal(parsed.Error.Code, &code) == nil {
		return code
	}
	// Some upstreams send a numeric code.
	if len(parsed.Error.Code) > 0 && string(parsed.Error.Code) != "null" {
		return string(parsed.Error.Code)
	}
	return ""
}

func milliseconds(d time.Duration) float64 {
	return float64(d) / float64(time.Millisecond)
}

// overheadWriter sets the overhead header just before the response headers
// are written, and keeps the start of an error response body for the
// request log.
type overheadWriter struct {
	gin.ResponseWriter
	call      *gatewayCall
	stamped   bool
	errorBody []byte
}

func (w *overheadWriter) stamp() {
	if w.stamped || w.ResponseWriter.Written() {
		return
	}
	w.stamped = true
	value := strconv.AppendFloat(make([]byte, 0, 16), milliseconds(w.call.overhead()), 'f', 3, 64)
	w.Header().Set(OverheadHeader, string(value))
}

func (w *overheadWriter) capture(data []byte) {
	if w.Status() < 400 || len(w.errorBody) >= maxErrorCapture {
		return
	}
	w.errorBody = append(w.errorBody, data[:min(len(data), maxErrorCapture-len(w.errorBody))]...)
}

func (w *overheadWriter) WriteHeaderNow() {
	w.stamp()
	w.ResponseWriter.WriteHeaderNow()
}

func (w *overheadWriter) Write(data []byte) (int, error) {
	w.stamp()
	w.capture(data)
	return w.ResponseWriter.Write(data)
}

func (w *overheadWriter) WriteString(data string) (int, error) {
	w.stamp()
	if w.Status() >= 400 {
		w.capture([]byte(data))
	}
	return w.ResponseWriter.WriteString(data)
}

func (w *overheadWriter) Flush() {
	w.stamp()
	w.ResponseWriter.Flush()
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *overheadWriter) Unwrap() http.ResponseWriter {
	return w.ResponseWriter
}
