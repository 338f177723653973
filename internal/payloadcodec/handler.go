package payloadcodec

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"go.temporal.io/sdk/converter"
)

// HandlerOptions configures NewHandler.
type HandlerOptions struct {
	// Token is required on every request except CORS preflights.
	Token string
	// AllowedOrigins are the browser origins, such as the Temporal Web UI's,
	// that may call the handler. Requests with another Origin are rejected.
	AllowedOrigins []string
	// MaxBodyBytes limits a request body; larger ones get 413.
	MaxBodyBytes int64
	Logger       *slog.Logger
}

// NewHandler returns the HTTP handler of the codec server. It serves
// POST /encode and POST /decode with the Temporal SDK's codec handler, whose
// bodies are the protobuf JSON of temporal.api.common.v1.Payloads, as the
// Temporal Web UI and CLI send them.
//
// A request authenticates with the token in either of two ways:
//
//   - the header "Authorization: Bearer <token>", which the CLI sends with
//     --codec-auth;
//   - the path /<token>/encode or /<token>/decode, for the Web UI, which
//     cannot send a fixed token. Its "pass access token" setting sends the
//     user's OIDC access token instead, and only to https:// endpoints
//     (Temporal UI v2.42.1).
//
// The token is compared in constant time. Error bodies are JSON, and logs
// never contain payloads or the token.
func NewHandler(codec *Codec, opts HandlerOptions) (http.Handler, error) {
	if codec == nil {
		return nil, errors.New("codec server: TEMPORAL_PAYLOAD_KEY is missing, so there is no key to decrypt with")
	}
	if opts.Token == "" {
		return nil, errors.New("codec server: CODEC_SERVER_TOKEN is missing. Set it, for example to the output of `openssl rand -hex 32`")
	}
	if opts.MaxBodyBytes <= 0 {
		return nil, fmt.Errorf("codec server body limit must be positive, got %d", opts.MaxBodyBytes)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	origins := map[string]bool{}
	for _, origin := range opts.AllowedOrigins {
		origins[origin] = true
	}
	return &handler{
		codec:     converter.NewPayloadCodecHTTPHandler(codec),
		tokenHash: sha256.Sum256([]byte(opts.Token)),
		origins:   origins,
		maxBody:   opts.MaxBodyBytes,
		logger:    logger.With("component", "codec-server"),
	}, nil
}

type handler struct {
	codec     http.Handler
	tokenHash [sha256.Size]byte
	origins   map[string]bool
	maxBody   int64
	logger    *slog.Logger
}

// corsAllowedHeaders are the request headers that the Temporal Web UI
// v2.42.1 sends to a codec server.
const corsAllowedHeaders = "Authorization, Authorization-Extras, Content-Type, X-Namespace"

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w.Header().Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	if origin != "" {
		if !h.origins[origin] {
			h.logger.Warn("codec request rejected because its origin is not allowed. Add the origin to CODEC_SERVER_CORS_ORIGINS if it is the Temporal Web UI", "origin", origin)
			writeError(w, http.StatusForbidden, "origin_not_allowed", "origin "+origin+" is not in CODEC_SERVER_CORS_ORIGINS")
			return
		}
		w.Header().Set("Access-Control-Allow-Origin", origin)
		// The UI's "include cross-origin credentials" setting makes the
		// browser require this header. Cookies grant nothing here, because
		// only the token authenticates.
		w.Header().Set("Access-Control-Allow-Credentials", "true")
	}

	operation, pathToken, ok := parseCodecPath(r.URL.Path)
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "the codec server serves POST /encode and POST /decode, optionally under /<token>/")
		return
	}
	switch r.Method {
	case http.MethodOptions:
		w.Header().Set("Allow", "OPTIONS, POST")
		if origin != "" {
			w.Header().Set("Access-Control-Allow-Methods", "POST, OPTIONS")
			w.Header().Set("Access-Control-Allow-Headers", corsAllowedHeaders)
			w.Header().Set("Access-Control-Max-Age", "600")
		}
		w.WriteHeader(http.StatusNoContent)
		return
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "OPTIONS, POST")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use POST /"+operation)
		return
	}

	if !h.authorized(r, pathToken) {
		h.logger.Warn("codec request rejected: missing or wrong token", "operation", operation, "remote_addr", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", `Bearer realm="aihigress-codec"`)
		writeError(w, http.StatusUnauthorized, "invalid_token", "send the CODEC_SERVER_TOKEN as \"Authorization: Bearer <token>\" or as the first path segment")
		return
	}

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body exceeds %d bytes (CODEC_SERVER_MAX_BODY_BYTES)", tooLarge.Limit))
			return
		}
		writeError(w, http.StatusBadRequest, "invalid_body", "read request body: "+err.Error())
		return
	}

	status := h.runCodec(w, r, operation, body)
	h.logger.Debug("codec request", "operation", operation, "status", status, "request_bytes", len(body), "duration", time.Since(start))
}

// runCodec passes the request to the SDK's codec handler and relays its
// response, turning its plain-text errors into JSON ones. It returns the
// status code sent.
func (h *handler) runCodec(w http.ResponseWriter, r *http.Request, operation string, body []byte) int {
	inner := r.Clone(r.Context())
	inner.URL.Path = "/" + operation
	inner.Body = io.NopCloser(bytes.NewReader(body))
	inner.ContentLength = int64(len(body))

	var out bufferedResponse
	h.codec.ServeHTTP(&out, inner)
	if out.status == 0 || out.status == http.StatusOK {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(out.body.Bytes())
		return http.StatusOK
	}
	// The SDK responds with 400 to a body that is not Payloads JSON and to
	// a codec error. Neither message contains a payload's data, but a JSON
	// syntax error may quote the request, so it is returned and not logged.
	writeError(w, out.status, "invalid_payloads", operation+" failed: "+strings.TrimSpace(out.body.String()))
	return out.status
}

// authorized checks the path token when there is one, and otherwise the
// bearer token of the Authorization header.
func (h *handler) authorized(r *http.Request, pathToken string) bool {
	presented := pathToken
	if presented == "" {
		scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return false
		}
		presented = strings.TrimSpace(token)
	}
	// Hashing first makes the comparison take the same time whatever the
	// length of the presented token.
	presentedHash := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(presentedHash[:], h.tokenHash[:]) == 1
}

// parseCodecPath accepts /encode, /decode, /<token>/encode and
// /<token>/decode.
func parseCodecPath(path string) (operation, token string, ok bool) {
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	switch len(parts) {
	case 1:
		operation = parts[0]
	case 2:
		token, operation = parts[0], parts[1]
		if token == "" {
			return "", "", false
		}
	default:
		return "", "", false
	}
	if operation != "encode" && operation != "decode" {
		return "", "", false
	}
	return operation, token, true
}

// writeError sends the JSON error shape of the HTTP API:
// {"error": {"message", "type", "code"}}.
func writeError(w http.ResponseWriter, status int, code, message string) {
	errorType := "invalid_request_error"
	switch status {
	case http.StatusUnauthorized:
		errorType = "authentication_error"
	case http.StatusForbidden:
		errorType = "permission_error"
	case http.StatusNotFound:
		errorType = "not_found_error"
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"error": map[string]string{"message": message, "type": errorType, "code": code},
	})
}

// bufferedResponse collects the SDK handler's response, so that runCodec can
// rewrite an error before anything reaches the client.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header {
	if b.header == nil {
		b.header = http.Header{}
	}
	return b.header
}

func (b *bufferedResponse) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}
