package mockupstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

const (
	minDefaultTokens   = 20
	maxDefaultTokens   = 40
	maxForcedTokens    = 1_000_000
	maxQuotedWords     = 8
	maxQuotedWordRunes = 32
	maxDelayMillis     = 10 * 60 * 1000
)

type chatRequest struct {
	Model               string         `json:"model"`
	Messages            []chatMessage  `json:"messages"`
	Stream              bool           `json:"stream"`
	StreamOptions       *streamOptions `json:"stream_options"`
	MaxTokens           *int64         `json:"max_tokens"`
	MaxCompletionTokens *int64         `json:"max_completion_tokens"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type chatMessage struct {
	Role string `json:"role"`

	// Content is a string, an array of content parts or null.
	Content json.RawMessage `json:"content"`
}

// completionPlan is everything needed to send one completion.
type completionPlan struct {
	id           string
	created      int64
	model        string
	stream       bool
	includeUsage bool

	reply        replyTokens
	tokenCount   int
	finishReason string
	promptTokens int

	timeToFirstToken time.Duration
	tokenInterval    time.Duration // zero sends tokens without delay
}

func decodeChatRequest(w http.ResponseWriter, r *http.Request) (chatRequest, error) {
	var req chatRequest
	if err := decodeJSONBody(w, r, &req); err != nil {
		return req, err
	}
	return req, validateChatRequest(req)
}

// decodeJSONBody reads at most maxRequestBodyBytes of the request body and
// decodes it into v. Errors are *apiError values with status 400 or 413.
func decodeJSONBody(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBodyBytes))
	if err != nil {
		if maxBytesErr, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return &apiError{
				status:  http.StatusRequestEntityTooLarge,
				errType: "invalid_request_error",
				message: fmt.Sprintf("Request body is larger than %d bytes.", maxBytesErr.Limit),
			}
		}
		return &apiError{
			status:  http.StatusBadRequest,
			errType: "invalid_request_error",
			message: fmt.Sprintf("Failed to read request body: %v.", err),
		}
	}

	if err := json.Unmarshal(body, v); err != nil {
		return &apiError{
			status:  http.StatusBadRequest,
			errType: "invalid_request_error",
			message: fmt.Sprintf("Invalid JSON in request body: %v.", err),
		}
	}
	return nil
}

func validateChatRequest(req chatRequest) error {
	invalid := func(param, message string) error {
		return &apiError{status: http.StatusBadRequest, errType: "invalid_request_error", param: param, message: message}
	}

	if req.Model == "" {
		return invalid("model", "Missing required parameter: 'model'.")
	}
	if len(req.Messages) == 0 {
		return invalid("messages", "Missing required parameter: 'messages' must contain at least one message.")
	}

	for i, message := range req.Messages {
		param := fmt.Sprintf("messages[%d]", i)
		if message.Role == "" {
			return invalid(param+".role", fmt.Sprintf("Missing required parameter: '%s.role'.", param))
		}
		if _, err := messageText(message.Content); err != nil {
			return invalid(param+".content", fmt.Sprintf("Invalid '%s.content': %v.", param, err))
		}
	}

	if req.MaxTokens != nil && *req.MaxTokens < 1 {
		return invalid("max_tokens", fmt.Sprintf("Invalid 'max_tokens': %d is less than the minimum of 1.", *req.MaxTokens))
	}
	if req.MaxCompletionTokens != nil && *req.MaxCompletionTokens < 1 {
		return invalid("max_completion_tokens",
			fmt.Sprintf("Invalid 'max_completion_tokens': %d is less than the minimum of 1.", *req.MaxCompletionTokens))
	}

	return nil
}

// messageText returns the text of a message content: the string itself, or
// the text parts of a content array joined by spaces. Null content, as in an
// assistant message with tool calls, has no text.
func messageText(content json.RawMessage) (string, error) {
	trimmed := bytes.TrimSpace(content)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return "", nil
	}

	switch trimmed[0] {
	case '"':
		var text string
		if err := json.Unmarshal(trimmed, &text); err != nil {
			return "", fmt.Errorf("decode string content: %w", err)
		}
		return text, nil

	case '[':
		var parts []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}
		if err := json.Unmarshal(trimmed, &parts); err != nil {
			return "", fmt.Errorf("decode content parts: %w", err)
		}

		texts := make([]string, 0, len(parts))
		for _, part := range parts {
			if part.Type == "text" {
				texts = append(texts, part.Text)
			}
		}
		return strings.Join(texts, " "), nil

	default:
		return "", errors.New("content must be a string, an array of content parts or null")
	}
}

// requestOverrides are the per-request X-Mock-* headers that change pacing,
// length and faults.
type requestOverrides struct {
	tokensPerSecond  float64
	timeToFirstToken time.Duration
	forcedTokens     int // negative when X-Mock-Tokens is absent
	slowStart        time.Duration
	cutAfter         int
}

func (h *Handler) parseOverrides(header http.Header) (requestOverrides, error) {
	overrides := requestOverrides{
		tokensPerSecond:  h.tokensPerSecond,
		timeToFirstToken: h.timeToFirstToken,
		forcedTokens:     -1,
		slowStart:        5 * time.Second,
		cutAfter:         3,
	}

	if value := header.Get("X-Mock-TPS"); value != "" {
		tps, err := strconv.ParseFloat(value, 64)
		if err != nil || tps < 0 || tps > 1e9 {
			return overrides, invalidHeader("X-Mock-TPS", value, "a number of tokens per second from 0 to 1e9")
		}
		overrides.tokensPerSecond = tps
	}

	milliseconds := func(name string, target *time.Duration) error {
		value := header.Get(name)
		if value == "" {
			return nil
		}
		n, err := strconv.Atoi(value)
		if err != nil || n < 0 || n > maxDelayMillis {
			return invalidHeader(name, value, fmt.Sprintf("an integer number of milliseconds from 0 to %d", maxDelayMillis))
		}
		*target = time.Duration(n) * time.Millisecond
		return nil
	}
	if err := milliseconds("X-Mock-TTFT-Ms", &overrides.timeToFirstToken); err != nil {
		return overrides, err
	}
	if err := milliseconds("X-Mock-Slow-Ms", &overrides.slowStart); err != nil {
		return overrides, err
	}

	count := func(name string, target *int) error {
		value := header.Get(name)
		if value == "" {
			return nil
		}
		n, err := strconv.Atoi(value)
		if err != nil || n < 0 || n > maxForcedTokens {
			return invalidHeader(name, value, fmt.Sprintf("an integer from 0 to %d", maxForcedTokens))
		}
		*target = n
		return nil
	}
	if err := count("X-Mock-Tokens", &overrides.forcedTokens); err != nil {
		return overrides, err
	}
	if err := count("X-Mock-Cut-After", &overrides.cutAfter); err != nil {
		return overrides, err
	}

	return overrides, nil
}

func invalidHeader(name, value, expected string) error {
	return &apiError{
		status:  http.StatusBadRequest,
		errType: "invalid_request_error",
		param:   name,
		message: fmt.Sprintf("Invalid header %s: %q, expected %s.", name, value, expected),
	}
}

func (h *Handler) planCompletion(req chatRequest, overrides requestOverrides) completionPlan {
	plan := completionPlan{
		id:               h.newCompletionID(),
		created:          time.Now().Unix(),
		model:            req.Model,
		stream:           req.Stream,
		includeUsage:     req.Stream && req.StreamOptions != nil && req.StreamOptions.IncludeUsage,
		timeToFirstToken: overrides.timeToFirstToken,
		finishReason:     "stop",
	}
	if overrides.tokensPerSecond > 0 {
		plan.tokenInterval = time.Duration(float64(time.Second) / overrides.tokensPerSecond)
	}

	// Validation has already rejected content that messageText cannot read.
	hash := fnv.New64a()
	lastUserText := ""
	for _, message := range req.Messages {
		text, _ := messageText(message.Content)
		plan.promptTokens += countWords(text)

		hash.Write([]byte(message.Role))
		hash.Write([]byte{0})
		hash.Write([]byte(text))
		hash.Write([]byte{0})

		if message.Role == "user" {
			lastUserText = text
		}
	}
	seed := hash.Sum64()
	plan.reply = newReplyTokens(lastUserText, seed)

	switch {
	case overrides.forcedTokens >= 0:
		plan.tokenCount = overrides.forcedTokens

	default:
		plan.tokenCount = minDefaultTokens + int(seed%(maxDefaultTokens-minDefaultTokens+1))

		limit := req.MaxTokens
		if req.MaxCompletionTokens != nil {
			limit = req.MaxCompletionTokens
		}
		if limit != nil && *limit < int64(plan.tokenCount) {
			plan.tokenCount = int(*limit)
			plan.finishReason = "length"
		}
	}

	return plan
}

func (h *Handler) newCompletionID() string {
	return "chatcmpl-mock" + h.idPrefix + strconv.FormatUint(h.nextID.Add(1), 10)
}

func countWords(text string) int {
	count := 0
	inWord := false
	for _, r := range text {
		if unicode.IsSpace(r) {
			inWord = false
			continue
		}
		if !inWord {
			count++
			inWord = true
		}
	}
	return count
}

// fillerWords are the words that follow the quoted part of a reply. They are
// plain ASCII, so chunks can carry them without JSON escaping.
var fillerWords = [...]string{
	"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
	"india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa",
	"quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey", "xray",
	"yankee", "zulu", "amber", "basalt", "cobalt", "dune", "ember", "fjord",
	"granite", "harbor", "iris", "jasper", "kelp", "lagoon", "meadow", "nectar",
	"onyx", "pebble", "quartz", "river", "slate", "tundra", "umber", "valley",
	"willow", "xenon", "yarrow", "zephyr", "anchor", "beacon", "canyon", "drift",
	"estuary", "forest", "glacier", "horizon", "island", "jungle", "knoll", "lantern",
}

// replyTokens describes the token sequence of a reply: the lead words, then
// filler words drawn from a splitmix64 sequence that starts at seed.
type replyTokens struct {
	lead []string
	seed uint64
}

func newReplyTokens(lastUserText string, seed uint64) replyTokens {
	words := strings.Fields(lastUserText)

	lead := make([]string, 0, 3+maxQuotedWords+1)
	lead = append(lead, "Mock", "reply", "to:")
	for i, word := range words {
		if i == maxQuotedWords {
			lead = append(lead, "...")
			break
		}
		lead = append(lead, truncateRunes(word, maxQuotedWordRunes))
	}

	return replyTokens{lead: lead, seed: seed}
}

func (t replyTokens) iterator() tokenIterator {
	return tokenIterator{lead: t.lead, state: t.seed}
}

// text returns the reply text of the first count tokens, each followed by a
// space, exactly as the content chunks of a stream concatenate.
func (t replyTokens) text(count int) string {
	var b strings.Builder
	b.Grow(count * 8)

	it := t.iterator()
	for range count {
		b.WriteString(it.next())
		b.WriteByte(' ')
	}
	return b.String()
}

type tokenIterator struct {
	lead  []string
	state uint64
	index int
}

func (it *tokenIterator) next() string {
	if it.index < len(it.lead) {
		token := it.lead[it.index]
		it.index++
		return token
	}

	// One splitmix64 step: advance a Weyl sequence and mix the state, so
	// the filler words depend only on the seed and the token position.
	it.state += 0x9e3779b97f4a7c15
	z := it.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31

	return fillerWords[z%uint64(len(fillerWords))]
}

func truncateRunes(s string, maxRunes int) string {
	if utf8.RuneCountInString(s) <= maxRunes {
		return s
	}

	count := 0
	for i := range s {
		if count == maxRunes {
			return s[:i]
		}
		count++
	}
	return s
}
