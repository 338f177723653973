package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/aihigress/aihigress/internal/providers"
)

const (
	relayRoleChunk = `{"id":"c1","object":"chat.completion.chunk","model":"up","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}`
	// relayEscapedChunk has a model with escapes and content that spells
	// a usage member, which must not count as usage.
	relayEscapedChunk = `{"id":"c1","model":"vendor/\"up\"\\v\u00e9","choices":[{"index":0,"delta":{"content":"\"usage\":{\"prompt_tokens\":9}"},"finish_reason":null}],"usage":null}`
	relayNoModelChunk = `{"id":"c1","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}],"usage":null}`
	relayFinishChunk  = `{"id":"c1","model":"up","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}`
	relayUsageChunk   = `{"id":"c1","model":"up","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`
)

// relayBlocks are the events of a complete stream with CRLF and LF line
// endings, a keep-alive comment and an event cut in the middle of a line.
var relayBlocks = []string{
	"data: " + relayRoleChunk + "\r\n\r\n",
	": keep-alive\n\n",
	"data: " + relayEscapedChunk[:40], relayEscapedChunk[40:] + "\n\n",
	"data: " + relayNoModelChunk + "\n\n",
	"data: " + relayFinishChunk + "\n\n",
	"data: " + relayUsageChunk + "\r\n\r\n",
	"data: [DONE]\n\n",
}

func TestSSERelayCopyRest(t *testing.T) {
	all := strings.Join(relayBlocks, "")
	withoutUsage := strings.Replace(all, "data: "+relayUsageChunk+"\r\n\r\n", "", 1)
	untilFinish := strings.Join(relayBlocks[:6], "")

	tests := []struct {
		name        string
		parts       []string
		clientUsage bool
		wantBody    string
		wantUsage   bool
		wantErr     providers.ErrorKind // "" for a complete stream
	}{
		{name: "bytes relayed as sent", parts: relayBlocks, clientUsage: true, wantBody: all, wantUsage: true},
		{name: "usage chunk dropped", parts: relayBlocks, wantBody: withoutUsage, wantUsage: true},
		{name: "finish without [DONE]", parts: relayBlocks[:6], wantBody: untilFinish + "data: [DONE]\n\n"},
		{name: "cut before finish", parts: relayBlocks[:3], wantBody: strings.Join(relayBlocks[:2], ""), wantErr: providers.ErrorStreamCut},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forwarded := forwardParts(t, tt.parts)
			recorder := httptest.NewRecorder()
			c, _ := gin.CreateTestContext(recorder)
			relay := &sseRelay{writer: c.Writer, clientUsage: tt.clientUsage}
			forwarded.BeforeRead(func() { _ = relay.flush() })
			call := &gatewayCall{}

			err := relay.copyRest(forwarded, call)
			_ = relay.flush()

			var upstreamErr *providers.UpstreamError
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("copyRest error = %v, want nil", err)
			case tt.wantErr != "" && (!errors.As(err, &upstreamErr) || upstreamErr.Kind != tt.wantErr):
				t.Errorf("copyRest error = %v, want kind %s", err, tt.wantErr)
			}
			if got := recorder.Body.String(); got != tt.wantBody {
				t.Errorf("client got\n%q\nwant\n%q", got, tt.wantBody)
			}
			wantPrompt, wantCompletion := 0, 0
			if tt.wantUsage {
				wantPrompt, wantCompletion = 3, 2
			}
			if call.usage.prompt != wantPrompt || call.usage.completion != wantCompletion {
				t.Errorf("recorded usage = %d/%d, want %d/%d", call.usage.prompt, call.usage.completion, wantPrompt, wantCompletion)
			}
		})
	}
}

// failingWriter is a client connection that is gone.
type failingWriter struct {
	httptest.ResponseRecorder
}

func (w *failingWriter) Write([]byte) (int, error) {
	return 0, errors.New("broken pipe")
}

func TestSSERelayClientGone(t *testing.T) {
	forwarded := forwardParts(t, relayBlocks)
	c, _ := gin.CreateTestContext(&failingWriter{})
	relay := &sseRelay{writer: c.Writer}
	forwarded.BeforeRead(func() { _ = relay.flush() })

	err := relay.copyRest(forwarded, &gatewayCall{})
	if !errors.Is(err, errClientWrite) {
		t.Errorf("copyRest error = %v, want one wrapping errClientWrite", err)
	}
}

// forwardParts starts an upstream that sends parts as separate flushed
// writes and returns its forwarded stream.
func forwardParts(t *testing.T, parts []string) *providers.Forwarded {
	t.Helper()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for _, part := range parts {
			_, _ = io.WriteString(w, part)
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(upstream.Close)

	client := providers.NewClient(providers.ClientOptions{})
	t.Cleanup(client.CloseIdleConnections)
	provider := providers.Provider{ID: "relay", Kind: "openai", BaseURL: upstream.URL + "/v1"}
	forwarded, err := client.Forward(context.Background(), provider, []byte(`{"model":"up","stream":true}`), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(forwarded.Close)
	return forwarded
}
