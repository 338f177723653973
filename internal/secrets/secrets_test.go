package secrets

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

const master = "0123456789abcdef0123456789abcdef"

func TestCipherRoundTrip(t *testing.T) {
	c, err := NewCipher(master, PurposeProviderKeys)
	if err != nil {
		t.Fatal(err)
	}
	for _, plaintext := range []string{"", "sk-test-1234", strings.Repeat("x", 4096)} {
		sealed := c.Seal([]byte(plaintext))
		if len(plaintext) > 0 && bytes.Contains(sealed, []byte(plaintext)) {
			t.Errorf("sealed value contains the plaintext %q", plaintext)
		}
		got, err := c.Open(sealed)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if string(got) != plaintext {
			t.Errorf("Open = %q, want %q", got, plaintext)
		}
	}
}

func TestCipherNoncesDiffer(t *testing.T) {
	c, _ := NewCipher(master, PurposeProviderKeys)
	if bytes.Equal(c.Seal([]byte("same")), c.Seal([]byte("same"))) {
		t.Error("two seals of the same plaintext are equal; the nonce is not random")
	}
}

func TestCipherOpenRejects(t *testing.T) {
	c, _ := NewCipher(master, PurposeProviderKeys)
	other, _ := NewCipher(strings.Repeat("z", 32), PurposeProviderKeys)
	otherPurpose, _ := NewCipher(master, PurposeAPIKeys)
	sealed := c.Seal([]byte("sk-secret"))
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1

	cases := []struct {
		name   string
		cipher *Cipher
		input  []byte
	}{
		{"tampered", c, tampered},
		{"short", c, sealed[:10]},
		{"empty", c, nil},
		{"other master key", other, sealed},
		{"other purpose", otherPurpose, sealed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.cipher.Open(tc.input); !errors.Is(err, ErrDecrypt) {
				t.Errorf("Open error = %v, want ErrDecrypt", err)
			}
		})
	}
}

func TestDeriveKeyShortMaster(t *testing.T) {
	if _, err := DeriveKey("short", PurposeAPIKeys); err == nil {
		t.Error("DeriveKey accepted a 5-character master key")
	}
}

func TestMAC(t *testing.T) {
	m, _ := NewMAC(master, PurposeAPIKeys)
	other, _ := NewMAC(master, PurposeMediaLinks)
	tag := m.Sum("ahk-abc")
	if len(tag) != 64 {
		t.Errorf("tag length = %d, want 64 hex characters", len(tag))
	}
	if !m.Equal("ahk-abc", tag) {
		t.Error("Equal rejected its own tag")
	}
	if m.Equal("ahk-abd", tag) {
		t.Error("Equal accepted the tag of other data")
	}
	if other.Sum("ahk-abc") == tag {
		t.Error("two purposes produced the same tag")
	}
}
