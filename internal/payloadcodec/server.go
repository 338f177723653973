package payloadcodec

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/aihigress/aihigress/internal/config"
)

// Server is a codec server listening on a TCP address.
type Server struct {
	http     *http.Server
	listener net.Listener
	logger   *slog.Logger
	errc     chan error
}

// StartServer builds the codec server of cfg, with the codec of conv, and
// starts serving. It fails without a payload key or a token.
func StartServer(cfg config.CodecServer, conv Converters, logger *slog.Logger) (*Server, error) {
	if conv.Codec == nil {
		return nil, errors.New("codec server: TEMPORAL_PAYLOAD_KEY and TEMPORAL_PAYLOAD_KEYS_OLD are missing, so there is no key to decrypt with")
	}
	handler, err := NewHandler(conv.Codec, HandlerOptions{
		Token:          cfg.Token,
		AllowedOrigins: cfg.CORSOrigins,
		MaxBodyBytes:   cfg.MaxBodyBytes,
		Logger:         logger,
	})
	if err != nil {
		return nil, err
	}
	listener, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("codec server: listen on %s: %w", cfg.Addr, err)
	}
	s := &Server{
		http: &http.Server{
			Handler:           handler,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       time.Minute,
			IdleTimeout:       2 * time.Minute,
		},
		listener: listener,
		logger:   logger,
		errc:     make(chan error, 1),
	}
	go func() { s.errc <- s.http.Serve(listener) }()
	logger.Info("codec server listening", "addr", listener.Addr().String(), "encrypting_key_id", conv.Codec.CurrentKeyID(), "cors_origins", cfg.CORSOrigins)
	return s, nil
}

// URL returns the server's base URL, with a loopback host when it listens
// on every address.
func (s *Server) URL() string {
	addr := s.listener.Addr().(*net.TCPAddr)
	host := addr.IP
	if host.IsUnspecified() {
		host = net.IPv4(127, 0, 0, 1)
	}
	return "http://" + net.JoinHostPort(host.String(), fmt.Sprint(addr.Port))
}

// Wait serves until ctx ends, then shuts down gracefully within 10 seconds.
// It returns early with the error of a failed listener.
func (s *Server) Wait(ctx context.Context) error {
	select {
	case err := <-s.errc:
		return fmt.Errorf("codec server: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.http.Shutdown(shutdownCtx); err != nil {
		_ = s.http.Close()
		return fmt.Errorf("codec server shutdown: %w", err)
	}
	s.logger.Info("codec server stopped")
	return nil
}

// Close stops the server at once.
func (s *Server) Close() error {
	return s.http.Close()
}
