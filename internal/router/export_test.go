package router

import "github.com/aihigress/aihigress/internal/providers"

// Failing reports whether r's mirror marks c as having a failure count in
// Redis, which decides whether a success costs a Redis write.
func Failing(r *Router, c providers.Candidate) bool {
	return r.mirror.failing(candidateEntry(c.ProviderID, c.Model), r.opts.Now().UnixMilli())
}
