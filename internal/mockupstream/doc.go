// Package mockupstream implements an OpenAI-compatible HTTP server with
// deterministic chat completions, pacing and fault injection. The gateway uses
// it as an upstream in development, tests and benchmarks.
//
// Routes:
//
//	GET  /v1/models            lists Options.Models
//	POST /v1/chat/completions  streaming (SSE) and non-streaming completions
//
// The reply text depends only on the request messages. It starts with
// "Mock reply to:" and at most eight words of the last user message, and
// continues with filler words that a PRNG seeded with an FNV-1a hash of the
// messages picks. A token is one word, and the reply text is every token
// followed by a space. Each streamed content chunk carries exactly one token.
// The default length is 20 to 40 tokens. The max_tokens or
// max_completion_tokens field caps it, with finish_reason "length" when the
// cap shortens the reply. The X-Mock-Tokens header sets it exactly, with
// finish_reason "stop". Usage counts words, so prompt_tokens is the number of
// words in all messages and completion_tokens the number of tokens sent.
//
// Request headers:
//
//	X-Mock-Tokens: N        send exactly N content tokens (0 to 1000000)
//	X-Mock-TPS: F           tokens per second, overriding Options.TokensPerSecond (0 disables pacing)
//	X-Mock-TTFT-Ms: N       milliseconds before the first content chunk, overriding Options.TimeToFirstToken
//	X-Mock-Fault: NAME      inject the fault NAME (see below)
//	X-Mock-Fault-Once: KEY  inject the fault only on the first request that carries KEY
//	X-Mock-Slow-Ms: N       milliseconds that slow-start waits (default 5000)
//	X-Mock-Cut-After: N     content tokens sent before cut, malformed and stall act (default 3)
//
// Faults, selected by the X-Mock-Fault header or by a model named "fault-NAME"
// (for example "fault-429" or "fault-cut-before-first"):
//
//	429               429 error of type "requests", code "rate_limit_exceeded", with Retry-After: 1
//	500               500 error of type "server_error"
//	401               401 error of type "invalid_request_error", code "invalid_api_key"
//	403               403 error of type "invalid_request_error", code "permission_denied"
//	400               400 error of type "invalid_request_error"
//	slow-start        wait X-Mock-Slow-Ms before sending headers, then reply normally
//	cut               send X-Mock-Cut-After tokens, then close the connection without the final chunk or [DONE]
//	cut-before-first  send the 200 headers, then close the connection before any chunk
//	malformed         send X-Mock-Cut-After tokens, then the event "data: {not json" and end the response
//	stall             send X-Mock-Cut-After tokens, then send nothing until the client disconnects
//
// A model named "fault-once-NAME" injects NAME only on the first request for
// that model that reaches the handler, so later requests succeed. With the
// X-Mock-Fault-Once header, the header value is the key instead of the model
// name. The X-Mock-Fault header takes precedence over a fault model name.
// Faults apply only to /v1/chat/completions. For a non-streaming request, cut
// sends half of the JSON body before closing the connection, malformed sends
// "{not json" as the body, and stall sends the headers and then waits.
//
// Every model name that is not a fault model is accepted, whether or not
// /v1/models lists it. Responses carry the request's model name in their
// "model" field, so a caller can tell which upstream model answered.
//
// API keys: a request whose "Authorization: Bearer <key>" key starts with
// "bad-" gets the 401 fault, and one whose key starts with "forbidden-"
// gets the 403 fault, on every path and whatever Options.APIKey is. This
// lets tests give one provider several keys and make only some fail. Other
// keys are checked against Options.APIKey when it is set.
package mockupstream
