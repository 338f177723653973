package providers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
)

// nonPublicPrefixes lists the special-purpose ranges that the netip.Addr
// predicates do not cover, with the reason that a rejection names. The
// ranges come from the IANA IPv4 and IPv6 Special-Purpose Address
// Registries (RFC 6890 and its updates).
var nonPublicPrefixes = []struct {
	prefix netip.Prefix
	reason string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "this-network (0.0.0.0/8)"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared (CGNAT, 100.64.0.0/10)"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignment (192.0.0.0/24)"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation (192.0.2.0/24)"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking (198.18.0.0/15)"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation (198.51.100.0/24)"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation (203.0.113.0/24)"},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved (240.0.0.0/4)"},
	{netip.MustParsePrefix("::/96"), "IPv4-compatible (::/96)"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64 (64:ff9b:1::/48)"},
	{netip.MustParsePrefix("100::/64"), "discard-only (100::/64)"},
	{netip.MustParsePrefix("2001::/32"), "Teredo (2001::/32)"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation (2001:db8::/32)"},
	{netip.MustParsePrefix("fec0::/10"), "site-local (fec0::/10)"},
}

var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour   = netip.MustParsePrefix("2002::/16")
)

// nonPublicReason returns why addr is not a public unicast address, such
// as "loopback" or "private", or "" when it is one. IPv4-mapped, NAT64
// (64:ff9b::/96) and 6to4 (2002::/16) addresses are judged by the IPv4
// address that they embed, because a connection to them reaches that
// address.
func nonPublicReason(addr netip.Addr) string {
	if !addr.IsValid() {
		return "invalid"
	}
	addr = addr.Unmap()
	if addr.Is6() && nat64Prefix.Contains(addr) {
		bytes := addr.As16()
		if reason := nonPublicReason(netip.AddrFrom4([4]byte(bytes[12:16]))); reason != "" {
			return "NAT64 of a " + reason
		}
		return ""
	}
	if addr.Is6() && sixToFour.Contains(addr) {
		bytes := addr.As16()
		if reason := nonPublicReason(netip.AddrFrom4([4]byte(bytes[2:6]))); reason != "" {
			return "6to4 of a " + reason
		}
		return ""
	}

	switch {
	case addr.IsUnspecified():
		return "unspecified"
	case addr.IsLoopback():
		return "loopback"
	case addr.IsPrivate():
		return "private"
	case addr.IsLinkLocalUnicast():
		return "link-local"
	case addr.IsMulticast():
		return "multicast"
	}
	for _, special := range nonPublicPrefixes {
		if special.prefix.Contains(addr) {
			return special.reason
		}
	}
	return ""
}

// BlockedDownloadError is a download that the address guard stopped before
// it connected, because Host resolved to a non-public address and was not
// the provider's own host.
type BlockedDownloadError struct {
	// Host is the host and port of the URL (or of the redirect hop), with
	// the scheme's default port added. It never contains the path or the
	// query.
	Host string
	// Addr is the rejected IP address, or the zero Addr when the dialed
	// address did not parse.
	Addr   netip.Addr
	Reason string
}

func (e *BlockedDownloadError) Error() string {
	address := "the address"
	if e.Addr.IsValid() {
		address = e.Addr.String()
	}
	return fmt.Sprintf("connection to %s rejected: %s is a %s address; image downloads may only connect to public addresses or to the provider's base_url host unless IMAGE_DOWNLOAD_ALLOW_PRIVATE is on", e.Host, address, e.Reason)
}

// addressGuard builds the transport of downloads to hosts other than the
// provider's own. Its dialer checks each IP address right before it
// connects, so a DNS answer that changes between a check and the connect
// cannot bypass it. Connections that it pools therefore only ever reach
// public addresses (or a proxy), and any download may reuse them.
type addressGuard struct {
	transport *http.Transport
	// proxy is the proxy function of the pooled transport.
	proxy func(*http.Request) (*url.URL, error)
	// proxyAddrs contains the "host:port" of every proxy that proxy
	// returned. Dials to them skip the address check, because the operator
	// configured them. A URL that names such a host:port itself, and that
	// NO_PROXY exempts, therefore also connects unchecked.
	proxyAddrs sync.Map
	// resolver resolves the target of a proxied download.
	resolver *net.Resolver
}

