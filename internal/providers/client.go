package providers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults for the zero fields of ClientOptions.
const (
	DefaultConnectTimeout   = 10 * time.Second
	DefaultFirstByteTimeout = 60 * time.Second
	DefaultIdleTimeout      = 60 * time.Second
	DefaultMaxErrorBody     = 64 << 10

	// Image generation upstreams send the response headers only once every
	// image is done, which can take minutes, so their first-byte timeout is
	// longer than the one of chat.
	DefaultImageFirstByteTimeout = 3 * time.Minute
	DefaultImageMaxResponseBytes = 64 << 20
	DefaultImageDownloadMaxBytes = 32 << 20
	DefaultImageDownloadTimeout  = 30 * time.Second
)

const (
	// maxResponseBody caps a non-streaming response body in bytes.
	maxResponseBody = 32 << 20

	// drainTimeout and maxDrainBytes bound the read of the body's end after
	// [DONE], which lets an HTTP/1.1 connection go back to the idle pool.
	drainTimeout  = 50 * time.Millisecond
	maxDrainBytes = 4 << 10

	redactedKey = "[REDACTED]"

	// maxToolCalls caps the index of a streamed tool call, so that a bad
	// index cannot make the client allocate a huge slice.
	maxToolCalls = 1024
)

// ClientOptions configures a Client. A zero field takes its default, and a
// negative duration disables that timeout.
type ClientOptions struct {
	// ConnectTimeout bounds the DNS lookup, the TCP connect and the TLS
	// handshake.
	ConnectTimeout time.Duration
	// FirstByteTimeout bounds the time from sending a request until the
	// response headers arrive. For a streaming call it also bounds the time
	// until the first SSE event.
	FirstByteTimeout time.Duration
	// IdleTimeout is the max gap between two SSE events, or between two reads
	// of a non-streaming response body. SSE comments do not count as events.
	IdleTimeout time.Duration
	// MaxErrorBody is the max number of bytes of an error response that
	// UpstreamError.Body keeps.
	MaxErrorBody int64

	// ImageFirstByteTimeout replaces FirstByteTimeout for GenerateImages.
	ImageFirstByteTimeout time.Duration
	// ImageMaxResponseBytes caps the body of an image generation response,
	// which carries the images in base64.
	ImageMaxResponseBytes int64
	// ImageDownloadMaxBytes caps each image that GenerateImages downloads
	// from a URL that the upstream returned.
	ImageDownloadMaxBytes int64
	// ImageDownloadTimeout bounds each such download, from sending the
	// request to the end of the body.
	ImageDownloadTimeout time.Duration
	// ImageDownloadAllowPrivate lets such downloads connect to any address.
	// When false, they may only connect to public unicast addresses or to
	// the host and port of the provider's base_url, so that an upstream's
	// response cannot make the gateway fetch from its internal network.
	ImageDownloadAllowPrivate bool
}

