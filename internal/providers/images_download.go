package providers

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
)

// maxDownloadRedirects caps the redirects that an image download follows.
const maxDownloadRedirects = 5

// downloadImage fetches the image number index from rawURL, which an
// upstream returned. The request carries no API key and none of the
// provider's headers, because the URL may point to any host, such as a
// storage service that authorizes through a signed query.
//
// Unless ImageDownloadAllowPrivate is on, the download and each redirect
// hop may only connect to public addresses or to p's base_url host (see
// downloadTransport). A rejected address fails like a malformed response.
func (c *Client) downloadImage(ctx context.Context, p Provider, index int, rawURL string) (GeneratedImage, error) {
	target, err := parseDownloadURL(rawURL)
	if err != nil {
		return GeneratedImage{}, &UpstreamError{Kind: ErrorMalformed, Message: fmt.Sprintf("image data[%d]: %v", index, err)}
	}
	where := describeURL(target)

	downloadCtx := ctx
	limit := c.opts.ImageDownloadTimeout
	if limit > 0 {
		var cancel context.CancelFunc
		cause := &timeoutError{limit: limit, waitingFor: "the download of image data[" + fmt.Sprint(index) + "] from " + where}
		downloadCtx, cancel = context.WithTimeoutCause(ctx, limit, cause)
		defer cancel()
	}

	req, err := http.NewRequestWithContext(downloadCtx, http.MethodGet, target.String(), nil)
	if err != nil {
		return GeneratedImage{}, &UpstreamError{Kind: ErrorMalformed, Message: fmt.Sprintf("image data[%d]: build request for %s: %v", index, where, err)}
	}
	req.Header.Set("Accept", "image/*")
	req.Header.Set("User-Agent", "aihigress")

	// The client shares the pooled transports but follows redirects, which
	// carry no credential here.
	downloader := &http.Client{Transport: c.downloadTransport(p), CheckRedirect: checkDownloadRedirect}

	failure := func(kind ErrorKind, status int, message string) error {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("image download on provider %q: %w", p.ID, ctxErr)
		}
		var timeout *timeoutError
		if errors.As(context.Cause(downloadCtx), &timeout) {
			return &UpstreamError{Kind: ErrorTimeout, StatusCode: status, Message: timeout.Error()}
		}
		return &UpstreamError{Kind: kind, StatusCode: status, Message: message}
	}

	resp, err := downloader.Do(req)
	if err != nil {
		// A *url.Error repeats the URL with its query, which may be a
		// signature, so only the inner error is kept.
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		var blocked *BlockedDownloadError
		if errors.As(err, &blocked) {
			return GeneratedImage{}, failure(ErrorMalformed, 0, fmt.Sprintf("image data[%d] from %s: %v", index, where, blocked))
		}
		kind := ErrorConnect
		var netErr net.Error
		if errors.As(err, &netErr) && netErr.Timeout() {
			kind = ErrorTimeout
		}
		return GeneratedImage{}, failure(kind, 0, fmt.Sprintf("download image data[%d] from %s: %v", index, where, err))
	}
	defer resp.Body.Close()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		message := fmt.Sprintf("download image data[%d] from %s: HTTP %d", index, where, resp.StatusCode)
		return GeneratedImage{}, failure(ErrorServer, resp.StatusCode, message)
	}

	maxBytes := c.opts.ImageDownloadMaxBytes
	tooLarge := fmt.Sprintf("image data[%d] from %s exceeds the %d-byte download cap (ImageDownloadMaxBytes)", index, where, maxBytes)
	if resp.ContentLength > maxBytes {
		return GeneratedImage{}, &UpstreamError{Kind: ErrorMalformed, StatusCode: resp.StatusCode, Message: tooLarge}
	}

	data, err := readCapped(resp.Body, resp.ContentLength, maxBytes)
	if err != nil {
		return GeneratedImage{}, failure(ErrorStreamCut, resp.StatusCode, fmt.Sprintf("download image data[%d] from %s: %v", index, where, err))
	}
	if int64(len(data)) > maxBytes {
		return GeneratedImage{}, &UpstreamError{Kind: ErrorMalformed, StatusCode: resp.StatusCode, Message: tooLarge}
	}

	image := GeneratedImage{Data: data}
	if mediaType, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err == nil {
		image.ContentType = mediaType
	}
	return image, nil
}

// parseDownloadURL accepts only absolute http and https URLs. The error
// names the scheme but not the URL, which may be a long data: URL.
func parseDownloadURL(rawURL string) (*url.URL, error) {
	target, err := url.Parse(rawURL)
	if err != nil {
		return nil, errors.New("the image URL does not parse; want an absolute http or https URL")
	}
	if target.Scheme != "http" && target.Scheme != "https" {
		return nil, fmt.Errorf("the image URL has scheme %q; only http and https URLs are downloaded", target.Scheme)
	}
	if target.Host == "" {
		return nil, errors.New("the image URL has no host")
	}
	return target, nil
}

func checkDownloadRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxDownloadRedirects {
		return fmt.Errorf("stopped after %d redirects", maxDownloadRedirects)
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return fmt.Errorf("redirect to scheme %q rejected; only http and https URLs are downloaded", req.URL.Scheme)
	}
	return nil
}

// describeURL returns the URL without user info, query and fragment, which
// may carry credentials such as a signature.
func describeURL(u *url.URL) string {
	clean := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	text := clean.String()
	const maxLen = 200
	if len(text) > maxLen {
		text = text[:maxLen] + "..."
	}
	return text
}
