package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/aihigress/aihigress/internal/apikeys"
	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/router"
)

// Error codes of the synchronous gateway that the request log also uses.
const (
	codeUpstreamError       = "upstream_error"
	codeUpstreamRateLimited = "upstream_rate_limited"
	codeClientClosed        = "client_closed_request"
)

// statusClientClosed is the status logged for a request whose client went
// away before the response; nginx uses the same number.
const statusClientClosed = 499

// defaultRetryAfter is the Retry-After sent when no upstream named a delay.
const defaultRetryAfter = time.Second

// attemptFailure is an upstream attempt that failed before anything was sent
// to the client, so the next candidate may be tried.
type attemptFailure struct {
	err error
	// rateLimited is set for a 429 and for a candidate whose keys are all
	// cooling down.
	rateLimited bool
	retryAfter  time.Duration
}

// describe names the failure for clients without upstream details such as
// addresses, which stay in the server log.
func (f *attemptFailure) describe() string {
	var upstream *providers.UpstreamError
	switch {
	case errors.As(f.err, &upstream) && upstream.StatusCode != 0:
		return fmt.Sprintf("%s (HTTP %d)", upstream.Kind, upstream.StatusCode)
	case errors.As(f.err, &upstream):
		return string(upstream.Kind)
	case errors.Is(f.err, router.ErrNoKey):
		return "no usable provider key"
	default:
		return "request failed"
	}
}

// proxyChatCompletion sends the request to the candidates that the router
// plans, in order, until one succeeds, and relays its response, streamed or
// not. Failover happens only before the first byte reaches the client.
func (s *Server) proxyChatCompletion(c *gin.Context, key *apikeys.Principal, req chatCompletionRequest) {
	call := gatewayCallOf(c)
	ctx := c.Request.Context()

	candidates, err := s.Router.Plan(ctx, req.Model, providers.CapabilityChat)
	if err != nil {
		s.planFailed(c, req.Model, err)
		return
	}
	if len(candidates) == 0 {
		s.noCandidates(c, req.Model)
		return
	}

	clientUsage := req.Stream && asksForUsage(req.Fields["stream_options"])
	var last *attemptFailure
	for _, candidate := range candidates {
		if ctx.Err() != nil {
			clientClosed(c, call)
			return
		}

		body, err := providers.EncodeForwardBody(req.Fields, candidate.Model, req.Stream)
		if err != nil {
			s.internalError(c, "encode upstream request failed", err)
			return
		}

		pick, err := s.Router.Acquire(ctx, candidate)
		if err != nil {
			s.Logger.Warn("upstream candidate skipped: the router could not acquire it", "request_id", c.GetString("request_id"),
				"model", req.Model, "provider_id", candidate.ProviderID, "upstream_model", candidate.Model, "error", err)
			retryAfter, coolingDown := cooldownOf(err)
			last = &attemptFailure{err: err, rateLimited: coolingDown, retryAfter: retryAfter}
			continue
		}
		call.providerID, call.upstreamModel = pick.Candidate.ProviderID, pick.Candidate.Model

		failure := s.attemptChat(c, call, pick, body, req.Stream, clientUsage)
		if failure == nil {
			return
		}
		s.Logger.Warn("upstream attempt failed; trying the next candidate", "request_id", c.GetString("request_id"),
			"model", req.Model, "provider_id", pick.Candidate.ProviderID, "upstream_model", pick.Candidate.Model,
			"provider_key_id", pick.KeyID, "error", failure.err)
		last = failure
	}
	s.allAttemptsFailed(c, call, req.Model, len(candidates), last)
}