func (o ClientOptions) withDefaults() ClientOptions {
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.FirstByteTimeout == 0 {
		o.FirstByteTimeout = DefaultFirstByteTimeout
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxErrorBody <= 0 {
		o.MaxErrorBody = DefaultMaxErrorBody
	}
	if o.ImageFirstByteTimeout == 0 {
		o.ImageFirstByteTimeout = DefaultImageFirstByteTimeout
	}
	if o.ImageMaxResponseBytes <= 0 {
		o.ImageMaxResponseBytes = DefaultImageMaxResponseBytes
	}
	if o.ImageDownloadMaxBytes <= 0 {
		o.ImageDownloadMaxBytes = DefaultImageDownloadMaxBytes
	}
	if o.ImageDownloadTimeout == 0 {
		o.ImageDownloadTimeout = DefaultImageDownloadTimeout
	}
	return o
}

// Client calls OpenAI-compatible chat completion endpoints. It is safe for
// concurrent use, and all calls share one connection pool.
type Client struct {
	opts      ClientOptions
	transport *http.Transport
	http      *http.Client
	// guard checks the addresses of image downloads. It is nil when
	// ImageDownloadAllowPrivate is on.
	guard *addressGuard
	// forwardScanners recycles the event scanners of forwarded streams,
	// whose read buffers would otherwise be most of the bytes that a
	// proxied stream allocates.
	forwardScanners sync.Pool
}

// NewClient returns a Client whose transport keeps enough idle connections
// for a few hundred concurrent streams to one host.
func NewClient(opts ClientOptions) *Client {
	opts = opts.withDefaults()
	connectTimeout := max(opts.ConnectTimeout, 0)

	dialer := &net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         dialer.DialContext,
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: connectTimeout,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}

	httpClient := &http.Client{
		Transport: transport,
		// A redirect of a POST would turn it into a GET or resend the key to
		// another host, so the 3xx response is reported as an error instead.
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	client := &Client{opts: opts, transport: transport, http: httpClient}
	if !opts.ImageDownloadAllowPrivate {
		client.guard = newAddressGuard(transport, *dialer)
	}
	return client
}

// CloseIdleConnections closes the pooled connections that carry no request.
func (c *Client) CloseIdleConnections() {
	c.transport.CloseIdleConnections()
	if c.guard != nil {
		c.guard.transport.CloseIdleConnections()
	}
}

// StreamChat sends a streaming chat completion request to p and calls onDelta
// with each non-empty content delta of the first choice, in order.
//
// The result holds the concatenated text, the finish_reason and the usage if
// the upstream reported one. If onDelta returns an error, StreamChat aborts
// the request and returns that error. When ctx ends, it returns an error
// wrapping ctx.Err(). Every other failure is an *UpstreamError.
func (c *Client) StreamChat(ctx context.Context, p Provider, req ChatRequest, onDelta func(delta string) error) (*ChatResult, error) {
	body, err := encodeChatBody(req, true)
	if err != nil {
		return nil, err
	}

	call, err := c.send(ctx, p, body, true)
	if err != nil {
		return nil, err
	}
	defer call.close()

	// Some upstreams ignore "stream": true and send one JSON response.
	if isJSONResponse(call.resp) {
		result, err := call.readResult()
		if err != nil {
			return nil, err
		}
		if result.Text != "" {
			if err := onDelta(result.Text); err != nil {
				return nil, err
			}
		}
		return result, nil
	}

	return call.readStream(onDelta)
}

// Chat sends a non-streaming chat completion request to p. Errors are as for
// StreamChat.
func (c *Client) Chat(ctx context.Context, p Provider, req ChatRequest) (*ChatResult, error) {
	body, err := encodeChatBody(req, false)
	if err != nil {
		return nil, err
	}

	call, err := c.send(ctx, p, body, false)
	if err != nil {
		return nil, err
	}
	defer call.close()

	return call.readResult()
}

// call is one request in flight, from sending until its body is closed.
type call struct {
	client   *Client
	provider Provider
	// operation names the call in errors, such as "chat completion".
	operation string
	// ctx is the caller's context. reqCtx derives from it and also ends on
	// the provider's timeout_seconds and on the watchdog's timeouts.
	ctx        context.Context
	reqCtx     context.Context
	cancel     context.CancelCauseFunc
	cancelCall context.CancelFunc
	watchdog   *watchdog
	resp       *http.Response
}

// send posts body to the provider's chat completions endpoint and returns the
// call once a 2xx response has arrived. A non-2xx status returns a
// *ForwardError with its body read and capped.
func (c *Client) send(ctx context.Context, p Provider, body []byte, stream bool) (*call, error) {
	endpoint, err := chatCompletionsURL(p.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("provider %q: %w", p.ID, err)
	}

	cl, err := c.post(ctx, p, postSpec{
		operation:        "chat completion",
		endpoint:         endpoint,
		body:             body,
		setHeaders:       func(req *http.Request) { setHeaders(req, p, stream) },
		firstByteTimeout: c.opts.FirstByteTimeout,
	})
	if err != nil {
		return nil, err
	}

	if stream {
		// The first-byte deadline keeps running until the first SSE event.
		cl.watchdog.setCause(&timeoutError{limit: c.opts.FirstByteTimeout, waitingFor: "the first stream event"})
	}
	return cl, nil
}

// postSpec describes one POST to an upstream, or a request with another
// method when method is set.
type postSpec struct {
	method           string
	operation        string
	endpoint         string
	body             []byte
	setHeaders       func(*http.Request)
	firstByteTimeout time.Duration
}

// post sends spec with the provider's timeout_seconds and returns the call
// once a 2xx response has arrived. A non-2xx status returns a *ForwardError
// with its body read and capped.
func (c *Client) post(ctx context.Context, p Provider, spec postSpec) (*call, error) {
	method := spec.method
	if method == "" {
		method = http.MethodPost
	}
	cl := &call{client: c, provider: p, operation: spec.operation, ctx: ctx, cancelCall: func() {}}
	callCtx := ctx
	if p.TimeoutSeconds > 0 {
		limit := time.Duration(p.TimeoutSeconds) * time.Second
		cause := &timeoutError{limit: limit, waitingFor: "the provider call to finish (timeout_seconds)"}
		callCtx, cl.cancelCall = context.WithTimeoutCause(ctx, limit, cause)
	}
	cl.reqCtx, cl.cancel = context.WithCancelCause(callCtx)
	cl.watchdog = &watchdog{cancel: cl.cancel}
	cl.watchdog.arm(spec.firstByteTimeout, &timeoutError{limit: spec.firstByteTimeout, waitingFor: "response headers"})

	httpReq, err := http.NewRequestWithContext(cl.reqCtx, method, spec.endpoint, bytes.NewReader(spec.body))
	if err != nil {
		cl.close()
		return nil, fmt.Errorf("provider %q: build request: %w", p.ID, err)
	}
	spec.setHeaders(httpReq)

	resp, err := c.http.Do(httpReq)
	if err != nil {
		failure := cl.transportFailure(err)
		cl.close()
		return nil, failure
	}
	cl.resp = resp

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		header := resp.Header
		failure := cl.statusFailure()
		cl.close()
		var upstream *UpstreamError
		if errors.As(failure, &upstream) {
			return nil, &ForwardError{UpstreamError: upstream, Header: header}
		}
		return nil, failure
	}
	return cl, nil
}

