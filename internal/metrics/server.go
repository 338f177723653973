package metrics

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves the registry in the Prometheus text format. With a
// non-empty token it requires "Authorization: Bearer <token>" and responds
// with 401 and a JSON error otherwise.
func (r *Recorder) Handler(token string) http.Handler {
	serve := promhttp.HandlerFor(r.Registry(), promhttp.HandlerOpts{})
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !ValidToken(req, token) {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{
				"message": "send the metrics token as 'Authorization: Bearer <token>'",
				"type":    "authentication_error",
				"code":    "invalid_token",
				"param":   nil,
			}})
			return
		}
		serve.ServeHTTP(w, req)
	})
}

// ValidToken reports whether req carries "Authorization: Bearer <token>",
// comparing in constant time. An empty token accepts every request.
func ValidToken(req *http.Request, token string) bool {
	if token == "" {
		return true
	}
	got := req.Header.Get("Authorization")
	return subtle.ConstantTimeCompare([]byte(got), []byte("Bearer "+token)) == 1
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// Server is the HTTP server of a process without the API, such as the
// worker: GET /metrics and GET /healthz.
type Server struct {
	srv      *http.Server
	listener net.Listener
	ready    atomic.Bool
	done     chan struct{}
}

// Listen binds addr and serves /metrics, protected by token when it is
// non-empty, and /healthz. A nil Recorder serves /healthz alone. /healthz
// returns 503 until SetReady(true). Binding happens before Listen returns, so a taken port is an error here.
func (r *Recorder) Listen(addr, token string, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for worker metrics on %s: %w", addr, err)
	}
	s := &Server{listener: listener, done: make(chan struct{})}
	mux := http.NewServeMux()
	if r != nil {
		mux.Handle("GET /metrics", r.Handler(token))
	}
	mux.HandleFunc("GET /healthz", s.healthz)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("worker metrics server stopped", "addr", listener.Addr().String(), "error", err)
		}
	}()
	return s, nil
}

// Addr returns the address that the server listens on.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// SetReady sets what /healthz reports: 200 when ready, 503 otherwise. A
// nil Server ignores it.
func (s *Server) SetReady(ready bool) {
	if s != nil {
		s.ready.Store(ready)
	}
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	if !s.ready.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// Shutdown stops the server, waiting for open requests until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	<-s.done
	return err
}
