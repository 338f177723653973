package main

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aihigress/aihigress/internal/mockupstream"
)

// mockServer serves the mock upstream on loopback and counts the image
// generation requests that are in flight at once.
type mockServer struct {
	url      string
	server   *http.Server
	served   chan struct{}
	inFlight atomic.Int64
	// started counts the image requests that reached the mock.
	started atomic.Int64

	mu   sync.Mutex
	peak int64
}

// startMock serves a mock upstream whose image responses wait latency.
// The image size comes from each request's X-Mock-Image-Bytes header.
func startMock(latency time.Duration, logger *slog.Logger) (*mockServer, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	handler := mockupstream.NewHandler(mockupstream.Options{TimeToFirstToken: latency})
	m := &mockServer{url: "http://" + listener.Addr().String(), served: make(chan struct{})}
	m.server = &http.Server{
		Handler:           m.count(handler),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	go func() {
		defer close(m.served)
		if err := m.server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("mock upstream stopped", "error", err)
		}
	}()
	return m, nil
}

func (m *mockServer) count(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/images/generations") {
			next.ServeHTTP(w, r)
			return
		}
		m.started.Add(1)
		now := m.inFlight.Add(1)
		m.mu.Lock()
		m.peak = max(m.peak, now)
		m.mu.Unlock()
		defer m.inFlight.Add(-1)
		next.ServeHTTP(w, r)
	})
}

// resetPeak sets the peak of concurrent image requests to the current
// count and returns the previous peak.
func (m *mockServer) resetPeak() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	previous := m.peak
	m.peak = m.inFlight.Load()
	return previous
}

func (m *mockServer) close() error {
	err := m.server.Close()
	<-m.served
	return err
}