func (cl *call) close() {
	cl.watchdog.stop()
	if cl.resp != nil {
		cl.resp.Body.Close()
	}
	cl.cancel(context.Canceled)
	cl.cancelCall()
}

func chatCompletionsURL(baseURL string) (string, error) {
	return endpointURL(baseURL, "chat/completions")
}

// endpointURL checks that baseURL is an http or https URL with a host and
// appends path to it.
func endpointURL(baseURL, path string) (string, error) {
	base, err := url.Parse(baseURL)
	if err != nil {
		return "", fmt.Errorf("invalid base_url: %w", err)
	}
	if base.Scheme != "http" && base.Scheme != "https" || base.Host == "" {
		return "", fmt.Errorf("invalid base_url %q: want an http or https URL with a host", base.Redacted())
	}
	return base.JoinPath(path).String(), nil
}

// setHeaders sets the request headers. Provider headers come last, so they
// may replace Authorization for upstreams that authenticate differently.
func setHeaders(req *http.Request, p Provider, stream bool) {
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "aihigress")
	if stream {
		req.Header.Set("Accept", "text/event-stream")
		// A compressing proxy may buffer the stream, which delays every token.
		req.Header.Set("Accept-Encoding", "identity")
	} else {
		req.Header.Set("Accept", "application/json")
	}

	if p.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+p.APIKey)
	}

	for name, value := range p.Headers {
		if strings.EqualFold(name, "Host") {
			req.Host = value
			continue
		}
		req.Header.Set(name, value)
	}
}

