package providers

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// staticImageServer responds to every request with one prebuilt response that
// carries an image of imageBytes bytes, so the server allocates almost
// nothing per request and the measurements cover the client.
func staticImageServer(tb testing.TB, kind string, imageBytes int) *httptest.Server {
	tb.Helper()

	image := bytes.Repeat([]byte{0x5a}, imageBytes)
	encoded := base64.StdEncoding.EncodeToString(image)

	var body []byte
	if kind == "gemini" {
		body = []byte(`{"candidates":[{"content":{"role":"model","parts":[{"inlineData":{"mimeType":"image/png","data":"` +
			encoded + `"}}]},"finishReason":"STOP"}]}`)
	} else {
		body = []byte(`{"created":1,"data":[{"b64_json":"` + encoded + `"}],"output_format":"png"}`)
	}

	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}))
	tb.Cleanup(server.Close)
	return server
}

func staticProvider(server *httptest.Server, kind string) Provider {
	baseURL := server.URL + "/v1"
	if kind == "gemini" {
		baseURL = server.URL
	}
	return Provider{ID: "static", Kind: kind, BaseURL: baseURL, APIKey: testAPIKey}
}

// BenchmarkGenerateImages4MiB reports the bytes that one call allocates for
// a 4 MiB image: about 4/3 of it for the base64 body and 1x for the image.
func BenchmarkGenerateImages4MiB(b *testing.B) {
	const imageBytes = 4 << 20

	for _, kind := range []string{"openai", "gemini"} {
		b.Run(kind, func(b *testing.B) {
			server := staticImageServer(b, kind, imageBytes)
			client := NewClient(ClientOptions{})
			b.Cleanup(client.CloseIdleConnections)
			provider := staticProvider(server, kind)
			b.SetBytes(imageBytes)
			b.ReportAllocs()

			for b.Loop() {
				result, err := client.GenerateImages(context.Background(), provider, ImageRequest{Model: "m", Prompt: "p"})
				if err != nil {
					b.Fatal(err)
				}
				if len(result.Images[0].Data) != imageBytes {
					b.Fatalf("image has %d bytes, want %d", len(result.Images[0].Data), imageBytes)
				}
			}
		})
	}
}

// BenchmarkGenerateImagesPeakRSS runs 100 concurrent calls for 4 MiB images
// and keeps every result until all have finished, as a caller that stores
// them would. It reports the growth of the peak RSS (VmHWM, reset through
// /proc/self/clear_refs) divided by the 400 MiB of images in flight.
func BenchmarkGenerateImagesPeakRSS(b *testing.B) {
	const (
		calls      = 100
		imageBytes = 4 << 20
		inFlight   = calls * imageBytes
	)

	for _, kind := range []string{"openai", "gemini"} {
		b.Run(kind, func(b *testing.B) {
			server := staticImageServer(b, kind, imageBytes)
			client := NewClient(ClientOptions{})
			b.Cleanup(client.CloseIdleConnections)
			provider := staticProvider(server, kind)

			var worst float64
			for b.Loop() {
				// Returning freed memory to the OS makes VmRSS the live heap,
				// so earlier iterations do not hide this one's growth.
				debug.FreeOSMemory()
				if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
					b.Skipf("cannot reset the peak RSS: %v", err)
				}
				before := readStatusKiB(b, "VmRSS")

				results := make([]*ImageResult, calls)
				var wg sync.WaitGroup
				for i := range calls {
					wg.Go(func() {
						result, err := client.GenerateImages(context.Background(), provider, ImageRequest{Model: "m", Prompt: "p"})
						if err != nil {
							b.Error(err)
							return
						}
						results[i] = result
					})
				}
				wg.Wait()

				peak := readStatusKiB(b, "VmHWM")
				worst = max(worst, float64((peak-before)*1024)/inFlight)
				runtime.KeepAlive(results)
			}
			b.ReportMetric(worst, "peak-rss-growth/in-flight")
		})
	}
}

// readStatusKiB returns a field of /proc/self/status in KiB.
func readStatusKiB(tb testing.TB, field string) int64 {
	tb.Helper()

	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Fatalf("read /proc/self/status: %v", err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		value, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			tb.Fatalf("parse %s %q: %v", field, value, err)
		}
		return kib
	}
	tb.Fatalf("/proc/self/status has no %s", field)
	return 0
}