// attemptChat makes one upstream attempt with pick. It returns nil when the
// request is finished, with a relayed response or an error response. It
// returns a failure when nothing was sent and the next candidate may be
// tried. It reports the outcome to the router in both cases.
func (s *Server) attemptChat(c *gin.Context, call *gatewayCall, pick router.Pick, body []byte, stream, clientUsage bool) *attemptFailure {
	ctx := c.Request.Context()
	started := time.Now()
	s.beginAttempt(call, pick, started)
	forwarded, err := s.Upstream.Forward(ctx, pick.Provider, body, stream)
	if err != nil {
		call.addUpstream(started)
		return s.failedAttempt(c, call, pick, err)
	}
	defer forwarded.Close()

	if stream && forwarded.IsEventStream() {
		return s.relayStream(c, call, pick, forwarded, started, clientUsage)
	}
	if call.streamOpen {
		// The stream's headers are out, so a JSON response cannot be relayed.
		call.addUpstream(started)
		failure := &providers.UpstreamError{Kind: providers.ErrorMalformed, StatusCode: forwarded.StatusCode, Message: "a streaming request got a response that is not an event stream"}
		return s.failedAttempt(c, call, pick, failure)
	}
	// NOTE: an upstream that returns one JSON body for a streaming request
	// gets that body relayed as it is, which streaming clients cannot read.
	return s.relayBody(c, call, pick, forwarded, started)
}

// failedAttempt handles an error of an attempt that sent nothing to the
// client. An upstream 4xx other than 401, 403 and 429 goes to the client as
// it came, and a client that went away ends the request. Both return nil.
// Every other error returns a failure for the next candidate.
func (s *Server) failedAttempt(c *gin.Context, call *gatewayCall, pick router.Pick, err error) *attemptFailure {
	s.report(c, pick, err)

	if c.Request.Context().Err() != nil {
		clientClosed(c, call)
		return nil
	}

	var forwardErr *providers.ForwardError
	if errors.As(err, &forwardErr) {
		status := forwardErr.StatusCode
		if forwardErr.Kind == providers.ErrorBadRequest && status >= 400 && status < 500 {
			call.errorCode = string(forwardErr.Kind)
			if call.streamOpen {
				streamError(c, call.errorCode, fmt.Sprintf("the upstream rejected the request with HTTP %d: %s", status, forwardErr.Message))
				return nil
			}
			contentType := forwardErr.Header.Get("Content-Type")
			if contentType == "" {
				contentType = "application/json"
			}
			c.Data(status, contentType, forwardErr.Body)
			c.Abort()
			return nil
		}
		return &attemptFailure{
			err:         err,
			rateLimited: forwardErr.Kind == providers.ErrorRateLimited,
			retryAfter:  providers.ParseRetryAfter(forwardErr.Header.Get("Retry-After"), time.Now()),
		}
	}
	return &attemptFailure{err: err}
}

// relayBody reads a whole response and relays it. A body that is not JSON,
// or that carries an error object, is a failure before the first byte.
func (s *Server) relayBody(c *gin.Context, call *gatewayCall, pick router.Pick, forwarded *providers.Forwarded, started time.Time) *attemptFailure {
	data, err := forwarded.ReadBody()
	call.addUpstream(started)
	if err != nil {
		return s.failedAttempt(c, call, pick, err)
	}

	var parsed struct {
		Usage *providers.Usage `json:"usage"`
		Error json.RawMessage  `json:"error"`
	}
	if err := json.Unmarshal(data, &parsed); err != nil {
		failure := &providers.UpstreamError{Kind: providers.ErrorMalformed, Message: "response body is not JSON: " + err.Error()}
		return s.failedAttempt(c, call, pick, failure)
	}
	if len(parsed.Error) > 0 && string(parsed.Error) != "null" {
		failure := &providers.UpstreamError{Kind: providers.ErrorServer, StatusCode: forwarded.StatusCode, Message: "2xx response with an error object"}
		return s.failedAttempt(c, call, pick, failure)
	}

	s.report(c, pick, nil)
	if parsed.Usage != nil {
		call.usage.prompt, call.usage.completion = parsed.Usage.PromptTokens, parsed.Usage.CompletionTokens
	}
	contentType := forwarded.Header.Get("Content-Type")
	if contentType == "" {
		contentType = "application/json"
	}
	c.Data(forwarded.StatusCode, contentType, data)
	return nil
}

