// Package payloadcodec encrypts Temporal payloads with AES-256-GCM, so that
// the Temporal server stores workflow inputs, results, summaries and
// failure messages as ciphertext. It provides the converters that every
// Temporal client, worker and replayer of the service shares, and the HTTP
// handler of `aihigress codec-server`.
package payloadcodec

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"
)

// Payload metadata of an encrypted payload. The data is the 12-byte nonce
// followed by the AES-GCM ciphertext and tag of the original payload,
// serialized as a protobuf message with its own metadata.
const (
	// EncodingEncrypted is the value of the "encoding" metadata.
	EncodingEncrypted = "binary/encrypted"
	// MetadataKeyID is the entry with the id of the encrypting key, as KeyID
	// computes it.
	MetadataKeyID = "encryption-key-id"
	// MetadataCipher names the cipher, so that a later format can coexist.
	MetadataCipher  = "encryption-cipher"
	cipherAES256GCM = "AES-256-GCM"
)

// Errors of Decode, for errors.Is.
var (
	ErrUnknownKey = errors.New("unknown payload key")
	ErrDecrypt    = errors.New("payload decryption failed")
)

// KeyID returns the public identifier of a payload key, which is the first
// 8 hex digits of its SHA-256 hash.
func KeyID(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:4])
}

// Codec is a converter.PayloadCodec. Encode encrypts with the current key,
// and Decode decrypts with whichever configured key the payload names.
// Payloads that are not encrypted pass through both unchanged, so that
// histories started before encryption was turned on stay readable.
type Codec struct {
	// current is nil when only old keys are configured, and Encode then
	// leaves payloads in clear.
	current *aeadKey
	byID    map[string]*aeadKey
}

type aeadKey struct {
	id   string
	raw  []byte
	aead cipher.AEAD
}

// NewCodec returns a codec that encrypts with current, which may be nil,
// and decrypts with current and every key in old. Every key must be 32
// bytes.
func NewCodec(current []byte, old [][]byte) (*Codec, error) {
	c := &Codec{byID: map[string]*aeadKey{}}
	for i, raw := range slices.Concat([][]byte{current}, old) {
		if raw == nil && i == 0 {
			continue
		}
		key, err := newAEADKey(raw)
		if err != nil {
			return nil, err
		}
		if existing, ok := c.byID[key.id]; ok {
			if !bytes.Equal(existing.raw, key.raw) {
				return nil, fmt.Errorf("two payload keys share the key id %s, so generate a new key", key.id)
			}
		} else {
			c.byID[key.id] = key
		}
		if i == 0 {
			c.current = c.byID[key.id]
		}
	}
	if len(c.byID) == 0 {
		return nil, errors.New("no payload key given")
	}
	return c, nil
}

func newAEADKey(raw []byte) (*aeadKey, error) {
	if len(raw) != 32 {
		return nil, fmt.Errorf("a payload key must be 32 bytes for AES-256, got %d", len(raw))
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("create AES cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("create AES-GCM: %w", err)
	}
	return &aeadKey{id: KeyID(raw), raw: raw, aead: aead}, nil
}

// CurrentKeyID returns the id of the key that Encode uses, or "" when
// Encode leaves payloads in clear.
func (c *Codec) CurrentKeyID() string {
	if c.current == nil {
		return ""
	}
	return c.current.id
}

// Encode implements converter.PayloadCodec.
func (c *Codec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	if c.current == nil {
		return payloads, nil
	}
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		encrypted, err := c.encrypt(p)
		if err != nil {
			return payloads, err
		}
		out[i] = encrypted
	}
	return out, nil
}

// Decode implements converter.PayloadCodec.
func (c *Codec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		decrypted, err := c.decrypt(p)
		if err != nil {
			return payloads, err
		}
		out[i] = decrypted
	}
	return out, nil
}

func (c *Codec) encrypt(p *commonpb.Payload) (*commonpb.Payload, error) {
	plaintext, err := proto.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("serialize payload for encryption: %w", err)
	}
	metadata := map[string][]byte{
		converter.MetadataEncoding: []byte(EncodingEncrypted),
		MetadataKeyID:              []byte(c.current.id),
		MetadataCipher:             []byte(cipherAES256GCM),
	}
	// NOTE: random 96-bit nonces stay within the bound of NIST SP 800-38D
	// only up to 2^32 payloads per key, so rotate the key long before.
	nonce := make([]byte, c.current.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("generate nonce: %w", err)
	}
	data := c.current.aead.Seal(nonce, nonce, plaintext, additionalData(metadata))
	return &commonpb.Payload{Metadata: metadata, Data: data}, nil
}

func (c *Codec) decrypt(p *commonpb.Payload) (*commonpb.Payload, error) {
	if string(p.GetMetadata()[converter.MetadataEncoding]) != EncodingEncrypted {
		return p, nil
	}
	id := string(p.Metadata[MetadataKeyID])
	key, ok := c.byID[id]
	if !ok {
		return nil, fmt.Errorf("%w: the payload was encrypted with key id %q, which is neither TEMPORAL_PAYLOAD_KEY nor in TEMPORAL_PAYLOAD_KEYS_OLD", ErrUnknownKey, id)
	}
	if name := string(p.Metadata[MetadataCipher]); name != cipherAES256GCM {
		return nil, fmt.Errorf("%w: unsupported cipher %q, want %s", ErrDecrypt, name, cipherAES256GCM)
	}
	nonceSize := key.aead.NonceSize()
	if len(p.Data) < nonceSize+key.aead.Overhead() {
		return nil, fmt.Errorf("%w: the data is %d bytes, shorter than a nonce and a tag", ErrDecrypt, len(p.Data))
	}
	plaintext, err := key.aead.Open(nil, p.Data[:nonceSize], p.Data[nonceSize:], additionalData(p.Metadata))
	if err != nil {
		return nil, fmt.Errorf("%w with key id %s: the ciphertext or its metadata was changed after encryption", ErrDecrypt, id)
	}
	var decrypted commonpb.Payload
	if err := proto.Unmarshal(plaintext, &decrypted); err != nil {
		return nil, fmt.Errorf("%w: the decrypted payload is not a protobuf Payload: %v", ErrDecrypt, err)
	}
	return &decrypted, nil
}

// additionalData authenticates every metadata entry of an encrypted
// payload, so that an entry added, removed or changed in storage makes
// decryption fail. It serializes the entries sorted by name, each name and
// value prefixed with its length.
func additionalData(metadata map[string][]byte) []byte {
	names := make([]string, 0, len(metadata))
	for name := range metadata {
		names = append(names, name)
	}
	slices.Sort(names)
	ad := []byte("aihigress-payload-v1")
	for _, name := range names {
		ad = binary.AppendUvarint(ad, uint64(len(name)))
		ad = append(ad, name...)
		ad = binary.AppendUvarint(ad, uint64(len(metadata[name])))
		ad = append(ad, metadata[name]...)
	}
	return ad
}