// encodeChatBody builds the JSON request body. Fields of req.Extra are copied
// first, so model, messages and stream always come from this package.
func encodeChatBody(req ChatRequest, stream bool) ([]byte, error) {
	fields := make(map[string]json.RawMessage, len(req.Extra)+4)
	for name, value := range req.Extra {
		fields[name] = value
	}

	var err error
	if fields["model"], err = json.Marshal(req.Model); err != nil {
		return nil, fmt.Errorf("encode model: %w", err)
	}
	if len(req.RawMessages) > 0 {
		if !json.Valid(req.RawMessages) {
			return nil, errors.New("encode messages: RawMessages is not valid JSON")
		}
		fields["messages"] = req.RawMessages
	} else {
		messages := req.Messages
		if messages == nil {
			messages = []Message{}
		}
		if fields["messages"], err = json.Marshal(messages); err != nil {
			return nil, fmt.Errorf("encode messages: %w", err)
		}
	}
	fields["stream"] = json.RawMessage(fmt.Sprint(stream))

	if stream {
		fields["stream_options"] = streamOptions(fields["stream_options"])
	} else {
		// OpenAI rejects stream_options unless stream is true.
		delete(fields, "stream_options")
	}

	body, err := json.Marshal(fields)
	if err != nil {
		return nil, fmt.Errorf("encode chat request: %w", err)
	}
	return body, nil
}

// streamOptions returns the caller's stream_options object with include_usage
// set to true, so that the final chunk reports token usage.
func streamOptions(extra json.RawMessage) json.RawMessage {
	options := map[string]json.RawMessage{}
	if len(extra) > 0 {
		if err := json.Unmarshal(extra, &options); err != nil || options == nil {
			options = map[string]json.RawMessage{}
		}
	}
	options["include_usage"] = json.RawMessage("true")

	encoded, err := json.Marshal(options)
	if err != nil {
		return json.RawMessage(`{"include_usage":true}`)
	}
	return encoded
}

func isJSONResponse(resp *http.Response) bool {
	mediaType, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return err == nil && mediaType == "application/json"
}

// streamChunk is one chat.completion.chunk event.
type streamChunk struct {
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Content   json.RawMessage `json:"content"`
			ToolCalls []toolCallDelta `json:"tool_calls"`
		} `json:"delta"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *Usage          `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// toolCallDelta is one piece of a streamed tool call. The first piece of a
// call carries its id, type and function name; later pieces with the same
// index append to its arguments.
type toolCallDelta struct {
	Index    int    `json:"index"`
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// addToolCallDeltas merges streamed tool call pieces into calls, which is
// ordered by the calls' index.
func addToolCallDeltas(calls []ToolCall, deltas []toolCallDelta) []ToolCall {
	for _, d := range deltas {
		if d.Index < 0 || d.Index >= maxToolCalls {
			continue
		}
		for len(calls) <= d.Index {
			calls = append(calls, ToolCall{})
		}
		call := &calls[d.Index]
		if d.ID != "" {
			call.ID = d.ID
		}
		if d.Type != "" {
			call.Type = d.Type
		}
		if d.Function.Name != "" {
			call.Function.Name = d.Function.Name
		}
		call.Function.Arguments += d.Function.Arguments
	}
	return calls
}

// readStream reads SSE events until [DONE] and delivers the content deltas.
func (cl *call) readStream(onDelta func(delta string) error) (*ChatResult, error) {
	reader := NewSSEReader(cl.resp.Body)
	idleCause := &timeoutError{limit: cl.client.opts.IdleTimeout, waitingFor: "the next stream event"}

	result := &ChatResult{}
	var text strings.Builder
	streamed, finished := false, false

	for {
		event, err := reader.Next()
		if err != nil {
			if failure := cl.streamFailure(err, streamed, finished); failure != nil {
				return nil, failure
			}
			result.Text = text.String()
			return result, nil
		}
		cl.watchdog.arm(cl.client.opts.IdleTimeout, idleCause)

		// Named events other than "error" (such as "ping") carry no chunk.
		if event.Name != "message" && event.Name != "error" {
			continue
		}

		data := strings.TrimSpace(event.Data)
		if data == "[DONE]" {
			cl.drainAfterDone()
			result.Text = text.String()
			return result, nil
		}

		var chunk streamChunk
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			return nil, cl.malformed(fmt.Sprintf("invalid JSON in stream chunk: %v", err), data, streamed)
		}
		if message, ok := errorMessage(chunk.Error); ok || event.Name == "error" {
			if !ok {
				message = "upstream sent an error event"
			}
			return nil, &UpstreamError{
				Kind:     ErrorServer,
				Message:  cl.redact(message),
				Body:     cl.capBody([]byte(data)),
				Streamed: streamed,
			}
		}

		for _, choice := range chunk.Choices {
			if choice.Index == 0 {
				content, err := decodeContent(choice.Delta.Content)
				if err != nil {
					return nil, cl.malformed(fmt.Sprintf("invalid delta content in stream chunk: %v", err), data, streamed)
				}
				if content != "" {
					text.WriteString(content)
					streamed = true
					if err := onDelta(content); err != nil {
						return nil, err
					}
				}
				result.ToolCalls = addToolCallDeltas(result.ToolCalls, choice.Delta.ToolCalls)
			}

			if choice.FinishReason != "" {
				finished = true
				if choice.Index == 0 || result.FinishReason == "" {
					result.FinishReason = choice.FinishReason
				}
			}
		}

		if chunk.Usage != nil {
			result.Usage = chunk.Usage
		}
	}
}