// relayStream sends the response headers of a stream unless an earlier
// attempt sent them, waits for the first event and relays every event as it
// arrives. A stream that ends or fails before its first event is a failure
// for the next candidate. After the first event, a failure ends the stream
// with an error event.
func (s *Server) relayStream(c *gin.Context, call *gatewayCall, pick router.Pick, forwarded *providers.Forwarded,
	started time.Time, clientUsage bool,
) *attemptFailure {
	// NOTE: with the three targets interleaved in each window,
	// bench/gatewaybench measures the gateway's first-chunk p50 at 1.10
	// to 1.11 times what a bare ReverseProxy adds, and through [DONE] at
	// 1.28 to 1.35 times. What makes the later events slower than the
	// proxy's is not measured.
	call.addUpstream(started)

	// The headers go out before the first event arrives, so that the client
	// has them when the first event does. Failover is still possible until
	// the first event, because every candidate returns a 200 event stream.
	if !call.streamOpen {
		header := c.Writer.Header()
		header.Set("Content-Type", "text/event-stream")
		header.Set("Cache-Control", "no-cache")
		header.Set("X-Accel-Buffering", "no")
		c.Status(http.StatusOK)
		c.Writer.Flush()
		call.streamOpen = true
	}

	relay := &sseRelay{writer: c.Writer, clientUsage: clientUsage, pending: make([]byte, 0, 4096)}
	forwarded.BeforeRead(func() { _ = relay.flush() })
	waitStarted := time.Now()
	first, err := firstDataEvent(forwarded)
	call.addUpstream(waitStarted)
	if errors.Is(err, io.EOF) || err == nil && isDone(first.Data) {
		err = &providers.UpstreamError{Kind: providers.ErrorStreamCut, Message: "stream ended before its first chunk"}
	}
	if err != nil {
		return s.failedAttempt(c, call, pick, err)
	}
	info := providers.InspectChunk(first.Data)
	if info.Error {
		failure := &providers.UpstreamError{Kind: providers.ErrorServer, Message: "first stream event is an error", Body: bytes.Clone(first.Data)}
		return s.failedAttempt(c, call, pick, failure)
	}
	call.metrics.firstChunk = time.Now()

	// The first chunk leaves at once, even when later events were read with
	// it: time to first token is what streaming clients wait for.
	relay.forward(first, info, call)
	streamErr := relay.flush()
	if streamErr == nil {
		streamErr = relay.copyRest(forwarded, call)
	}

	switch {
	case streamErr == nil:
		s.report(c, pick, nil)
	case c.Request.Context().Err() != nil || errors.Is(streamErr, errClientWrite):
		// The client went away; the upstream did nothing wrong.
		s.report(c, pick, nil)
		call.errorCode = codeClientClosed
	default:
		s.report(c, pick, streamErr)
		call.errorCode = codeUpstreamError
		var upstream *providers.UpstreamError
		if errors.As(streamErr, &upstream) {
			call.errorCode = string(upstream.Kind)
		}
		s.Logger.Warn("upstream stream failed after the first chunk", "request_id", c.GetString("request_id"),
			"model", call.logicalModel, "provider_id", pick.Candidate.ProviderID, "upstream_model", pick.Candidate.Model, "error", streamErr)
		relay.writeError(call.errorCode)
	}
	// A failed write here is ignored, because the stream ends either way.
	_ = relay.flush()
	return nil
}

// firstDataEvent returns the first event with data, skipping comments and
// other blocks that a client would not dispatch. They are not relayed, so
// that the client's stream starts with the chunk of the candidate that
// responds.
func firstDataEvent(forwarded *providers.Forwarded) (providers.RawEvent, error) {
	for {
		event, err := forwarded.NextEvent()
		if err != nil || event.HasData {
			return event, err
		}
	}
}

// report passes the outcome of an attempt to the router. It uses a context
// that outlives the client, so that a disconnect does not lose the report.
func (s *Server) report(c *gin.Context, pick router.Pick, err error) {
	s.Router.Report(context.WithoutCancel(c.Request.Context()), pick, err)
	s.observeAttempt(c, pick, err)
}

// planFailed responds to a request whose model the router cannot plan.
func (s *Server) planFailed(c *gin.Context, model string, err error) {
	if errors.Is(err, providers.ErrUnknownModel) {
		abortParamError(c, http.StatusNotFound, "model_not_found", "model",
			fmt.Sprintf("the model %q does not exist; GET /v1/models lists the models this key may use", model))
		return
	}
	if errors.Is(err, providers.ErrCapability) {
		abortParamError(c, http.StatusBadRequest, "model_does_not_support_chat", "model",
			fmt.Sprintf("the model %q does not support chat completions", model))
		return
	}
	if retryAfter, coolingDown := cooldownOf(err); coolingDown {
		rateLimited(c, gatewayCallOf(c), retryAfter, fmt.Sprintf("every upstream candidate of model %q is cooling down", model))
		return
	}
	s.unavailable(c, "plan upstream candidates failed", err)
}

