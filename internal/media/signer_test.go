package media

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/secrets"
)

const testMasterKey = "media-links-test-master-key-0123456789abcdef"

func newTestSigner(t testing.TB, ttl time.Duration) *Signer {
	t.Helper()
	signer, err := NewSigner(testMasterKey, "aihigress", ttl)
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	return signer
}

// expectedSig computes the signature independently of Signer, from the
// documented formula hex(HMAC-SHA256(derived key, key + "\n" + expires)).
func expectedSig(t testing.TB, objectKey, expires string) string {
	t.Helper()
	key, err := secrets.DeriveKey(testMasterKey, secrets.PurposeMediaLinks)
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(objectKey + "\n" + expires))
	return hex.EncodeToString(mac.Sum(nil))
}

// splitLink returns the escaped key, expires and sig of a Signer.Path.
func splitLink(t testing.TB, link string) (escapedKey, expires, sig string) {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatalf("parse %q: %v", link, err)
	}
	escapedKey, ok := strings.CutPrefix(u.EscapedPath(), PathPrefix)
	if !ok {
		t.Fatalf("link %q does not start with %s", link, PathPrefix)
	}
	query := u.Query()
	return escapedKey, query.Get("expires"), query.Get("sig")
}

// tamperSig changes the last hex digit of sig.
func tamperSig(sig string) string {
	last := byte('0')
	if sig[len(sig)-1] == '0' {
		last = '1'
	}
	return sig[:len(sig)-1] + string(last)
}

func TestNewSignerRejectsBadSettings(t *testing.T) {
	cases := []struct {
		name, master, prefix string
		ttl                  time.Duration
	}{
		{"short master key", "too-short", "aihigress", time.Hour},
		{"empty prefix", testMasterKey, "", time.Hour},
		{"prefix with dots", testMasterKey, "a/../b", time.Hour},
		{"prefix with percent", testMasterKey, "a%2e", time.Hour},
		{"prefix with slash at start", testMasterKey, "/aihigress", time.Hour},
		{"prefix with backslash", testMasterKey, `a\b`, time.Hour},
		{"ttl below a second", testMasterKey, "aihigress", 500 * time.Millisecond},
		{"zero ttl", testMasterKey, "aihigress", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewSigner(tc.master, tc.prefix, tc.ttl); err == nil {
				t.Errorf("NewSigner(%q, %q, %s) succeeded, want an error", tc.master, tc.prefix, tc.ttl)
			}
		})
	}
}

func TestSignerPathFormat(t *testing.T) {
	signer := newTestSigner(t, time.Hour)
	now := time.Unix(1_800_000_000, 600_000_000)

	cases := []struct {
		name, key, wantEscaped string
	}{
		{"object key", "aihigress/images/2026/12/05/0b6f.png", "aihigress/images/2026/12/05/0b6f.png"},
		{"segments escaped", "aihigress/a b/c?d#e%f.png", "aihigress/a%20b/c%3Fd%23e%25f.png"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			link := signer.Path(tc.key, now)
			escaped, expires, sig := splitLink(t, link)
			if escaped != tc.wantEscaped {
				t.Errorf("escaped key = %q, want %q", escaped, tc.wantEscaped)
			}
			if want := strconv.FormatInt(now.Add(time.Hour).Unix(), 10); expires != want {
				t.Errorf("expires = %q, want %q", expires, want)
			}
			if want := expectedSig(t, tc.key, expires); sig != want {
				t.Errorf("sig = %q, want %q", sig, want)
			}
		})
	}
}

func TestSignerURL(t *testing.T) {
	signer := newTestSigner(t, time.Hour)
	now := time.Unix(1_800_000_000, 0)
	key := "aihigress/images/x.png"
	want := "https://api.example.invalid" + signer.Path(key, now)
	for _, base := range []string{"https://api.example.invalid", "https://api.example.invalid/"} {
		if got := signer.URL(base, key, now); got != want {
			t.Errorf("URL(%q) = %q, want %q", base, got, want)
		}
	}
}

