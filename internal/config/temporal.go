package config

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// PayloadEncryption configures the AES-256-GCM codec that encrypts Temporal
// payloads (workflow and activity inputs and results, summaries and failure
// messages) before they reach the Temporal server.
type PayloadEncryption struct {
	// Key encrypts new payloads and decrypts payloads that it encrypted. Nil
	// leaves new payloads in clear.
	Key []byte
	// OldKeys only decrypt, so that histories written before a key rotation
	// stay readable.
	OldKeys [][]byte
}

// Enabled reports whether any payload key is configured.
func (p PayloadEncryption) Enabled() bool {
	return p.Key != nil || len(p.OldKeys) > 0
}

// CodecServer configures `aihigress codec-server`, the HTTP endpoint that
// the Temporal Web UI and CLI call to encode and decode payloads.
type CodecServer struct {
	Addr string
	// Token is required on every request, as a bearer token or as the
	// first path segment. When it is empty, codec-server does not start and
	// `dev` generates one.
	Token string
	// CORSOrigins are the browser origins of the Temporal Web UI. Requests
	// with another Origin header are rejected.
	CORSOrigins []string
	// MaxBodyBytes limits the size of a request body.
	MaxBodyBytes int64
}

// minCodecTokenChars is the length of the shortest accepted
// CODEC_SERVER_TOKEN. 32 hex characters carry 128 random bits.
const minCodecTokenChars = 32

// loadGRPCCompression reads TEMPORAL_GRPC_COMPRESSION. The default is
// "none", unlike the Temporal Go SDK's gzip. The service's requests to
// Temporal carry object keys and short JSON, never images, and on a
// 2-core VM gzip cost the worker about 1 ms of CPU per image run
// (a CPU profile of `go run ./bench/imagebench`). gzip still helps a
// worker that reaches Temporal over a slow or metered link.
func loadGRPCCompression(env *lookup) string {
	value := strings.ToLower(env.str("TEMPORAL_GRPC_COMPRESSION", "none"))
	if value != "none" && value != "gzip" {
		env.errs = append(env.errs, fmt.Sprintf("TEMPORAL_GRPC_COMPRESSION must be none or gzip, got %q", value))
		return "none"
	}
	return value
}

// loadPayloadEncryption reads TEMPORAL_PAYLOAD_KEY and
// TEMPORAL_PAYLOAD_KEYS_OLD, adding parse errors to env.
func loadPayloadEncryption(env *lookup) PayloadEncryption {
	var enc PayloadEncryption
	if raw := strings.TrimSpace(env.getenv("TEMPORAL_PAYLOAD_KEY")); raw != "" {
		key, err := ParsePayloadKey(raw)
		if err != nil {
			env.errs = append(env.errs, "TEMPORAL_PAYLOAD_KEY: "+err.Error())
		}
		enc.Key = key
	}
	for i, raw := range env.list("TEMPORAL_PAYLOAD_KEYS_OLD") {
		key, err := ParsePayloadKey(raw)
		if err != nil {
			env.errs = append(env.errs, fmt.Sprintf("TEMPORAL_PAYLOAD_KEYS_OLD item %d: %v", i+1, err))
			continue
		}
		enc.OldKeys = append(enc.OldKeys, key)
	}
	return enc
}

// loadCodecServer reads the CODEC_SERVER_* variables. The default origins
// are those of the dev server's Web UI on uiPort.
func loadCodecServer(env *lookup, uiPort int) CodecServer {
	origins := env.list("CODEC_SERVER_CORS_ORIGINS")
	if len(origins) == 0 {
		port := strconv.Itoa(uiPort)
		origins = []string{"http://127.0.0.1:" + port, "http://localhost:" + port}
	}
	return CodecServer{
		Addr:        env.str("CODEC_SERVER_ADDR", "127.0.0.1:8234"),
		Token:       env.str("CODEC_SERVER_TOKEN", ""),
		CORSOrigins: origins,
		// One payload at Temporal's default blob size limit of 2 MiB grows
		// to about 2.7 MiB as base64 in JSON.
		MaxBodyBytes: int64(env.integer("CODEC_SERVER_MAX_BODY_BYTES", 4<<20)),
	}
}

func (c CodecServer) validate() error {
	if c.Token != "" && len(c.Token) < minCodecTokenChars {
		return fmt.Errorf("invalid configuration: CODEC_SERVER_TOKEN must be at least %d characters. Generate one with `openssl rand -hex 32`", minCodecTokenChars)
	}
	if strings.IndexFunc(c.Token, notURLSafe) >= 0 {
		return fmt.Errorf("invalid configuration: CODEC_SERVER_TOKEN may contain only letters, digits and - _ . ~, because the Web UI sends it in a URL path")
	}
	for _, origin := range c.CORSOrigins {
		if origin == "*" {
			return fmt.Errorf(`invalid configuration: CODEC_SERVER_CORS_ORIGINS must list the Web UI's origins, because "*" would let any web page call the codec server`)
		}
		if err := validateOrigin(origin, len(c.CORSOrigins)); err != nil {
			return fmt.Errorf("invalid configuration: CODEC_SERVER_CORS_ORIGINS: %w", err)
		}
	}
	if c.MaxBodyBytes < 1024 {
		return fmt.Errorf("invalid configuration: CODEC_SERVER_MAX_BODY_BYTES must be at least 1024, got %d", c.MaxBodyBytes)
	}
	return nil
}

// ParsePayloadKey decodes a 32-byte AES-256 key written as 64 hex digits
// (`openssl rand -hex 32`) or as standard base64 (`openssl rand -base64 32`).
// Errors never contain the key.
func ParsePayloadKey(raw string) ([]byte, error) {
	if len(raw) == 64 {
		if key, err := hex.DecodeString(raw); err == nil {
			return key, nil
		}
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return nil, fmt.Errorf("a payload key must be 32 bytes written as 64 hex digits or as base64, but the %d characters given are neither. Generate a key with `openssl rand -hex 32`", len(raw))
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("a payload key must be 32 bytes, but the base64 given decodes to %d bytes. Generate a key with `openssl rand -hex 32`", len(key))
	}
	return key, nil
}

// notURLSafe reports whether r is outside the unreserved characters of a
// URL (RFC 3986, section 2.3).
func notURLSafe(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return false
	case r == '-', r == '_', r == '.', r == '~':
		return false
	}
	return true
}