// streamFailure returns the error for a stream that ended with err before
// [DONE], or nil when the stream counts as complete because a finish_reason
// had arrived.
func (cl *call) streamFailure(err error, streamed, finished bool) error {
	if ctxErr := cl.ctx.Err(); ctxErr != nil {
		return cl.canceled(ctxErr)
	}
	if finished {
		return nil
	}
	if timeout := cl.timeout(streamed); timeout != nil {
		return timeout
	}
	if errors.Is(err, ErrEventTooLarge) {
		return &UpstreamError{Kind: ErrorMalformed, Message: err.Error(), Streamed: streamed}
	}

	message := "stream ended before [DONE] or a finish_reason"
	if !errors.Is(err, io.EOF) {
		message += ": " + err.Error()
	}
	return &UpstreamError{Kind: ErrorStreamCut, Message: message, Streamed: streamed}
}

// drainAfterDone reads the rest of the body for a short time, because Go's
// HTTP/1.1 transport reuses a connection only when its body was read to EOF.
func (cl *call) drainAfterDone() {
	cl.watchdog.arm(drainTimeout, &timeoutError{limit: drainTimeout, waitingFor: "the end of the body"})
	io.Copy(io.Discard, io.LimitReader(cl.resp.Body, maxDrainBytes))
}

// chatResponse is a non-streaming chat.completion object.
type chatResponse struct {
	Choices []struct {
		Index   int `json:"index"`
		Message struct {
			Content   json.RawMessage `json:"content"`
			ToolCalls []ToolCall      `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *Usage          `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// readResult reads and decodes a non-streaming response body.
func (cl *call) readResult() (*ChatResult, error) {
	idleCause := &timeoutError{limit: cl.client.opts.IdleTimeout, waitingFor: "more of the response body"}
	cl.watchdog.arm(cl.client.opts.IdleTimeout, idleCause)
	body := &watchedReader{reader: cl.resp.Body, watchdog: cl.watchdog, limit: cl.client.opts.IdleTimeout, cause: idleCause}

	data, err := io.ReadAll(io.LimitReader(body, maxResponseBody+1))
	if err != nil {
		if ctxErr := cl.ctx.Err(); ctxErr != nil {
			return nil, cl.canceled(ctxErr)
		}
		if timeout := cl.timeout(false); timeout != nil {
			return nil, timeout
		}
		return nil, &UpstreamError{Kind: ErrorStreamCut, Message: "read response body: " + err.Error()}
	}
	if len(data) > maxResponseBody {
		return nil, cl.malformed(fmt.Sprintf("response body exceeds %d bytes", maxResponseBody), "", false)
	}

	var response chatResponse
	if err := json.Unmarshal(data, &response); err != nil {
		return nil, cl.malformed(fmt.Sprintf("invalid JSON in response: %v", err), string(data), false)
	}
	if message, ok := errorMessage(response.Error); ok {
		return nil, &UpstreamError{Kind: ErrorServer, Message: cl.redact(message), Body: cl.capBody(data)}
	}

	result := &ChatResult{Usage: response.Usage}
	for _, choice := range response.Choices {
		if choice.Index != 0 {
			continue
		}
		text, err := decodeContent(choice.Message.Content)
		if err != nil {
			return nil, cl.malformed(fmt.Sprintf("invalid message content in response: %v", err), string(data), false)
		}
		result.Text = text
		result.FinishReason = choice.FinishReason
		result.ToolCalls = choice.Message.ToolCalls
		return result, nil
	}
	return nil, cl.malformed("response has no choice with index 0", string(data), false)
}

// decodeContent returns the text of a message content, which is a string,
// null or an array of content parts.
func decodeContent(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}

	var text string
	if raw[0] == '"' {
		err := json.Unmarshal(raw, &text)
		return text, err
	}

	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", err
	}
	var joined strings.Builder
	for _, part := range parts {
		if part.Type == "" || part.Type == "text" {
			joined.WriteString(part.Text)
		}
	}
	return joined.String(), nil
}

// transportFailure classifies an error from http.Client.Do.
func (cl *call) transportFailure(err error) error {
	if ctxErr := cl.ctx.Err(); ctxErr != nil {
		return cl.canceled(ctxErr)
	}
	if timeout := cl.timeout(false); timeout != nil {
		return timeout
	}

	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return &UpstreamError{Kind: ErrorConnect, Message: "DNS lookup failed: " + err.Error()}
	}

	// No read or write deadlines are set on connections, so a net timeout
	// here comes from the dialer or the TLS handshake.
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		message := fmt.Sprintf("connect timed out after %s: %v", cl.client.opts.ConnectTimeout, err)
		return &UpstreamError{Kind: ErrorTimeout, Message: message}
	}

	return &UpstreamError{Kind: ErrorConnect, Message: err.Error()}
}