func TestSignerVerify(t *testing.T) {
	signer := newTestSigner(t, time.Hour)
	longSigner, err := NewSigner(testMasterKey, "aihigress", 1000*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherMaster, err := NewSigner(testMasterKey+"-other", "aihigress", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	signedAt := time.Unix(1_800_000_000, 0)
	expiresAt := signedAt.Add(time.Hour)
	key := "aihigress/images/2026/12/05/0b6f.png"

	// sign returns the decoded key, expires and sig of a link made by s.
	sign := func(s *Signer, objectKey string) (string, string) {
		_, expires, sig := splitLink(t, s.Path(objectKey, signedAt))
		return expires, sig
	}
	expires, sig := sign(signer, key)
	tampered := tamperSig(sig)
	longExpires, longSig := sign(longSigner, key)
	otherExpires, otherSig := sign(otherMaster, key)

	cases := []struct {
		name, key, expires, sig string
		now                     time.Time
		want                    error
	}{
		{"valid", key, expires, sig, signedAt, nil},
		{"valid one second before expiry", key, expires, sig, expiresAt.Add(-time.Second), nil},
		{"expired at expiry", key, expires, sig, expiresAt, ErrLinkExpired},
		{"expired later", key, expires, sig, expiresAt.Add(time.Hour), ErrLinkExpired},
		{"tampered sig", key, expires, tampered, signedAt, ErrLinkSignature},
		{"uppercase sig", key, expires, strings.ToUpper(sig), signedAt, ErrLinkSignature},
		{"empty sig", key, expires, "", signedAt, ErrLinkSignature},
		{"sig of other master key", key, otherExpires, otherSig, signedAt, ErrLinkSignature},
		{"later expires with old sig", key, strconv.FormatInt(expiresAt.Unix()+3600, 10), sig, signedAt, ErrLinkSignature},
		{"other key with sig", "aihigress/images/2026/12/05/other.png", expires, sig, signedAt, ErrLinkSignature},
		{"far expiry with valid sig", key, longExpires, longSig, signedAt.Add(500 * time.Hour), nil},
		{"expires with plus", key, "+" + expires, sig, signedAt, ErrLinkExpires},
		{"expires with leading zero", key, "0" + expires, sig, signedAt, ErrLinkExpires},
		{"expires not a number", key, "soon", sig, signedAt, ErrLinkExpires},
		{"expires empty", key, "", sig, signedAt, ErrLinkExpires},
		{"expires overflow", key, "99999999999999999999", sig, signedAt, ErrLinkExpires},
		{"outside prefix", "other/images/x.png", expires, sig, signedAt, ErrLinkKey},
		{"prefix look-alike", "aihigress-other/x.png", expires, sig, signedAt, ErrLinkKey},
		{"prefix alone", "aihigress", expires, sig, signedAt, ErrLinkKey},
		{"dot dot segment", "aihigress/../secret.png", expires, sig, signedAt, ErrLinkKey},
		{"dot dot inside name", "aihigress/a..b.png", expires, sig, signedAt, ErrLinkKey},
		{"dot segment", "aihigress/./x.png", expires, sig, signedAt, ErrLinkKey},
		{"hidden segment", "aihigress/.tmp-x", expires, sig, signedAt, ErrLinkKey},
		{"backslash", `aihigress\..\secret.png`, expires, sig, signedAt, ErrLinkKey},
		{"absolute", "/etc/passwd", expires, sig, signedAt, ErrLinkKey},
		{"absolute under prefix", "/aihigress/x.png", expires, sig, signedAt, ErrLinkKey},
		{"empty segment", "aihigress//x.png", expires, sig, signedAt, ErrLinkKey},
		{"trailing slash", "aihigress/images/", expires, sig, signedAt, ErrLinkKey},
		{"NUL", "aihigress/x\x00.png", expires, sig, signedAt, ErrLinkKey},
		{"newline", "aihigress/x\n.png", expires, sig, signedAt, ErrLinkKey},
		{"DEL", "aihigress/x\x7f.png", expires, sig, signedAt, ErrLinkKey},
		{"invalid UTF-8", "aihigress/x\xff.png", expires, sig, signedAt, ErrLinkKey},
		{"percent left after decode", "aihigress/%2e%2e/secret.png", expires, sig, signedAt, ErrLinkKey},
		{"percent in name", "aihigress/100%.png", expires, sig, signedAt, ErrLinkKey},
		{"empty key", "", expires, sig, signedAt, ErrLinkKey},
		{"too long", "aihigress/" + strings.Repeat("a", 1100), expires, sig, signedAt, ErrLinkKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := signer.Verify(tc.key, tc.expires, tc.sig, tc.now)
			if tc.want == nil {
				if err != nil {
					t.Errorf("Verify = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("Verify = %v, want an error wrapping %v", err, tc.want)
			}
		})
	}
}

// TestSignerVerifyKeyRulesWithValidSig shows that the key rules hold on
// their own: each key below carries a matching signature.
func TestSignerVerifyKeyRulesWithValidSig(t *testing.T) {
	signer := newTestSigner(t, time.Hour)
	now := time.Unix(1_800_000_000, 0)
	keys := []string{
		"other/x.png",
		"aihigress/../secret.png",
		`aihigress\x.png`,
		"/aihigress/x.png",
		"aihigress/%2e%2e/x.png",
		"aihigress/x\x00.png",
	}
	for _, key := range keys {
		t.Run(key, func(t *testing.T) {
			_, expires, _ := splitLink(t, signer.Path(key, now))
			sig := expectedSig(t, key, expires)
			if err := signer.Verify(key, expires, sig, now); !errors.Is(err, ErrLinkKey) {
				t.Errorf("Verify(%q) = %v, want ErrLinkKey", key, err)
			}
		})
	}
}
