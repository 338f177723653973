package api_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"
)

// BenchmarkGateway measures one gateway request end to end over loopback,
// against the same request sent straight to the mock upstream. The
// difference is the gateway's cost per request, API key lookup included.
func BenchmarkGateway(b *testing.B) {
	env := newGatewayEnv(b)
	key := env.newKey(nil)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}

	cases := []struct {
		name   string
		url    string
		header http.Header
		body   string
	}{
		{"direct", env.mocks["main"].URL() + "/v1/chat/completions", http.Header{"X-Mock-Tokens": {"16"}}, ""},
		{"gateway", env.baseURL + "/v1/chat/completions", http.Header{"Authorization": {"Bearer " + key}}, ""},
		{"models", env.baseURL + "/v1/models", http.Header{"Authorization": {"Bearer " + key}}, ""},
	}
	for _, stream := range []string{"false", "true"} {
		for _, tc := range cases {
			body := []byte(`{"model":"fixed-16","stream":` + stream + `,"messages":[{"role":"user","content":"benchmark the gateway"}]}`)
			b.Run(tc.name+"/stream="+stream, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					method := http.MethodPost
					var reader io.Reader = bytes.NewReader(body)
					if tc.name == "models" {
						method, reader = http.MethodGet, nil
					}
					req, _ := http.NewRequest(method, tc.url, reader)
					req.Header = tc.header.Clone()
					resp, err := client.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.Copy(io.Discard, resp.Body); err != nil {
						b.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Fatalf("status %d", resp.StatusCode)
					}
				}
			})
		}
	}
}
