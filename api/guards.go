package api

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/aihigress/aihigress/internal/ratelimit"
)

// Guards configures the protections that run in front of the handlers: rate
// limits, security headers, CORS, per-route body limits and the proxies whose
// X-Forwarded-For header is believed.
type Guards struct {
	RateLimits RateLimits
	// GatewayMaxBodyBytes limits the body of POST /v1/chat/completions.
	// Limits.MaxBodyBytes limits every other route. Zero turns a limit off.
	GatewayMaxBodyBytes int64
	// CORSAllowedOrigins are the origins that browsers may call the API
	// from, or just "*". Empty sends no CORS headers at all.
	CORSAllowedOrigins []string
	// TrustedProxies are CIDR prefixes or addresses of reverse proxies.
	// Empty trusts none, so the client IP is the socket's peer address.
	TrustedProxies []string
	// HSTSMaxAge, when above zero, adds Strict-Transport-Security.
	HSTSMaxAge time.Duration
}

// RateLimits are the rules checked on each route group. A nil rule turns
// that limit off.
type RateLimits struct {
	// Login and Register count per client IP, and per /64 for IPv6.
	Login    *ratelimit.Rule
	Register *ratelimit.Rule
	// APIKey counts per API key on every route that a key authenticated.
	APIKey *ratelimit.Rule
	// User counts per user on every route that an access token
	// authenticated.
	User *ratelimit.Rule
}

// chatCompletionsRoute is the gin route pattern that gets
// Guards.GatewayMaxBodyBytes.
const chatCompletionsRoute = "/v1/chat/completions"

// limiterFailureLogInterval spaces the error logs of a failing limiter,
// because with Redis down every request would log one.
const limiterFailureLogInterval = 10 * time.Second

// CORS values. Browsers may cache a preflight response for corsMaxAge
// seconds, so a change of CORS_ALLOWED_ORIGINS reaches them within 10
// minutes.
const (
	corsAllowMethods  = "GET, POST, PUT, PATCH, DELETE"
	corsAllowHeaders  = "Authorization, Content-Type, X-API-Key, Idempotency-Key, Last-Event-ID, X-Aihigress-Background, X-Request-Id"
	corsExposeHeaders = "X-Request-Id, X-Aihigress-Overhead-Ms, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"
	corsMaxAge        = "600"
)

// guardChain is Guards prepared for one Handler: header values formatted
// once, origins in a set, and the state of the failure log.
type guardChain struct {
	limits       RateLimits
	maxBody      int64
	gatewayBody  int64
	logger       *slog.Logger
	constHeaders []constHeader
	cors         *corsPolicy

	lastFailureLog     atomic.Int64 // Unix nanoseconds
	suppressedFailures atomic.Int64
}

// constHeader is a header whose value is the same on every response. The
// value slice is shared between responses. That is safe because nothing
// writes into a header's slice in place, and Header.Add appends to a slice
// whose capacity equals its length, which copies it first.
type constHeader struct {
	name  string
	value []string
}

func constant(name, value string) constHeader {
	return constHeader{name: http.CanonicalHeaderKey(name), value: []string{value}}
}

func (s *Server) newGuardChain() *guardChain {
	g := &guardChain{
		limits:      s.Guards.RateLimits,
		maxBody:     s.Limits.MaxBodyBytes,
		gatewayBody: s.Guards.GatewayMaxBodyBytes,
		logger:      s.Logger,
		constHeaders: []constHeader{
			constant("X-Content-Type-Options", "nosniff"),
			constant("X-Frame-Options", "DENY"),
			// The API serves no pages, so no response has a reason to
			// tell another site where the user came from.
			constant("Referrer-Policy", "no-referrer"),
		},
		cors: newCORSPolicy(s.Guards.CORSAllowedOrigins),
	}
	if seconds := int64(s.Guards.HSTSMaxAge / time.Second); seconds > 0 {
		g.constHeaders = append(g.constHeaders, constant("Strict-Transport-Security", "max-age="+strconv.FormatInt(seconds, 10)+"; includeSubDomains"))
	}
	if g.cors != nil {
		g.constHeaders = append(g.constHeaders, constant("Vary", "Origin"))
	}
	return g
}