// statusFailure reads the body of a non-2xx response and classifies it.
func (cl *call) statusFailure() error {
	code := cl.resp.StatusCode
	idleCause := &timeoutError{limit: cl.client.opts.IdleTimeout, waitingFor: "more of the error body"}
	cl.watchdog.arm(cl.client.opts.IdleTimeout, idleCause)
	body := &watchedReader{reader: cl.resp.Body, watchdog: cl.watchdog, limit: cl.client.opts.IdleTimeout, cause: idleCause}

	// A failed read keeps the bytes read so far, because the status code
	// already classifies the failure.
	data, _ := io.ReadAll(io.LimitReader(body, cl.client.opts.MaxErrorBody))
	if ctxErr := cl.ctx.Err(); ctxErr != nil {
		return cl.canceled(ctxErr)
	}

	failure := &UpstreamError{
		StatusCode: code,
		Body:       cl.capBody(data),
		RetryAfter: parseRetryAfter(cl.resp.Header.Get("Retry-After"), time.Now()),
	}
	switch {
	case code == http.StatusTooManyRequests:
		failure.Kind = ErrorRateLimited
	case code >= 500:
		failure.Kind = ErrorServer
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		failure.Kind = ErrorAuth
	default:
		failure.Kind = ErrorBadRequest
	}

	message, ok := errorMessage(extractErrorField(data))
	switch {
	case ok:
		failure.Message = cl.redact(message)
	case code >= 300 && code < 400:
		failure.Message = fmt.Sprintf("unexpected redirect to %q; check the provider's base_url", cl.resp.Header.Get("Location"))
	case http.StatusText(code) != "":
		failure.Message = http.StatusText(code)
	default:
		failure.Message = "unexpected status"
	}
	return failure
}

// parseRetryAfter reads a Retry-After header value, which RFC 9110 allows
// as delay-seconds or as an HTTP-date. It returns 0 for an empty, invalid or
// past value.
func parseRetryAfter(value string, now time.Time) time.Duration {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0
	}
	if seconds, err := strconv.ParseInt(value, 10, 64); err == nil {
		// The cap keeps the multiplication below from overflowing.
		const maxSeconds = int64(math.MaxInt64 / time.Second)
		if seconds <= 0 {
			return 0
		}
		return time.Duration(min(seconds, maxSeconds)) * time.Second
	}
	if date, err := http.ParseTime(value); err == nil && date.After(now) {
		return date.Sub(now)
	}
	return 0
}

