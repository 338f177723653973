package providers

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The classifier test only parses addresses and never dials them.
func TestNonPublicReason(t *testing.T) {
	tests := []struct {
		addr string
		// want is a substring of the reason, or "" for a public address.
		want string
	}{
		{"8.8.8.8", ""},
		{"1.1.1.1", ""},
		{"93.184.215.14", ""},
		{"172.32.0.1", ""},
		{"100.63.255.255", ""},
		{"100.128.0.1", ""},
		{"2606:4700:4700::1111", ""},
		{"::ffff:8.8.8.8", ""},
		{"64:ff9b::808:808", ""},
		{"2002:808:808::1", ""},

		{"127.0.0.1", "loopback"},
		{"127.1.2.3", "loopback"},
		{"::1", "loopback"},
		{"::ffff:127.0.0.1", "loopback"},
		{"10.0.0.1", "private"},
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"192.168.1.1", "private"},
		{"fc00::1", "private"},
		{"fd00:ec2::254", "private"},
		{"::ffff:10.1.2.3", "private"},
		{"169.254.169.254", "link-local"},
		{"169.254.0.1", "link-local"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"::ffff:169.254.169.254", "link-local"},
		{"100.64.0.1", "CGNAT"},
		{"100.127.255.255", "CGNAT"},
		{"::ffff:100.100.100.200", "CGNAT"},
		{"0.0.0.0", "unspecified"},
		{"::", "unspecified"},
		{"::ffff:0.0.0.0", "unspecified"},
		{"0.1.2.3", "this-network"},
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"ff02::1", "multicast"},
		{"ff0e::1", "multicast"},
		{"255.255.255.255", "broadcast"},
		{"240.0.0.1", "reserved"},
		{"192.0.0.8", "IETF"},
		{"192.0.2.1", "documentation"},
		{"198.51.100.7", "documentation"},
		{"203.0.113.9", "documentation"},
		{"2001:db8::1", "documentation"},
		{"198.18.0.1", "benchmarking"},
		{"::a9fe:a9fe", "IPv4-compatible"},
		{"64:ff9b::a9fe:a9fe", "NAT64 of a link-local"},
		{"64:ff9b::7f00:1", "NAT64 of a loopback"},
		{"64:ff9b:1::a", "local-use NAT64"},
		{"2002:a9fe:a9fe::1", "6to4 of a link-local"},
		{"2002:c0a8:101::1", "6to4 of a private"},
		{"2001::1", "Teredo"},
		{"100::1", "discard-only"},
		{"fec0::1", "site-local"},
	}

	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			addr := netip.MustParseAddr(tt.addr)

			got := nonPublicReason(addr)

			if tt.want == "" && got != "" {
				t.Errorf("nonPublicReason(%s) = %q, want a public address", tt.addr, got)
			}
			if tt.want != "" && !strings.Contains(got, tt.want) {
				t.Errorf("nonPublicReason(%s) = %q, want a reason containing %q", tt.addr, got, tt.want)
			}
		})
	}
}

func TestNonPublicReasonInvalid(t *testing.T) {
	if got := nonPublicReason(netip.Addr{}); got != "invalid" {
		t.Errorf("nonPublicReason(zero Addr) = %q, want invalid", got)
	}
}

func TestCanonicalHostPort(t *testing.T) {
	tests := []struct {
		url  string
		want string
	}{
		{"http://Example.COM/v1", "example.com:80"},
		{"https://example.com/v1", "example.com:443"},
		{"http://example.com:8080", "example.com:8080"},
		{"http://127.0.0.1:9000/v1", "127.0.0.1:9000"},
		{"http://[::ffff:127.0.0.1]:9000/", "127.0.0.1:9000"},
		{"http://[::1]:9000/", "[::1]:9000"},
		{"https://[2001:DB8::1]/", "[2001:db8::1]:443"},
		{"socks5://127.0.0.1", "127.0.0.1:1080"},
	}

	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			u, err := url.Parse(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			if got := canonicalHostPort(u); got != tt.want {
				t.Errorf("canonicalHostPort(%s) = %q, want %q", tt.url, got, tt.want)
			}
		})
	}
}