// trustProxies makes c.ClientIP() believe X-Forwarded-For and X-Real-IP only
// from the configured proxies.
func (g *guardChain) trustProxies(r *gin.Engine, proxies []string) {
	err := r.SetTrustedProxies(proxies)
	if err == nil {
		return
	}
	// config.Load rejects these values, so only a Server built by hand gets
	// here. Trusting no proxy is the safe fallback.
	g.logger.Error("invalid trusted proxies; trusting none", "error", err)
	_ = r.SetTrustedProxies(nil)
}

// wrap adds the security and CORS headers to every response of next and
// responds to CORS preflight requests. It sits outside gin so that responses
// that gin writes without running middleware, such as trailing-slash
// redirects, get the headers too.
func (g *guardChain) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		for _, header := range g.constHeaders {
			h[header.name] = header.value
		}
		if g.cors != nil && g.cors.apply(w, r) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// limitBody rejects a body over the route's limit: at once when
// Content-Length exceeds it, and otherwise when a handler reads past the
// limit, which decodeJSON and readChatCompletion turn into 413.
func (g *guardChain) limitBody(c *gin.Context) {
	limit := g.maxBody
	if c.Request.Method == http.MethodPost && c.FullPath() == chatCompletionsRoute {
		limit = g.gatewayBody
	}
	if limit <= 0 || c.Request.Body == nil || c.Request.Body == http.NoBody {
		c.Next()
		return
	}
	if c.Request.ContentLength > limit {
		abortError(c, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body exceeds %d bytes", limit))
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, limit)
	c.Next()
}

// limitLogin and limitRegister count per client IP. They run before the
// handler, so failed attempts count too.
func (g *guardChain) limitLogin(c *gin.Context) {
	g.check(c, g.limits.Login, clientKey(c.ClientIP()), "login requests from this IP address")
}

func (g *guardChain) limitRegister(c *gin.Context) {
	g.check(c, g.limits.Register, clientKey(c.ClientIP()), "registrations from this IP address")
}

// limitAPIKey runs after requireAPIKey.
func (g *guardChain) limitAPIKey(c *gin.Context) {
	g.check(c, g.limits.APIKey, currentAPIKey(c).KeyID, "requests with this API key")
}

// limitUser runs after requireUser.
func (g *guardChain) limitUser(c *gin.Context) {
	g.check(c, g.limits.User, c.GetString("user_id"), "requests for this user")
}

// limitCaller runs after requireUserOrAPIKey and counts against the key or
// the user, whichever authenticated the request.
func (g *guardChain) limitCaller(c *gin.Context) {
	if key := currentAPIKey(c); key != nil {
		g.limitAPIKey(c)
		return
	}
	g.limitUser(c)
}

// check counts the request against rule for client id. It sets the
// X-RateLimit headers and rejects with 429 over the limit. When Redis
// fails, it lets the request through: a Redis outage then costs the rate
// limits, but not the whole API.
func (g *guardChain) check(c *gin.Context, rule *ratelimit.Rule, id, what string) {
	if rule == nil {
		c.Next()
		return
	}
	ctx := c.Request.Context()
	res, err := rule.Allow(ctx, id)
	if err != nil {
		// A client that disconnected cancels the check. That is no Redis
		// failure, so it is not logged.
		if ctx.Err() == nil {
			g.logLimiterFailure(c, rule, err)
		}
		c.Next()
		return
	}

	h := c.Writer.Header()
	reset := ceilSeconds(res.Reset)
	h.Set("X-RateLimit-Limit", strconv.Itoa(res.Limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(res.Remaining))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(reset, 10))
	if res.Allowed {
		c.Next()
		return
	}
	h.Set("Retry-After", strconv.FormatInt(reset, 10))
	abortError(c, http.StatusTooManyRequests, "rate_limit_exceeded",
		fmt.Sprintf("rate limit exceeded: at most %d %s per %s; retry after %d seconds", res.Limit, what, formatWindow(rule.Window()), reset))
}

// logLimiterFailure logs at most one error per limiterFailureLogInterval,
// with the number of failures left out since the last log.
func (g *guardChain) logLimiterFailure(c *gin.Context, rule *ratelimit.Rule, err error) {
	now := time.Now().UnixNano()
	last := g.lastFailureLog.Load()
	if now-last < int64(limiterFailureLogInterval) || !g.lastFailureLog.CompareAndSwap(last, now) {
		g.suppressedFailures.Add(1)
		return
	}
	g.logger.Error("rate limit check failed; letting requests through unlimited",
		"error", err, "rule", rule.Name(), "failures_not_logged", g.suppressedFailures.Swap(0),
		"path", c.FullPath(), "user_id", c.GetString("user_id"), "request_id", c.GetString("request_id"))
}

// clientKey returns the rate limit ID of a client IP: the address itself
// for IPv4, and its /64 network for IPv6, because one IPv6 host usually
// controls a whole /64 and could otherwise switch addresses per request.
func clientKey(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	addr = addr.Unmap()
	if addr.Is4() {
		return addr.String()
	}
	prefix, err := addr.Prefix(64)
	if err != nil {
		return ip
	}
	return prefix.String()
}

// ceilSeconds rounds d up to whole seconds, so that a client that waits
// that long is never early.
func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// formatWindow writes a window as "minute", "10s" or "1h30m" for messages.
func formatWindow(d time.Duration) string {
	switch d {
	case time.Second:
		return "second"
	case time.Minute:
		return "minute"
	case time.Hour:
		return "hour"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// corsPolicy is the set of allowed origins and the CORS header values sent
// to them.
type corsPolicy struct {
	anyOrigin bool
	origins   map[string]struct{}

	allowCredentials []string
	allowMethods     []string
	allowHeaders     []string
	exposeHeaders    []string
	maxAge           []string
	wildcard         []string
}

// newCORSPolicy returns nil when origins is empty, which turns CORS off.
func newCORSPolicy(origins []string) *corsPolicy {
	if len(origins) == 0 {
		return nil
	}
	p := &corsPolicy{
		origins:          make(map[string]struct{}, len(origins)),
		allowCredentials: []string{"true"},
		allowMethods:     []string{corsAllowMethods},
		allowHeaders:     []string{corsAllowHeaders},
		exposeHeaders:    []string{corsExposeHeaders},
		maxAge:           []string{corsMaxAge},
		wildcard:         []string{"*"},
	}
	for _, origin := range origins {
		if origin == "*" {
			p.anyOrigin = true
			continue
		}
		// Browsers send the scheme and host of Origin in lowercase.
		p.origins[strings.ToLower(origin)] = struct{}{}
	}
	return p
}

// apply adds the CORS headers for an allowed origin and reports whether it
// responded to the request as a preflight. A request from any other origin
// gets no CORS headers, so the browser withholds the response from the
// page. A preflight from such an origin goes on to the routes like any
// OPTIONS request.
func (p *corsPolicy) apply(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	_, listed := p.origins[origin]
	if !listed && !p.anyOrigin {
		return false
	}

	h := w.Header()
	if listed {
		// The API authenticates with the Authorization header, not
		// cookies, but a listed origin may still send credentialed
		// requests. The wildcard may not, as the Fetch standard requires.
		h["Access-Control-Allow-Origin"] = []string{origin}
		h["Access-Control-Allow-Credentials"] = p.allowCredentials
	} else {
		h["Access-Control-Allow-Origin"] = p.wildcard
	}

	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h["Access-Control-Allow-Methods"] = p.allowMethods
		h["Access-Control-Allow-Headers"] = p.allowHeaders
		h["Access-Control-Max-Age"] = p.maxAge
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	h["Access-Control-Expose-Headers"] = p.exposeHeaders
	return false
}
