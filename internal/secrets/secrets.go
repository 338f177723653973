// Package secrets derives purpose-bound keys from MASTER_KEY and uses them to
// encrypt upstream credentials (AES-256-GCM) and to hash API keys and sign
// links (HMAC-SHA256).
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// Key purposes. Each purpose gets an independent key, so that a value made
// for one use can never be accepted by another.
const (
	PurposeProviderKeys = "aihigress provider keys v1"
	PurposeAPIKeys      = "aihigress api keys v1"
	PurposeMediaLinks   = "aihigress media links v1"
)

// MinMasterKeyLength is the minimum length of MASTER_KEY in bytes.
const MinMasterKeyLength = 32

// ErrDecrypt is returned when a ciphertext is malformed, was sealed under
// another MASTER_KEY or was altered.
var ErrDecrypt = errors.New("decrypt secret: wrong MASTER_KEY or corrupted ciphertext")

// DeriveKey returns a 32-byte key for purpose, derived from master with
// HKDF-SHA256.
func DeriveKey(master, purpose string) ([]byte, error) {
	if len(master) < MinMasterKeyLength {
		return nil, fmt.Errorf("MASTER_KEY must be at least %d characters, got %d", MinMasterKeyLength, len(master))
	}
	key, err := hkdf.Key(sha256.New, []byte(master), nil, purpose, 32)
	if err != nil {
		return nil, fmt.Errorf("derive %s key: %w", purpose, err)
	}
	return key, nil
}

// Cipher seals and opens secrets with AES-256-GCM. It is safe for concurrent
// use.
type Cipher struct {
	aead cipher.AEAD
}

// NewCipher returns a Cipher keyed for purpose.
func NewCipher(master, purpose string) (*Cipher, error) {
	key, err := DeriveKey(master, purpose)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("create AES cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("create GCM: %w", err)
	}
	return &Cipher{aead: aead}, nil
}

// Seal encrypts plaintext. The result is the random nonce followed by the
// ciphertext and tag.
func (c *Cipher) Seal(plaintext []byte) []byte {
	nonce := make([]byte, c.aead.NonceSize(), c.aead.NonceSize()+len(plaintext)+c.aead.Overhead())
	_, _ = rand.Read(nonce) // crypto/rand.Read never returns an error since Go 1.24.
	return c.aead.Seal(nonce, nonce, plaintext, nil)
}

// Open decrypts a value made by Seal. Any failure returns ErrDecrypt.
func (c *Cipher) Open(sealed []byte) ([]byte, error) {
	if len(sealed) < c.aead.NonceSize()+c.aead.Overhead() {
		return nil, ErrDecrypt
	}
	nonce, ciphertext := sealed[:c.aead.NonceSize()], sealed[c.aead.NonceSize():]
	plaintext, err := c.aead.Open(nil, nonce, ciphertext, nil)
	if err != nil {
		return nil, ErrDecrypt
	}
	return plaintext, nil
}

// MAC computes HMAC-SHA256 tags under a purpose-bound key. It is safe for
// concurrent use.
type MAC struct {
	key []byte
}

// NewMAC returns a MAC keyed for purpose.
func NewMAC(master, purpose string) (*MAC, error) {
	key, err := DeriveKey(master, purpose)
	if err != nil {
		return nil, err
	}
	return &MAC{key: key}, nil
}

// Sum returns the hex-encoded HMAC-SHA256 of data.
func (m *MAC) Sum(data string) string {
	h := hmac.New(sha256.New, m.key)
	h.Write([]byte(data))
	return hex.EncodeToString(h.Sum(nil))
}

// Equal reports, in constant time, whether tag is the hex HMAC of data.
func (m *MAC) Equal(data, tag string) bool {
	return hmac.Equal([]byte(m.Sum(data)), []byte(tag))
}