// extractErrorField returns the "error" member of an OpenAI error body, or
// the whole body when it is a JSON object with a top-level "message".
func extractErrorField(body []byte) json.RawMessage {
	var envelope struct {
		Error   json.RawMessage `json:"error"`
		Message json.RawMessage `json:"message"`
	}
	if err := json.Unmarshal(body, &envelope); err != nil {
		return nil
	}
	if len(envelope.Error) > 0 && string(envelope.Error) != "null" {
		return envelope.Error
	}
	if len(envelope.Message) > 0 {
		return body
	}
	return nil
}

// errorMessage returns the message of an error value, which is either a
// string or an object with a "message" string. ok is false when raw is
// absent or null.
func errorMessage(raw json.RawMessage) (message string, ok bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", false
	}

	if err := json.Unmarshal(raw, &message); err == nil {
		return message, true
	}

	var object struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal(raw, &object); err == nil && object.Message != "" {
		return object.Message, true
	}
	return string(raw), true
}

// timeout returns an ErrorTimeout failure when one of this package's
// deadlines ended the request, and nil otherwise.
func (cl *call) timeout(streamed bool) error {
	var cause *timeoutError
	if errors.As(context.Cause(cl.reqCtx), &cause) {
		return &UpstreamError{Kind: ErrorTimeout, Message: cause.Error(), Streamed: streamed}
	}
	return nil
}

func (cl *call) canceled(ctxErr error) error {
	return fmt.Errorf("%s on provider %q: %w", cl.operation, cl.provider.ID, ctxErr)
}

func (cl *call) malformed(message, body string, streamed bool) error {
	return &UpstreamError{
		Kind:     ErrorMalformed,
		Message:  cl.redact(message),
		Body:     cl.capBody([]byte(body)),
		Streamed: streamed,
	}
}

// capBody returns a copy of body cut to MaxErrorBody bytes, with the API key
// replaced.
func (cl *call) capBody(body []byte) []byte {
	if len(body) == 0 {
		return nil
	}
	body = body[:min(int64(len(body)), cl.client.opts.MaxErrorBody)]
	if cl.provider.APIKey == "" {
		return bytes.Clone(body)
	}
	return bytes.ReplaceAll(body, []byte(cl.provider.APIKey), []byte(redactedKey))
}

// redact replaces the API key in text, because some upstreams echo a
// rejected key in their error message.
func (cl *call) redact(text string) string {
	if cl.provider.APIKey == "" {
		return text
	}
	return strings.ReplaceAll(text, cl.provider.APIKey, redactedKey)
}

// timeoutError is the cancellation cause for a deadline of this package.
type timeoutError struct {
	limit      time.Duration
	waitingFor string
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("timed out after %s waiting for %s", e.limit, e.waitingFor)
}

// watchdog cancels a request when its current deadline passes before the
// deadline is moved again.
type watchdog struct {
	cancel context.CancelCauseFunc

	mu    sync.Mutex
	timer *time.Timer
	cause error
}

// arm sets the deadline to limit from now, or removes it when limit <= 0.
func (w *watchdog) arm(limit time.Duration, cause error) {
	w.mu.Lock()
	defer w.mu.Unlock()

	w.cause = cause
	switch {
	case limit <= 0:
		if w.timer != nil {
			w.timer.Stop()
		}
	case w.timer == nil:
		w.timer = time.AfterFunc(limit, w.fire)
	default:
		w.timer.Reset(limit)
	}
}

// setCause changes the reported cause and keeps the deadline.
func (w *watchdog) setCause(cause error) {
	w.mu.Lock()
	w.cause = cause
	w.mu.Unlock()
}

func (w *watchdog) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()

	if w.timer != nil {
		w.timer.Stop()
	}
}

func (w *watchdog) fire() {
	w.mu.Lock()
	cause := w.cause
	w.mu.Unlock()

	w.cancel(cause)
}

// watchedReader moves the watchdog's deadline after every read that returns
// data.
type watchedReader struct {
	reader   io.Reader
	watchdog *watchdog
	limit    time.Duration
	cause    error
}

func (r *watchedReader) Read(p []byte) (int, error) {
	n, err := r.reader.Read(p)
	if n > 0 {
		r.watchdog.arm(r.limit, r.cause)
	}
	return n, err
}
