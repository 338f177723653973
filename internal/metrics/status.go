package metrics

import (
	"context"
	"errors"

	"github.com/aihigress/aihigress/internal/providers"
)

// Statuses of an upstream request besides the upstream error kinds of
// providers.ErrorKind.
const (
	StatusOK = "ok"
	// StatusCanceled is a request whose caller went away or whose run was
	// canceled, so it does not count against the upstream.
	StatusCanceled = "canceled"
	// StatusError is a failure that is not an upstream error, such as an
	// invalid provider configuration.
	StatusError = "error"
)

// Sources of upstream requests.
const (
	SourceGateway = "gateway"
	SourceWorker  = "worker"
)

// StatusOf returns the status of an upstream request that ended with err:
// StatusOK for nil, StatusCanceled when ctx has ended, the error kind of a
// *providers.UpstreamError, and StatusError otherwise.
func StatusOf(ctx context.Context, err error) string {
	if err == nil {
		return StatusOK
	}
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return StatusCanceled
	}
	var upstream *providers.UpstreamError
	if errors.As(err, &upstream) {
		return string(upstream.Kind)
	}
	return StatusError
}

// CountsAsError reports whether a request with status counts against its
// provider's health. The upstream's failures do: 5xx, 429, timeouts,
// connection failures, rejected credentials, cut streams, malformed
// responses and missing images. A request that the upstream rejected as
// invalid (upstream_bad_request), a canceled one and a local error do not.
func CountsAsError(status string) bool {
	switch status {
	case StatusOK, StatusCanceled, StatusError, string(providers.ErrorBadRequest):
		return false
	}
	return true
}