// TestImageDownloadAddressGuard uses two loopback servers: the provider on
// one port and a file server on another. Loopback is not public, so only
// the provider's own host:port passes the guard by default.
func TestImageDownloadAddressGuard(t *testing.T) {
	const signature = "sig-guard-secret"

	tests := []struct {
		name         string
		allowPrivate bool
		// link returns the URL that the provider sends, given the base URLs
		// of the provider and of the file server.
		link             func(provider, files *url.URL) string
		wantRejectHost   func(provider, files *url.URL) string
		wantFileHits     int
		wantProviderHits int
	}{
		{
			name: "other port by IP",
			link: func(_, files *url.URL) string { return "http://127.0.0.1:" + files.Port() + "/x.png?sig=" + signature },
			wantRejectHost: func(_, files *url.URL) string {
				return "127.0.0.1:" + files.Port()
			},
		},
		{
			name: "other port by name",
			link: func(_, files *url.URL) string { return "http://localhost:" + files.Port() + "/x.png?sig=" + signature },
			wantRejectHost: func(_, files *url.URL) string {
				return "localhost:" + files.Port()
			},
		},
		{
			name: "provider port by another name",
			link: func(provider, _ *url.URL) string {
				return "http://localhost:" + provider.Port() + "/files/x.png?sig=" + signature
			},
			wantRejectHost: func(provider, _ *url.URL) string {
				return "localhost:" + provider.Port()
			},
		},
		{
			name:         "other port allowed by setting",
			allowPrivate: true,
			link:         func(_, files *url.URL) string { return "http://127.0.0.1:" + files.Port() + "/x.png?sig=" + signature },
			wantFileHits: 1,
		},
		{
			name:         "other port by name allowed by setting",
			allowPrivate: true,
			link:         func(_, files *url.URL) string { return "http://localhost:" + files.Port() + "/x.png?sig=" + signature },
			wantFileHits: 1,
		},
		{
			name:             "provider host and port",
			link:             func(provider, _ *url.URL) string { return provider.String() + "/files/x.png?sig=" + signature },
			wantProviderHits: 1,
		},
		{
			name: "redirect to other port",
			link: func(provider, _ *url.URL) string { return provider.String() + "/moved?sig=" + signature },
			wantRejectHost: func(_, files *url.URL) string {
				return "127.0.0.1:" + files.Port()
			},
		},
		{
			name:         "redirect allowed by setting",
			allowPrivate: true,
			link:         func(provider, _ *url.URL) string { return provider.String() + "/moved?sig=" + signature },
			wantFileHits: 1,
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := newDownloadServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "image/png")
				w.Write(fakePNG)
			})
			filesURL, err := url.Parse(files.server.URL)
			if err != nil {
				t.Fatal(err)
			}

			var providerURL *url.URL
			var providerFileHits atomic.Int32
			// The provider serves GET requests too, which the recording
			// newTestUpstream does not accept.
			upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/files/x.png":
					providerFileHits.Add(1)
					w.Header().Set("Content-Type", "image/png")
					w.Write(fakePNG)
				case "/moved":
					http.Redirect(w, r, "http://127.0.0.1:"+filesURL.Port()+"/x.png?sig="+signature, http.StatusFound)
				default:
					writeJSON(w, http.StatusOK, `{"data":[{"url":"`+tt.link(providerURL, filesURL)+`"}]}`)
				}
			}))
			t.Cleanup(upstream.Close)
			providerURL, err = url.Parse(upstream.URL)
			if err != nil {
				t.Fatal(err)
			}

			opts := imageOptions()
			opts.ImageDownloadAllowPrivate = tt.allowPrivate
			client := newTestClient(t, opts)

			provider := Provider{ID: "test", Kind: "openai", BaseURL: upstream.URL + "/v1", APIKey: testAPIKey}
			result, err := client.GenerateImages(context.Background(), provider, ImageRequest{Model: "m", Prompt: "a fox", ResponseFormat: "url"})

			if got := len(files.requests()); got != tt.wantFileHits {
				t.Errorf("file server got %d requests, want %d", got, tt.wantFileHits)
			}
			if got := int(providerFileHits.Load()); got != tt.wantProviderHits {
				t.Errorf("provider served %d files, want %d", got, tt.wantProviderHits)
			}

			if tt.wantRejectHost == nil {
				if err != nil {
					t.Fatalf("GenerateImages() error = %v, want the download to pass", err)
				}
				if len(result.Images) != 1 || string(result.Images[0].Data) != string(fakePNG) {
					t.Errorf("images = %+v, want the served bytes", result.Images)
				}
				return
			}

			upstreamErr := asUpstreamError(t, err)
			if upstreamErr.Kind != ErrorMalformed {
				t.Errorf("Kind = %s, want %s (error: %v)", upstreamErr.Kind, ErrorMalformed, err)
			}
			if !upstreamErr.Retryable() {
				t.Errorf("Retryable() = false, want true so that the next candidate is tried")
			}
			wantHost := "connection to " + tt.wantRejectHost(providerURL, filesURL) + " rejected"
			if !strings.Contains(upstreamErr.Message, wantHost) {
				t.Errorf("Message = %q, want it to contain %q", upstreamErr.Message, wantHost)
			}
			if !strings.Contains(upstreamErr.Message, "loopback address") {
				t.Errorf("Message = %q, want the reason loopback", upstreamErr.Message)
			}
			if !strings.Contains(upstreamErr.Message, "IMAGE_DOWNLOAD_ALLOW_PRIVATE") {
				t.Errorf("Message = %q, want it to name IMAGE_DOWNLOAD_ALLOW_PRIVATE", upstreamErr.Message)
			}
			if strings.Contains(err.Error(), signature) {
				t.Errorf("error %q contains the URL's query", err)
			}
		})
	}
}

