package mockupstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// shutdownGrace is how long Run lets running requests finish after its
// context ends. Stalled streams never finish, so Run then closes them.
const shutdownGrace = 5 * time.Second

// Run serves the mock API on addr until ctx ends, then shuts down
// gracefully. It returns nil after a graceful shutdown.
func Run(ctx context.Context, addr string, opts Options) error {
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("mockupstream: listen on %s: %w", addr, err)
	}

	return serve(ctx, listener, NewHandler(opts), opts.Logger)
}

// serve takes ownership of listener and closes it before returning.
func serve(ctx context.Context, listener net.Listener, handler *Handler, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	srv := newHTTPServer(handler, logger)

	addr := listener.Addr().String()
	logger.InfoContext(ctx, "mock upstream listening", "addr", addr)

	serveErr := make(chan error, 1)
	go func() {
		serveErr <- srv.Serve(listener)
	}()

	select {
	case err := <-serveErr:
		return fmt.Errorf("mockupstream: serve on %s: %w", addr, err)
	case <-ctx.Done():
	}

	logger.InfoContext(ctx, "mock upstream shutting down", "addr", addr, "grace", shutdownGrace)

	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()

	shutdownErr := srv.Shutdown(shutdownCtx)
	if shutdownErr != nil {
		logger.WarnContext(ctx, "mock upstream graceful shutdown failed, closing connections", "addr", addr, "error", shutdownErr)
		_ = srv.Close()
	}

	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("mockupstream: serve on %s: %w", addr, err)
	}
	if shutdownErr != nil {
		return fmt.Errorf("mockupstream: shut down %s: %w", addr, shutdownErr)
	}

	logger.InfoContext(ctx, "mock upstream stopped", "addr", addr)
	return nil
}

func newHTTPServer(handler http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// Server is a running mock upstream started by Start.
type Server struct {
	handler  *Handler
	srv      *http.Server
	listener net.Listener

	serveDone chan struct{}
	serveErr  error

	closeOnce sync.Once
	closeErr  error
}

// Start listens on addr and serves the mock API in a new goroutine until
// Close. An empty addr listens on 127.0.0.1 with a free port.
func Start(addr string, opts Options) (*Server, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}

	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("mockupstream: listen on %s: %w", addr, err)
	}

	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	handler := NewHandler(opts)
	s := &Server{
		handler:   handler,
		srv:       newHTTPServer(handler, logger),
		listener:  listener,
		serveDone: make(chan struct{}),
	}

	go func() {
		defer close(s.serveDone)
		s.serveErr = s.srv.Serve(listener)
	}()

	return s, nil
}

// URL returns the base URL of the server, such as "http://127.0.0.1:43117",
// built from the listener address. The OpenAI base URL is URL() + "/v1".
func (s *Server) URL() string {
	return "http://" + s.listener.Addr().String()
}

// Addr returns the listener address.
func (s *Server) Addr() string {
	return s.listener.Addr().String()
}

// Handler returns the handler that serves the requests.
func (s *Server) Handler() *Handler {
	return s.handler
}

// Stats returns a snapshot of the request counters.
func (s *Server) Stats() Stats {
	return s.handler.Stats()
}

// Close closes the listener and all connections at once, without waiting for
// running requests, and waits for the serve goroutine to return. Handlers of
// closed connections see their request context end and return soon after.
// Close is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if err := s.srv.Close(); err != nil {
			s.closeErr = fmt.Errorf("mockupstream: close %s: %w", s.Addr(), err)
		}

		<-s.serveDone
		if s.closeErr == nil && !errors.Is(s.serveErr, http.ErrServerClosed) {
			s.closeErr = fmt.Errorf("mockupstream: serve on %s: %w", s.Addr(), s.serveErr)
		}
	})
	return s.closeErr
}
