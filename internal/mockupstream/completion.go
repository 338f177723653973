package mockupstream

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

func (h *Handler) serveChatCompletion(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()

	req, err := decodeChatRequest(w, r)
	if err == nil {
		err = h.serveDecodedCompletion(ctx, w, r, req)
	}
	if err == nil {
		return
	}

	if apiErr, ok := errors.AsType[*apiError](err); ok {
		writeAPIError(w, apiErr)
		return
	}
	h.logger.ErrorContext(ctx, "chat completion failed", "error", err)
	writeAPIError(w, &apiError{status: http.StatusInternalServerError, errType: "server_error", message: err.Error()})
}

// serveDecodedCompletion returns an error only before it writes the response
// headers. Later failures mean the client is gone, so it logs them instead.
func (h *Handler) serveDecodedCompletion(ctx context.Context, w http.ResponseWriter, r *http.Request, req chatRequest) error {
	choice, err := chooseFault(r.Header, req.Model)
	if err != nil {
		return err
	}
	if choice.fault.isDownloadFault() {
		return misplacedDownloadFault(choice.fault)
	}

	overrides, err := h.parseOverrides(r.Header)
	if err != nil {
		return err
	}

	if choice.fault != faultNone && choice.onceKey != "" && !h.faultOnce.claim(choice.onceKey) {
		choice.fault = faultNone
	}

	plan := h.planCompletion(req, overrides)
	if h.logger.Enabled(ctx, slog.LevelDebug) {
		h.logger.DebugContext(ctx, "chat completion", "id", plan.id, "model", plan.model, "stream", plan.stream,
			"tokens", plan.tokenCount, "fault", string(choice.fault))
	}

	if apiErr := statusFaultError(choice.fault); apiErr != nil {
		if choice.fault == faultRateLimit {
			w.Header().Set("Retry-After", "1")
		}
		return apiErr
	}

	p := newPacer()
	defer p.stop()

	if choice.fault == faultSlowStart {
		if err := p.sleep(ctx, overrides.slowStart); err != nil {
			h.logClientGone(ctx, plan.id, err)
			return nil
		}
		choice.fault = faultNone
	}

	if plan.stream {
		err = h.streamCompletion(ctx, w, p, plan, choice.fault, overrides.cutAfter)
	} else {
		err = h.sendCompletion(ctx, w, p, plan, choice.fault)
	}
	if err != nil {
		h.logClientGone(ctx, plan.id, err)
	}

	return nil
}

func (h *Handler) logClientGone(ctx context.Context, id string, err error) {
	h.logger.DebugContext(ctx, "chat completion stopped early", "id", id, "error", err)
}

// abortResponse closes the connection without ending the response, so the
// client reads an unexpected EOF. net/http recovers this panic without
// logging it, and deferred calls still run.
func abortResponse() {
	panic(http.ErrAbortHandler)
}

func (h *Handler) streamCompletion(ctx context.Context, w http.ResponseWriter, p *pacer, plan completionPlan, f fault, cutAfter int) error {
	sw := newChunkWriter(w, plan)

	header := w.Header()
	header.Set("Content-Type", "text/event-stream")
	header.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if err := sw.flush(); err != nil {
		return err
	}

	if f == faultCutBeforeFirst {
		abortResponse()
	}

	if err := p.sleep(ctx, plan.timeToFirstToken); err != nil {
		return err
	}

	tokenCount := plan.tokenCount
	if f == faultCut || f == faultMalformed || f == faultStall {
		tokenCount = min(tokenCount, cutAfter)
	}

	if err := sw.writeRoleChunk(); err != nil {
		return err
	}

	start := time.Now()
	tokens := plan.reply.iterator()
	for i := range tokenCount {
		if i > 0 && plan.tokenInterval > 0 {
			if err := p.sleepUntil(ctx, start.Add(time.Duration(i)*plan.tokenInterval)); err != nil {
				return err
			}
		} else if err := ctx.Err(); err != nil {
			return err
		}

		if err := sw.writeContentChunk(tokens.next()); err != nil {
			return err
		}
	}

	switch f {
	case faultCut:
		abortResponse()
	case faultMalformed:
		return sw.writeRaw([]byte("data: {not json\n\n"))
	case faultStall:
		<-ctx.Done()
		return ctx.Err()
	}

	if err := sw.writeFinishChunk(plan.finishReason); err != nil {
		return err
	}
	if plan.includeUsage {
		if err := sw.writeUsageChunk(plan.promptTokens, plan.tokenCount); err != nil {
			return err
		}
	}
	return sw.writeRaw([]byte("data: [DONE]\n\n"))
}

// sendCompletion sends a chat.completion object after the delay that
// streaming the same reply would take.
func (h *Handler) sendCompletion(ctx context.Context, w http.ResponseWriter, p *pacer, plan completionPlan, f fault) error {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/json")

	if f == faultCutBeforeFirst {
		w.WriteHeader(http.StatusOK)
		if err := rc.Flush(); err != nil {
			return err
		}
		abortResponse()
	}

	delay := plan.timeToFirstToken
	if plan.tokenCount > 1 {
		delay += time.Duration(plan.tokenCount-1) * plan.tokenInterval
	}
	if err := p.sleep(ctx, delay); err != nil {
		return err
	}

	body := encodeCompletion(plan)

	switch f {
	case faultCut:
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		if _, err := w.Write(body[:len(body)/2]); err != nil {
			return err
		}
		if err := rc.Flush(); err != nil {
			return err
		}
		abortResponse()

	case faultMalformed:
		body = []byte("{not json")

	case faultStall:
		w.WriteHeader(http.StatusOK)
		if err := rc.Flush(); err != nil {
			return err
		}
		<-ctx.Done()
		return ctx.Err()
	}

	_, err := w.Write(body)
	return err
}

func encodeCompletion(plan completionPlan) []byte {
	type message struct {
		Role    string  `json:"role"`
		Content string  `json:"content"`
		Refusal *string `json:"refusal"`
	}
	type choice struct {
		Index        int             `json:"index"`
		Message      message         `json:"message"`
		Logprobs     json.RawMessage `json:"logprobs"`
		FinishReason string          `json:"finish_reason"`
	}
	completion := struct {
		ID                string   `json:"id"`
		Object            string   `json:"object"`
		Created           int64    `json:"created"`
		Model             string   `json:"model"`
		SystemFingerprint string   `json:"system_fingerprint"`
		Choices           []choice `json:"choices"`
		Usage             usage    `json:"usage"`
	}{
		ID:                plan.id,
		Object:            "chat.completion",
		Created:           plan.created,
		Model:             plan.model,
		SystemFingerprint: systemFingerprint,
		Choices: []choice{{
			Message:      message{Role: "assistant", Content: plan.reply.text(plan.tokenCount)},
			Logprobs:     json.RawMessage("null"),
			FinishReason: plan.finishReason,
		}},
		Usage: newUsage(plan.promptTokens, plan.tokenCount),
	}

	// Marshal cannot fail for strings, integers and a literal null.
	body, _ := json.Marshal(completion)
	return body
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func newUsage(promptTokens, completionTokens int) usage {
	return usage{PromptTokens: promptTokens, CompletionTokens: completionTokens, TotalTokens: promptTokens + completionTokens}
}