// noCandidates responds to a request whose plan is empty because every provider
// of the model is disabled. Cooldowns come from the router as an error.
func (s *Server) noCandidates(c *gin.Context, model string) {
	abortParamError(c, http.StatusServiceUnavailable, "model_unavailable", "model",
		fmt.Sprintf("no enabled provider serves the model %q", model))
}

// allAttemptsFailed responds to a request whose candidates all failed, with
// 429 when the last failure was a rate limit or a cooldown and 502 otherwise.
func (s *Server) allAttemptsFailed(c *gin.Context, call *gatewayCall, model string, candidates int, last *attemptFailure) {
	if call.streamOpen {
		call.errorCode = codeUpstreamError
		if last.rateLimited {
			call.errorCode = codeUpstreamRateLimited
		}
		streamError(c, call.errorCode, fmt.Sprintf("all %d upstream candidates of model %q failed; the last: %s. The request ID is in the X-Request-Id header",
			candidates, model, last.describe()))
		return
	}
	if last.rateLimited {
		rateLimited(c, call, last.retryAfter,
			fmt.Sprintf("the upstreams of model %q are rate limited (%d candidates tried, the last: %s)", model, candidates, last.describe()))
		return
	}
	call.errorCode = codeUpstreamError
	abortError(c, http.StatusBadGateway, codeUpstreamError,
		fmt.Sprintf("all %d upstream candidates of model %q failed; the last: %s. The request ID is in the X-Request-Id header", candidates, model, last.describe()))
}

// rateLimited responds 429 with a Retry-After of at least one second.
func rateLimited(c *gin.Context, call *gatewayCall, retryAfter time.Duration, message string) {
	if retryAfter <= 0 {
		retryAfter = defaultRetryAfter
	}
	seconds := int(math.Ceil(retryAfter.Seconds()))
	c.Header("Retry-After", strconv.Itoa(seconds))
	call.errorCode = codeUpstreamRateLimited
	abortError(c, http.StatusTooManyRequests, codeUpstreamRateLimited, fmt.Sprintf("%s; retry after %d s", message, seconds))
}

// clientClosed ends a request whose client went away. The status only
// reaches the request log.
func clientClosed(c *gin.Context, call *gatewayCall) {
	call.errorCode = codeClientClosed
	if call.streamOpen {
		c.Abort()
		return
	}
	abortError(c, statusClientClosed, codeClientClosed, "the client closed the request")
}

// streamError ends a stream whose headers are out with an OpenAI-shape
// error event and [DONE]. A failed write is ignored, because the stream ends
// either way.
func streamError(c *gin.Context, code, message string) {
	body, _ := json.Marshal(errorBody{Error: errorDetail{Message: message, Type: "server_error", Code: code}})
	relay := &sseRelay{writer: c.Writer}
	relay.write("message", string(body))
	relay.write("message", doneData)
	_ = relay.flush()
	c.Abort()
}

// cooldownOf reports whether an error in err's chain reports a cooldown
// through a RetryAfter method, and returns the delay. The router's errors
// use either method form.
func cooldownOf(err error) (time.Duration, bool) {
	var relative interface{ RetryAfter() time.Duration }
	if errors.As(err, &relative) {
		return relative.RetryAfter(), true
	}
	var absolute interface {
		RetryAfter(now time.Time) time.Duration
	}
	if errors.As(err, &absolute) {
		return absolute.RetryAfter(time.Now()), true
	}
	return 0, false
}

// asksForUsage reports whether a client's stream_options has
// include_usage set to true.
func asksForUsage(raw json.RawMessage) bool {
	if len(raw) == 0 {
		return false
	}
	var options struct {
		IncludeUsage bool `json:"include_usage"`
	}
	return json.Unmarshal(raw, &options) == nil && options.IncludeUsage
}