// TestImageDownloadGuardBehindProxy checks that a proxied download is
// rejected before the request reaches the proxy, which would resolve and
// connect to the host itself. Proxy and target are both on loopback.
func TestImageDownloadGuardBehindProxy(t *testing.T) {
	tests := []struct {
		name string
		host func(files *url.URL) string
	}{
		{name: "IP literal", host: func(files *url.URL) string { return "127.0.0.1:" + files.Port() }},
		{name: "host name", host: func(files *url.URL) string { return "localhost:" + files.Port() }},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var proxyHits atomic.Int32
			proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				proxyHits.Add(1)
				w.Write(fakePNG)
			}))
			t.Cleanup(proxy.Close)
			proxyURL, err := url.Parse(proxy.URL)
			if err != nil {
				t.Fatal(err)
			}
			files := newDownloadServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write(fakePNG) })
			filesURL, err := url.Parse(files.server.URL)
			if err != nil {
				t.Fatal(err)
			}
			link := "http://" + tt.host(filesURL) + "/x.png"
			upstream := newTestUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusOK, `{"data":[{"url":"`+link+`"}]}`)
			})

			client := newTestClient(t, imageOptions())
			// The environment's proxy never applies to loopback hosts, so
			// the test gives the guard a proxy function of its own.
			base := client.transport.Clone()
			base.Proxy = http.ProxyURL(proxyURL)
			client.guard = newAddressGuard(base, net.Dialer{Timeout: 2 * time.Second})
			t.Cleanup(client.guard.transport.CloseIdleConnections)

			_, err = client.GenerateImages(context.Background(), upstream.provider(), ImageRequest{Model: "m", Prompt: "a fox", ResponseFormat: "url"})

			upstreamErr := asUpstreamError(t, err)
			if upstreamErr.Kind != ErrorMalformed {
				t.Errorf("Kind = %s, want %s (error: %v)", upstreamErr.Kind, ErrorMalformed, err)
			}
			wantHost := "connection to " + tt.host(filesURL) + " rejected"
			if !strings.Contains(upstreamErr.Message, wantHost) {
				t.Errorf("Message = %q, want it to contain %q", upstreamErr.Message, wantHost)
			}
			if got := proxyHits.Load(); got != 0 {
				t.Errorf("proxy got %d requests, want none", got)
			}
			if got := len(files.requests()); got != 0 {
				t.Errorf("file server got %d requests, want none", got)
			}
		})
	}
}
