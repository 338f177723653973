package payloadcodec

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"
)

func testKey(b byte) []byte {
	return bytes.Repeat([]byte{b}, 32)
}

type runInput struct {
	RunID  string
	Prompt string
}

// encodeValue converts value to one payload with the SDK's default
// converter, then encrypts it with codec.
func encodeValue(t *testing.T, codec *Codec, value any) *commonpb.Payload {
	t.Helper()
	plain, err := converter.GetDefaultDataConverter().ToPayload(value)
	if err != nil {
		t.Fatal(err)
	}
	encoded, err := codec.Encode([]*commonpb.Payload{plain})
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return encoded[0]
}

func TestCodecRoundTrip(t *testing.T) {
	codec, err := NewCodec(testKey(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	dc := converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), codec)
	in := runInput{RunID: "run-0f3a", Prompt: "tell me a secret"}

	payload, err := dc.ToPayload(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(payload.Metadata[converter.MetadataEncoding]); got != EncodingEncrypted {
		t.Errorf("encoding = %q, want %q", got, EncodingEncrypted)
	}
	if got := string(payload.Metadata[MetadataKeyID]); got != KeyID(testKey(1)) {
		t.Errorf("key id = %q, want %q", got, KeyID(testKey(1)))
	}
	for _, clear := range []string{in.RunID, in.Prompt, "json/plain"} {
		if bytes.Contains(payload.Data, []byte(clear)) {
			t.Errorf("encrypted data contains %q", clear)
		}
	}

	var out runInput
	if err := dc.FromPayload(payload, &out); err != nil {
		t.Fatalf("FromPayload: %v", err)
	}
	if out != in {
		t.Errorf("round trip = %+v, want %+v", out, in)
	}
}

func TestCodecNonceDiffersPerPayload(t *testing.T) {
	codec, err := NewCodec(testKey(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	first := encodeValue(t, codec, "same value")
	second := encodeValue(t, codec, "same value")
	if bytes.Equal(first.Data, second.Data) {
		t.Error("two encryptions of one value are equal; the nonce is not random")
	}
}

func TestCodecKeyID(t *testing.T) {
	// The first 8 hex digits of SHA-256 of 32 bytes of 0x01, computed
	// with `printf '\x01%.0s' $(seq 32) | sha256sum`.
	if got, want := KeyID(testKey(1)), "72cd6e84"; got != want {
		t.Errorf("KeyID = %q, want %q", got, want)
	}
}

func TestCodecWrongKeyFails(t *testing.T) {
	writer, err := NewCodec(testKey(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	reader, err := NewCodec(testKey(2), nil)
	if err != nil {
		t.Fatal(err)
	}
	payload := encodeValue(t, writer, "secret")

	_, err = reader.Decode([]*commonpb.Payload{payload})
	if !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Decode error = %v, want ErrUnknownKey", err)
	}
	for _, want := range []string{KeyID(testKey(1)), "TEMPORAL_PAYLOAD_KEYS_OLD"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestCodecRotation(t *testing.T) {
	oldKey, newKey := testKey(1), testKey(2)
	before, err := NewCodec(oldKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	written := encodeValue(t, before, "written before rotation")

	after, err := NewCodec(newKey, [][]byte{oldKey})
	if err != nil {
		t.Fatal(err)
	}
	if after.CurrentKeyID() != KeyID(newKey) {
		t.Errorf("CurrentKeyID = %s, want the new key's %s", after.CurrentKeyID(), KeyID(newKey))
	}
	decoded, err := after.Decode([]*commonpb.Payload{written})
	if err != nil {
		t.Fatalf("decode a payload of the old key: %v", err)
	}
	var text string
	if err := converter.GetDefaultDataConverter().FromPayload(decoded[0], &text); err != nil {
		t.Fatal(err)
	}
	if text != "written before rotation" {
		t.Errorf("decoded %q", text)
	}

	fresh := encodeValue(t, after, "written after rotation")
	if got := string(fresh.Metadata[MetadataKeyID]); got != KeyID(newKey) {
		t.Errorf("new payload key id = %s, want %s", got, KeyID(newKey))
	}
	if _, err := before.Decode([]*commonpb.Payload{fresh}); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("the old key alone decoded a new payload: error = %v", err)
	}
}

func TestCodecDecodeOnlyWithOldKeys(t *testing.T) {
	writer, err := NewCodec(testKey(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	written := encodeValue(t, writer, "old")

	decodeOnly, err := NewCodec(nil, [][]byte{testKey(1)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeOnly.Decode([]*commonpb.Payload{written}); err != nil {
		t.Errorf("decode with an old key: %v", err)
	}
	fresh := encodeValue(t, decodeOnly, "new")
	if got := string(fresh.Metadata[converter.MetadataEncoding]); got != "json/plain" {
		t.Errorf("encoding without a current key = %q, want json/plain", got)
	}
}

func TestCodecRejectsTampering(t *testing.T) {
	codec, err := NewCodec(testKey(1), [][]byte{testKey(2)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		tamper func(p *commonpb.Payload)
		want   error
	}{
		{"metadata entry added", func(p *commonpb.Payload) { p.Metadata["encoding-original"] = []byte("json/plain") }, ErrDecrypt},
		{"cipher entry removed", func(p *commonpb.Payload) { delete(p.Metadata, MetadataCipher) }, ErrDecrypt},
		{"key id of another configured key", func(p *commonpb.Payload) { p.Metadata[MetadataKeyID] = []byte(KeyID(testKey(2))) }, ErrDecrypt},
		{"unknown key id", func(p *commonpb.Payload) { p.Metadata[MetadataKeyID] = []byte("00000000") }, ErrUnknownKey},
		{"cipher renamed", func(p *commonpb.Payload) { p.Metadata[MetadataCipher] = []byte("AES-128-GCM") }, ErrDecrypt},
		{"ciphertext bit flipped", func(p *commonpb.Payload) { p.Data[len(p.Data)/2] ^= 1 }, ErrDecrypt},
		{"nonce changed", func(p *commonpb.Payload) { p.Data[0] ^= 1 }, ErrDecrypt},
		{"truncated", func(p *commonpb.Payload) { p.Data = p.Data[:20] }, ErrDecrypt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload := encodeValue(t, codec, "integrity matters")
			tt.tamper(payload)
			_, err := codec.Decode([]*commonpb.Payload{payload})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCodecPassesClearPayloads(t *testing.T) {
	codec, err := NewCodec(testKey(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	clear, err := converter.GetDefaultDataConverter().ToPayload("written before encryption was on")
	if err != nil {
		t.Fatal(err)
	}
	decoded, err := codec.Decode([]*commonpb.Payload{clear})
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if !proto.Equal(decoded[0], clear) {
		t.Errorf("a clear payload changed on decode: %v", decoded[0])
	}
}

func TestNewCodecRejectsBadKeys(t *testing.T) {
	tests := []struct {
		name    string
		current []byte
		old     [][]byte
		wantErr string
	}{
		{"no key", nil, nil, "no payload key"},
		{"short current key", testKey(1)[:16], nil, "32 bytes"},
		{"short old key", testKey(1), [][]byte{testKey(2)[:31]}, "32 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewCodec(tt.current, tt.old)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewCodec error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}

	// The same key listed as current and old is one key.
	codec, err := NewCodec(testKey(1), [][]byte{testKey(1)})
	if err != nil {
		t.Fatalf("NewCodec with a repeated key: %v", err)
	}
	if len(codec.byID) != 1 {
		t.Errorf("codec has %d keys, want 1", len(codec.byID))
	}
}

// BenchmarkCodecRoundTrip encrypts and decrypts one payload of the size of
// a chat activity input (about 150 bytes of JSON).
func BenchmarkCodecRoundTrip(b *testing.B) {
	codec, err := NewCodec(testKey(1), nil)
	if err != nil {
		b.Fatal(err)
	}
	plain, err := converter.GetDefaultDataConverter().ToPayload(map[string]any{
		"RunID": "01a243e7-870f-715c-9997-d2d654c42dcf", "Attempt": 1,
		"Candidate": map[string]string{"ProviderID": "openai-main", "Model": "gpt-4o-mini"},
	})
	if err != nil {
		b.Fatal(err)
	}
	payloads := []*commonpb.Payload{plain}
	for b.Loop() {
		encoded, err := codec.Encode(payloads)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := codec.Decode(encoded); err != nil {
			b.Fatal(err)
		}
	}
}