func newAddressGuard(base *http.Transport, dialer net.Dialer) *addressGuard {
	guard := &addressGuard{proxy: base.Proxy, resolver: net.DefaultResolver}

	checkedDialer := dialer
	checkedDialer.ControlContext = func(_ context.Context, _ string, address string, _ syscall.RawConn) error {
		addrPort, err := netip.ParseAddrPort(address)
		if err != nil {
			return &BlockedDownloadError{Reason: "unparsable"}
		}
		if reason := nonPublicReason(addrPort.Addr()); reason != "" {
			return &BlockedDownloadError{Addr: addrPort.Addr().Unmap(), Reason: reason}
		}
		return nil
	}

	guard.transport = base.Clone()
	guard.transport.Proxy = guard.proxyFor
	guard.transport.DialContext = func(ctx context.Context, network, address string) (net.Conn, error) {
		if _, isProxy := guard.proxyAddrs.Load(address); isProxy {
			return dialer.DialContext(ctx, network, address)
		}
		conn, err := checkedDialer.DialContext(ctx, network, address)
		var blocked *BlockedDownloadError
		if errors.As(err, &blocked) {
			// The control function receives only the IP address, so the
			// host name is added here. The *net.OpError around it is dropped
			// because it repeats the address.
			blocked.Host = address
			return nil, blocked
		}
		return conn, err
	}
	return guard
}

// proxyFor returns the proxy of req, as the pooled transport would, after
// it checks req's host. The proxy resolves that host itself, so the check
// resolves it here and rejects it when any of its addresses is non-public.
//
// NOTE: a proxied download is checked before the proxy's own DNS lookup,
// so a host whose answer changes in between can still reach a private
// address through the proxy.
func (g *addressGuard) proxyFor(req *http.Request) (*url.URL, error) {
	if g.proxy == nil {
		return nil, nil
	}
	proxyURL, err := g.proxy(req)
	if err != nil || proxyURL == nil {
		return proxyURL, err
	}
	if err := g.checkHost(req.Context(), req.URL); err != nil {
		return nil, err
	}
	g.proxyAddrs.Store(canonicalHostPort(proxyURL), struct{}{})
	return proxyURL, nil
}

func (g *addressGuard) checkHost(ctx context.Context, target *url.URL) error {
	hostPort := canonicalHostPort(target)
	host := target.Hostname()
	if addr, err := netip.ParseAddr(host); err == nil {
		if reason := nonPublicReason(addr); reason != "" {
			return &BlockedDownloadError{Host: hostPort, Addr: addr.Unmap(), Reason: reason}
		}
		return nil
	}

	addrs, err := g.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("resolve %s before a proxied download: %w", host, err)
	}
	for _, addr := range addrs {
		if reason := nonPublicReason(addr); reason != "" {
			return &BlockedDownloadError{Host: hostPort, Addr: addr.Unmap(), Reason: reason}
		}
	}
	return nil
}

// canonicalHostPort returns u's host in lower case with its port, or the
// scheme's default port when u has none. The SOCKS5 default matches the
// address that http.Transport dials for such a proxy.
func canonicalHostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		switch u.Scheme {
		case "https":
			port = "443"
		case "socks5", "socks5h":
			port = "1080"
		default:
			port = "80"
		}
	}
	host := strings.ToLower(u.Hostname())
	if addr, err := netip.ParseAddr(host); err == nil {
		host = addr.Unmap().String()
	}
	return net.JoinHostPort(host, port)
}

// downloadRoundTripper sends each request of one download, redirect hops
// included, either on the pooled transport when it goes to the provider's
// own base_url host and port, or through the address guard otherwise.
type downloadRoundTripper struct {
	// providerHost is canonicalHostPort of the provider's base_url, or ""
	// when it does not parse.
	providerHost string
	direct       http.RoundTripper
	guarded      http.RoundTripper
}

func (d *downloadRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	if d.providerHost != "" && canonicalHostPort(req.URL) == d.providerHost {
		return d.direct.RoundTrip(req)
	}
	return d.guarded.RoundTrip(req)
}

// downloadTransport returns the transport of image downloads for provider
// p. Hosts other than p's base_url host go through the address guard
// unless ImageDownloadAllowPrivate is on. The base_url host is trusted as
// much as the generation request, which carries the API key there.
func (c *Client) downloadTransport(p Provider) http.RoundTripper {
	if c.guard == nil {
		return c.transport
	}
	providerHost := ""
	if base, err := url.Parse(p.BaseURL); err == nil && base.Host != "" {
		providerHost = canonicalHostPort(base)
	}
	return &downloadRoundTripper{providerHost: providerHost, direct: c.transport, guarded: c.guard.transport}
}
