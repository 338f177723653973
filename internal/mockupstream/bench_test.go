package mockupstream

import (
	"io"
	"net/http"
	"testing"
)

// discardResponseWriter is a flushable http.ResponseWriter that drops the
// body, so allocation counts cover only the chunk writer.
type discardResponseWriter struct {
	header http.Header
}

func (w *discardResponseWriter) Header() http.Header         { return w.header }
func (w *discardResponseWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardResponseWriter) WriteHeader(int)             {}
func (w *discardResponseWriter) Flush()                      {}

func TestContentChunkWriteDoesNotAllocate(t *testing.T) {
	h := NewHandler(Options{})
	req := chatRequest{
		Model:    "mock-gpt",
		Stream:   true,
		Messages: []chatMessage{{Role: "user", Content: []byte(`"hello there"`)}},
	}
	overrides, err := h.parseOverrides(http.Header{})
	if err != nil {
		t.Fatalf("parseOverrides: %v", err)
	}
	plan := h.planCompletion(req, overrides)
	sw := newChunkWriter(&discardResponseWriter{header: http.Header{}}, plan)
	tokens := plan.reply.iterator()

	// The first write grows the buffer to the chunk size.
	if err := sw.writeContentChunk(tokens.next()); err != nil {
		t.Fatalf("write content chunk: %v", err)
	}

	allocs := testing.AllocsPerRun(1000, func() {
		if err := sw.writeContentChunk(tokens.next()); err != nil {
			t.Fatalf("write content chunk: %v", err)
		}
	})
	if allocs != 0 {
		t.Errorf("writing a content chunk allocates %.1f times, want 0", allocs)
	}
}

// BenchmarkStream measures unpaced 40-token streams over loopback, with
// b.N streams spread over GOMAXPROCS*50 concurrent clients.
func BenchmarkStream(b *testing.B) {
	srv, err := Start("", Options{})
	if err != nil {
		b.Fatalf("Start: %v", err)
	}
	defer srv.Close()

	transport := &http.Transport{MaxIdleConnsPerHost: 1000}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	body := chatBody("mock-gpt", "benchmark prompt", map[string]any{"stream": true})

	b.SetParallelism(50)
	b.ReportAllocs()
	b.ResetTimer()

	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := postChat(b.Context(), client, srv, body, map[string]string{"X-Mock-Tokens": "40"})
			if err != nil {
				b.Errorf("POST: %v", err)
				return
			}
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				b.Errorf("read stream: %v", err)
			}
			resp.Body.Close()
		}
	})
}
