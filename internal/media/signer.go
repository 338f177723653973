package media

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aihigress/aihigress/internal/secrets"
)

// PathPrefix is the path under which the handler serves signed links.
const PathPrefix = "/media/images/"

// maxObjectKeyLength matches the 1023-byte key limit of Aliyun OSS, so a key
// that one storage accepts fits every storage.
const maxObjectKeyLength = 1023

// ErrInvalidKey is returned for an object key that could leave the storage's
// namespace or that no storage can hold. checkObjectKey lists the rules.
var ErrInvalidKey = errors.New("invalid object key")

// Errors of Signer.Verify. The handler responds to all of them with the same
// 403 response, so that a client cannot probe which check failed.
var (
	ErrLinkKey       = errors.New("media link object key rejected")
	ErrLinkExpires   = errors.New("media link expires parameter malformed")
	ErrLinkSignature = errors.New("media link signature does not match")
	ErrLinkExpired   = errors.New("media link expired")
)

// Signer makes and checks signed media links. A link carries its expiry in
// Unix seconds and sig = hex(HMAC-SHA256(key, objectKey + "\n" + expires)),
// where the key is derived from MASTER_KEY for secrets.PurposeMediaLinks. It
// is safe for concurrent use.
type Signer struct {
	mac    *secrets.MAC
	prefix string
	ttl    time.Duration
}

// NewSigner returns a Signer for links to keys under prefix + "/" that stay
// valid for ttl, which must be at least one second because expiry has
// second precision.
func NewSigner(masterKey, prefix string, ttl time.Duration) (*Signer, error) {
	if err := checkObjectKey(prefix); err != nil || strings.Contains(prefix, "%") {
		return nil, fmt.Errorf("media link prefix %q must be a relative path without '..', '%%', '\\', control characters or empty segments", prefix)
	}
	if ttl < time.Second {
		return nil, fmt.Errorf("media link TTL must be at least 1s, got %s", ttl)
	}
	mac, err := secrets.NewMAC(masterKey, secrets.PurposeMediaLinks)
	if err != nil {
		return nil, fmt.Errorf("create media link signer: %w", err)
	}
	return &Signer{mac: mac, prefix: prefix, ttl: ttl}, nil
}

// Path returns the signed path and query of objectKey, valid from now for
// the signer's TTL: /media/images/<key>?expires=<unix>&sig=<hex>. Each
// segment of the key is path-escaped. Path signs any key, but Verify rejects
// keys that break its rules, so such a link never works.
func (s *Signer) Path(objectKey string, now time.Time) string {
	expires := strconv.FormatInt(now.Add(s.ttl).Unix(), 10)
	segments := strings.Split(objectKey, "/")
	for i, segment := range segments {
		segments[i] = url.PathEscape(segment)
	}
	return PathPrefix + strings.Join(segments, "/") + "?expires=" + expires + "&sig=" + s.mac.Sum(signedMessage(objectKey, expires))
}

// URL returns Path prefixed with baseURL, a scheme and host such as
// https://api.example.com. A trailing slash of baseURL is dropped.
func (s *Signer) URL(baseURL, objectKey string, now time.Time) string {
	return strings.TrimRight(baseURL, "/") + s.Path(objectKey, now)
}

// Verify checks a link's object key, as decoded once from the request path,
// and its expires and sig query values. It returns an error wrapping
// ErrLinkKey, ErrLinkExpires, ErrLinkSignature or ErrLinkExpired.
//
// The key must lie under the signer's prefix and pass checkObjectKey. It
// must not contain '%', because a '%' left after the one decoding of the
// path means the client encoded the key twice, which is how a "%252e%252e"
// would smuggle ".." past a check on the decoded key. Keys from ObjectKey
// never contain '%'.
//
// An expiry further away than the TTL is accepted when the signature
// matches, since only the holder of MASTER_KEY can make one.
func (s *Signer) Verify(objectKey, expires, sig string, now time.Time) error {
	if err := checkObjectKey(objectKey); err != nil {
		return fmt.Errorf("%w: %w", ErrLinkKey, err)
	}
	if strings.Contains(objectKey, "%") {
		return fmt.Errorf("%w: the key contains '%%', so the path was percent-encoded twice", ErrLinkKey)
	}
	if !strings.HasPrefix(objectKey, s.prefix+"/") {
		return fmt.Errorf("%w: the key is outside the prefix %q", ErrLinkKey, s.prefix)
	}

	// Only the canonical decimal form is accepted, so that one expiry has
	// one spelling and one signature.
	expiresUnix, err := strconv.ParseInt(expires, 10, 64)
	if err != nil || strconv.FormatInt(expiresUnix, 10) != expires {
		return fmt.Errorf("%w: %q is not a Unix time in seconds", ErrLinkExpires, expires)
	}

	if !s.mac.Equal(signedMessage(objectKey, expires), sig) {
		return ErrLinkSignature
	}
	if now.Unix() >= expiresUnix {
		return fmt.Errorf("%w at %s", ErrLinkExpired, time.Unix(expiresUnix, 0).UTC().Format(time.RFC3339))
	}
	return nil
}

func signedMessage(objectKey, expires string) string {
	return objectKey + "\n" + expires
}

// checkObjectKey returns an error wrapping ErrInvalidKey unless key is a
// relative slash-separated path of at most 1023 bytes of valid UTF-8. Its
// segments must be non-empty and must not start with '.', and it must not
// contain "..", a backslash or a control character (NUL included). Keys
// that pass cannot leave a directory they are joined to. Rejecting segments
// that start with '.' also keeps keys apart from the local storage's
// temporary files.
func checkObjectKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: the key is empty", ErrInvalidKey)
	case len(key) > maxObjectKeyLength:
		return fmt.Errorf("%w: the key has %d bytes, more than %d", ErrInvalidKey, len(key), maxObjectKeyLength)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: the key is not valid UTF-8", ErrInvalidKey)
	case strings.Contains(key, ".."):
		return fmt.Errorf("%w: the key contains '..'", ErrInvalidKey)
	case strings.Contains(key, `\`):
		return fmt.Errorf("%w: the key contains a backslash", ErrInvalidKey)
	case strings.IndexFunc(key, isControl) >= 0:
		return fmt.Errorf("%w: the key contains a control character", ErrInvalidKey)
	}
	for segment := range strings.SplitSeq(key, "/") {
		if segment == "" {
			return fmt.Errorf("%w: the key is absolute or has an empty segment", ErrInvalidKey)
		}
		if segment[0] == '.' {
			return fmt.Errorf("%w: the key has a segment starting with '.'", ErrInvalidKey)
		}
	}
	return nil
}

func isControl(r rune) bool {
	return r < 0x20 || (r >= 0x7f && r < 0xa0)
}
