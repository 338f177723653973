// Package mockupstream implements an OpenAI-compatible HTTP server with
// deterministic chat completions and images, pacing and fault injection. It
// also serves Gemini's generateContent for images. The gateway uses it as an
// upstream in development, tests and benchmarks.
//
// Routes:
//
//	GET  /v1/models                                lists Options.Models
//	GET  /v1beta/models                            lists Options.Models in Gemini's format
//	POST /v1/chat/completions                      streaming (SSE) and non-streaming completions
//	POST /v1/images/generations                    OpenAI image generation (see Images below)
//	GET  /v1/mock-files/{name}.png                 downloads an image that a url response links to
//	POST /v1beta/models/{model}:generateContent    Gemini image generation
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
//	X-Mock-TTFT-Ms: N       milliseconds before the first content chunk, or before an image response, overriding Options.TimeToFirstToken
//	X-Mock-Fault: NAME      inject the fault NAME (see below)
//	X-Mock-Fault-Once: KEY  inject the fault only on the first request that carries KEY
//	X-Mock-Slow-Ms: N       milliseconds that slow-start waits (default 5000)
//	X-Mock-Cut-After: N     content tokens sent before cut, malformed and stall act (default 3)
//	X-Mock-Image-Bytes: N   length in bytes of each generated PNG (0 to 67108864), overriding Options.ImageBytes
//	X-Mock-Image-URL-Fault: 404, oversized or stall, the download fault of the images of a url response
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
//	safety            Gemini route: 200 with every candidate blocked, finishReason "SAFETY" and no content.
//	                  Other routes: 400 error of code "content_policy_violation".
//	prompt-blocked    Gemini route: 200 with promptFeedback.blockReason "SAFETY" and no candidates.
//	                  Other routes: as safety.
//	url-404           images with response_format "url" only: the download returns 404
//	url-oversized     as url-404, but the download sends the PNG and then up to 1 GiB of filler, without Content-Length
//	url-stall         as url-404, but the download sends the headers and then nothing until the client disconnects
//
// A model named "fault-once-NAME" injects NAME only on the first request for
// that model that reaches the handler, so later requests succeed. With the
// X-Mock-Fault-Once header, the header value is the key instead of the model
// name. The X-Mock-Fault header takes precedence over a fault model name.
// Faults apply to /v1/chat/completions and to the two image generation
// routes. On the two model list routes only the status faults (429, 500,
// 401, 403, 400) and slow-start apply, which lets a health probe fail. For a non-streaming request or an image route, cut sends half of
// the JSON body before closing the connection, cut-before-first closes it
// after the 200 headers, malformed sends "{not json" as the body, and stall
// sends the headers and then waits. On the Gemini route, errors use Google's
// format {"error":{"code":...,"message":...,"status":...}}, with status
// names such as RESOURCE_EXHAUSTED, and the 429 fault also sends
// Retry-After: 1.
//
// Images: every image is a real PNG of opaque noise that the image/png
// encoder writes without compression. A PRNG seeded with an FNV-1a hash of
// the prompt, the image index and the size (or Gemini's
// generationConfig.imageConfig.aspectRatio, and its generationConfig.seed
// when set) picks the pixels, so equal requests get identical bytes. Without a byte target the longer side is 64
// pixels and the size only sets the aspect ratio. With Options.ImageBytes or
// X-Mock-Image-Bytes set to N, the dimensions are the largest that fit, and a
// tEXt chunk pads the PNG to exactly N bytes, unless N is below the length
// of a 1x1 PNG (about 70 bytes). A 4 MiB image takes about 8 ms to encode
// (BenchmarkEncodeImage4MiB on a 2-core Xeon), and a response encodes its
// images one at a time while writing, so it holds one PNG in memory. Image
// routes wait Options.TimeToFirstToken (or X-Mock-TTFT-Ms) before the
// response headers, which gives a benchmark a fixed upstream latency.
//
// /v1/images/generations accepts model, prompt, n (1 to 10), size ("auto" or
// "WxH"), response_format ("b64_json", the default, or "url"),
// output_format, output_compression and any other field. The response has
// created, data (b64_json or url, and revised_prompt), output_format "png",
// size and usage. Usage counts prompt words as input tokens and 1056 output
// tokens per image. A url is absolute on the host that the request
// addressed, and its file name encodes the image, so the server regenerates
// the PNG on download and stores nothing.
//
// The Gemini route reads the text parts of the user contents as the prompt
// and generationConfig.candidateCount (1 to 8) as the number of images. Each
// candidate carries a text part and the PNG as inlineData, unless
// generationConfig.responseModalities leaves out IMAGE. usageMetadata counts
// prompt words as prompt tokens, and 1290 tokens per image plus the words of
// the text parts as candidate tokens.
//
// Every model name that is not a fault model is accepted, whether or not
// /v1/models lists it. Chat responses carry the request's model name in
// their "model" field, and Gemini responses in "modelVersion", so a caller
// can tell which upstream model produced the reply.
//
// API keys: a request whose "Authorization: Bearer <key>" key starts with
// "bad-" gets the 401 fault, and one whose key starts with "forbidden-"
// gets the 403 fault, on every /v1/ path but /v1/mock-files/ and whatever
// Options.APIKey is. This
// lets tests give one provider several keys and make only some fail. Other
// keys are checked against Options.APIKey when it is set. The two Gemini
// routes apply the same rules to the x-goog-api-key header, and
// /v1/mock-files/ needs no key.
package mockupstream
