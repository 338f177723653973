package config

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
)

func TestParsePayloadKey(t *testing.T) {
	key := bytes.Repeat([]byte{0xa5, 0x01}, 16)
	tests := []struct {
		name    string
		raw     string
		wantErr string
	}{
		{"hex", hex.EncodeToString(key), ""},
		{"upper-case hex", strings.ToUpper(hex.EncodeToString(key)), ""},
		{"base64", base64.StdEncoding.EncodeToString(key), ""},
		{"base64 of 16 bytes", base64.StdEncoding.EncodeToString(key[:16]), "decodes to 16 bytes"},
		{"hex of 31 bytes", hex.EncodeToString(key[:31]), "32 bytes"},
		{"64 characters, not hex", strings.Repeat("z", 63) + "!", "neither"},
		{"passphrase", "correct horse battery staple", "neither"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePayloadKey(tt.raw)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParsePayloadKey error = %v, want none", err)
				}
				if !bytes.Equal(got, key) {
					t.Errorf("ParsePayloadKey = %x, want %x", got, key)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParsePayloadKey error = %v, want one containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), tt.raw) {
				t.Errorf("error %q repeats the key", err)
			}
		})
	}
}

func TestLoadPayloadKeys(t *testing.T) {
	current := strings.Repeat("11", 32)
	old1 := strings.Repeat("22", 32)
	old2 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x33}, 32))

	cfg, err := Load(envOf(map[string]string{
		"TEMPORAL_PAYLOAD_KEY":      current,
		"TEMPORAL_PAYLOAD_KEYS_OLD": old1 + ", " + old2,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cfg.Payloads.Key, bytes.Repeat([]byte{0x11}, 32)) {
		t.Errorf("Key = %x", cfg.Payloads.Key)
	}
	if len(cfg.Payloads.OldKeys) != 2 {
		t.Fatalf("OldKeys has %d keys, want 2", len(cfg.Payloads.OldKeys))
	}
	if !bytes.Equal(cfg.Payloads.OldKeys[1], bytes.Repeat([]byte{0x33}, 32)) {
		t.Errorf("OldKeys[1] = %x", cfg.Payloads.OldKeys[1])
	}
	if !cfg.Payloads.Enabled() {
		t.Error("Enabled() = false with keys set")
	}

	unset, err := Load(envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if unset.Payloads.Enabled() {
		t.Error("Enabled() = true without keys")
	}
}

func TestLoadCodecServerDefaults(t *testing.T) {
	cfg, err := Load(envOf(map[string]string{"TEMPORAL_UI_PORT": "9233"}))
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.CodecServer
	if got.Addr != "127.0.0.1:8234" {
		t.Errorf("Addr = %q", got.Addr)
	}
	if got.Token != "" {
		t.Errorf("Token = %q, want empty", got.Token)
	}
	if want := []string{"http://127.0.0.1:9233", "http://localhost:9233"}; !slices.Equal(got.CORSOrigins, want) {
		t.Errorf("CORSOrigins = %v, want %v", got.CORSOrigins, want)
	}
	if got.MaxBodyBytes != 4<<20 {
		t.Errorf("MaxBodyBytes = %d", got.MaxBodyBytes)
	}
}

func TestLoadRejectsPayloadSettings(t *testing.T) {
	good := strings.Repeat("ab", 32)
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"short key", map[string]string{"TEMPORAL_PAYLOAD_KEY": "abcd"}, "TEMPORAL_PAYLOAD_KEY"},
		{"bad old key", map[string]string{"TEMPORAL_PAYLOAD_KEY": good, "TEMPORAL_PAYLOAD_KEYS_OLD": good + ",nope"}, "TEMPORAL_PAYLOAD_KEYS_OLD item 2"},
		{"short token", map[string]string{"CODEC_SERVER_TOKEN": "short"}, "CODEC_SERVER_TOKEN"},
		{"token with slash", map[string]string{"CODEC_SERVER_TOKEN": strings.Repeat("a", 32) + "/b"}, "CODEC_SERVER_TOKEN"},
		{"wildcard origin", map[string]string{"CODEC_SERVER_CORS_ORIGINS": "*"}, "CODEC_SERVER_CORS_ORIGINS"},
		{"origin with path", map[string]string{"CODEC_SERVER_CORS_ORIGINS": "https://temporal.example.com/ui"}, "CODEC_SERVER_CORS_ORIGINS"},
		{"tiny body limit", map[string]string{"CODEC_SERVER_MAX_BODY_BYTES": "10"}, "CODEC_SERVER_MAX_BODY_BYTES"},
		{"unknown compression", map[string]string{"TEMPORAL_GRPC_COMPRESSION": "zstd"}, "TEMPORAL_GRPC_COMPRESSION must be none or gzip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(envOf(tt.env))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Load error = %v, want one naming %s", err, tt.wantErr)
			}
		})
	}
}

func TestLoadAcceptsCodecServerSettings(t *testing.T) {
	token := strings.Repeat("0123456789abcdef", 4)
	cfg, err := Load(envOf(map[string]string{
		"CODEC_SERVER_ADDR":         "127.0.0.1:9999",
		"CODEC_SERVER_TOKEN":        token,
		"CODEC_SERVER_CORS_ORIGINS": "https://temporal.example.com",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CodecServer.Token != token || cfg.CodecServer.Addr != "127.0.0.1:9999" {
		t.Errorf("CodecServer = %+v", cfg.CodecServer)
	}
	if !slices.Equal(cfg.CodecServer.CORSOrigins, []string{"https://temporal.example.com"}) {
		t.Errorf("CORSOrigins = %v", cfg.CodecServer.CORSOrigins)
	}
}

func TestLoadGRPCCompression(t *testing.T) {
	tests := []struct {
		value string
		want  string
	}{
		{"", "none"},
		{"none", "none"},
		{"gzip", "gzip"},
		{" GZIP ", "gzip"},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			cfg, err := Load(envOf(map[string]string{"TEMPORAL_GRPC_COMPRESSION": tt.value}))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if cfg.TemporalGRPCCompression != tt.want {
				t.Errorf("TemporalGRPCCompression = %q, want %q", cfg.TemporalGRPCCompression, tt.want)
			}
		})
	}
}
