package providers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
)

// testImage returns size pseudo-random bytes that differ per seed.
func testImage(seed byte, size int) []byte {
	image := make([]byte, size)
	state := uint32(seed) + 1
	for i := range image {
		state = state*1664525 + 1013904223
		image[i] = byte(state >> 24)
	}
	return image
}

// liftedCount returns how many strings liftBase64 lifts out of data.
func liftedCount(data []byte, key string) int {
	_, lifted := liftBase64(data, key)
	if lifted == nil {
		return 0
	}
	return len(lifted.spans)
}

func testCall() *call {
	return &call{
		client: NewClient(ClientOptions{}),
		ctx:    context.Background(),
		reqCtx: context.Background(),
		resp:   &http.Response{StatusCode: http.StatusOK},
	}
}

// openAIReference decodes data the way the lane did before lifting, with
// []byte fields and encoding/json alone.
func openAIReference(data []byte) ([][]byte, []string, error) {
	var response struct {
		Data []struct {
			B64JSON       []byte `json:"b64_json"`
			URL           string `json:"url"`
			RevisedPrompt string `json:"revised_prompt"`
		} `json:"data"`
		OutputFormat string `json:"output_format"`
		Usage        *struct {
			InputTokens  int `json:"input_tokens"`
			OutputTokens int `json:"output_tokens"`
			TotalTokens  int `json:"total_tokens"`
		} `json:"usage"`
		Error json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(data, &response); err != nil {
		return nil, nil, err
	}
	var images [][]byte
	var urls []string
	for _, entry := range response.Data {
		images = append(images, entry.B64JSON)
		urls = append(urls, entry.URL)
	}
	return images, urls, nil
}

func TestDecodeOpenAIImagesMatchesEncodingJSON(t *testing.T) {
	long1 := testImage(1, 4096)
	long2 := testImage(2, 6000)
	short := testImage(3, 100)
	escaped := strings.ReplaceAll(b64(long1), "/", `\/`)

	tests := []struct {
		name       string
		body       string
		wantLifted int
		wantErr    string
	}{
		{
			name:       "one image",
			body:       `{"created":1,"data":[{"b64_json":"` + b64(long1) + `","revised_prompt":"a cat"}]}`,
			wantLifted: 1,
		},
		{
			name:       "two images and spaces around the colon",
			body:       `{"data":[{"b64_json" :  "` + b64(long1) + `"},{"b64_json":"` + b64(long2) + `"}],"usage":{"input_tokens":3}}`,
			wantLifted: 2,
		},
		{
			name: "short image",
			body: `{"data":[{"b64_json":"` + b64(short) + `"}]}`,
		},
		{
			name:       "escaped slashes",
			body:       `{"data":[{"b64_json":"` + escaped + `"}]}`,
			wantLifted: 1,
		},
		{
			name:       "image and url entries",
			body:       `{"data":[{"b64_json":null,"url":"https://images.example/1.png"},{"b64_json":"` + b64(long2) + `"}]}`,
			wantLifted: 1,
		},
		{
			name:       "duplicate key keeps the last value",
			body:       `{"data":[{"b64_json":"` + b64(long1) + `","b64_json":"` + b64(long2) + `"}]}`,
			wantLifted: 2,
		},
		{
			name:       "key in another case replaces the lifted value",
			body:       `{"data":[{"b64_json":"` + b64(long1) + `","B64_JSON":"` + b64(short) + `"}]}`,
			wantLifted: 1,
		},
		{
			name:       "member that no field reads",
			body:       `{"extra":{"b64_json":"` + b64(long2) + `"},"data":[{"b64_json":"` + b64(long1) + `"}]}`,
			wantLifted: 2,
		},
		{
			name:       "placeholder text sent by the upstream",
			body:       `{"data":[{"b64_json":"` + b64(long1) + `"},{"b64_json":"\u0000lifted:0"}]}`,
			wantLifted: 1,
			wantErr:    "illegal base64",
		},
		{
			name:       "invalid base64",
			body:       `{"data":[{"b64_json":"` + b64(long1)[:2000] + `*` + b64(long1)[2001:] + `"}]}`,
			wantLifted: 1,
			wantErr:    "illegal base64",
		},
		{
			name:       "line breaks inside the string",
			body:       `{"data":[{"b64_json":"` + b64(long1)[:2000] + "\r\n\r\n" + b64(long1)[2000:] + `"}]}`,
			wantLifted: 1,
			wantErr:    "invalid JSON",
		},
		{
			name:    "unterminated string",
			body:    `{"data":[{"b64_json":"` + b64(long1),
			wantErr: "invalid JSON",
		},
		{
			name:       "trailing garbage",
			body:       `{"data":[{"b64_json":"` + b64(long1) + `"}]} x`,
			wantLifted: 1,
			wantErr:    "invalid JSON",
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := []byte(tt.body)
			if got := liftedCount(data, "b64_json"); got != tt.wantLifted {
				t.Errorf("lifted %d strings, want %d", got, tt.wantLifted)
			}

			result, downloads, err := decodeOpenAIImages(testCall(), data)
			wantImages, wantURLs, refErr := openAIReference(data)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				if refErr == nil {
					t.Fatalf("encoding/json decoded the body that the lane rejected")
				}
				return
			}
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if refErr != nil {
				t.Fatalf("encoding/json rejected the body: %v", refErr)
			}

			if len(result.Images) != len(wantImages) {
				t.Fatalf("got %d entries, want %d", len(result.Images), len(wantImages))
			}
			for i, want := range wantImages {
				if !bytes.Equal(result.Images[i].Data, want) {
					t.Errorf("entry %d: got %d bytes that differ from encoding/json's %d", i, len(result.Images[i].Data), len(want))
				}
			}
			for _, pending := range downloads {
				if pending.url != wantURLs[pending.index] {
					t.Errorf("entry %d: url %q, want %q", pending.index, pending.url, wantURLs[pending.index])
				}
			}
		})
	}
}

func TestDecodeGeminiImagesMatchesEncodingJSON(t *testing.T) {
	long1 := testImage(4, 3000)
	long2 := testImage(5, 5000)
	part := func(image []byte, extra string) string {
		return `{` + extra + `"inlineData":{"mimeType":"image/png","data":"` + b64(image) + `"}}`
	}

	tests := []struct {
		name       string
		body       string
		wantImages [][]byte
		wantLifted int
		wantErr    string
	}{
		{
			name:       "image after text",
			body:       `{"candidates":[{"content":{"parts":[{"text":"here"},` + part(long1, "") + `]}}],"usageMetadata":{"promptTokenCount":2}}`,
			wantImages: [][]byte{long1},
			wantLifted: 1,
		},
		{
			name:       "thought part is skipped",
			body:       `{"candidates":[{"content":{"parts":[` + part(long1, `"thought":true,`) + `,` + part(long2, "") + `]}}]}`,
			wantImages: [][]byte{long2},
			wantLifted: 2,
		},
		{
			name:       "data member outside inlineData",
			body:       `{"data":"` + b64(long2) + `","candidates":[{"content":{"parts":[` + part(long1, "") + `]}}]}`,
			wantImages: [][]byte{long1},
			wantLifted: 2,
		},
		{
			name:       "invalid base64",
			body:       `{"candidates":[{"content":{"parts":[{"inlineData":{"data":"` + b64(long1)[:100] + `!` + b64(long1)[101:] + `"}}]}}]}`,
			wantLifted: 1,
			wantErr:    "illegal base64",
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := []byte(tt.body)
			if got := liftedCount(data, "data"); got != tt.wantLifted {
				t.Errorf("lifted %d strings, want %d", got, tt.wantLifted)
			}

			result, err := decodeGeminiResponse(testCall(), data)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if len(result.Images) != len(tt.wantImages) {
				t.Fatalf("got %d images, want %d", len(result.Images), len(tt.wantImages))
			}
			for i, want := range tt.wantImages {
				if !bytes.Equal(result.Images[i].Data, want) {
					t.Errorf("image %d differs from the one sent", i)
				}
			}
		})
	}
}

// TestDecodeOpenAIImagesMutations decodes many mutations of valid bodies
// and checks that the lane agrees with encoding/json on each.
func TestDecodeOpenAIImagesMutations(t *testing.T) {
	image := b64(testImage(6, 900))
	seeds := []string{
		`{"data":[{"b64_json":"` + image + `"}]}`,
		`{"data":[{"b64_json":"` + image + `","b64_json":"` + image[:8] + `"}]}`,
		`{"data":[{"b64_json":"` + image + `"},{"b64_json":"\u0000lifted:0"}]}`,
		`{"x":["b64_json",{"b64_json":"` + image + `"}],"data":[{"url":"u","b64_json" : "` + image + `"}]}`,
	}
	// Mutations insert or overwrite the bytes that steer the scanner.
	steering := []byte(`"\\:,{}[] 0/n`)
	random := rand.New(rand.NewPCG(1, 2))

	for round := range 20000 {
		data := []byte(seeds[round%len(seeds)])
		for range 1 + random.IntN(3) {
			at := random.IntN(len(data))
			c := steering[random.IntN(len(steering))]
			if random.IntN(2) == 0 {
				data[at] = c
			} else {
				data = append(data[:at], append([]byte{c}, data[at:]...)...)
			}
		}

		result, _, err := decodeOpenAIImages(testCall(), data)
		wantImages, _, refErr := openAIReference(data)
		// The lane also rejects documents that decode but carry no
		// image, which are not malformed.
		malformed := err != nil && (strings.Contains(err.Error(), "invalid JSON") || strings.Contains(err.Error(), "invalid base64"))
		if malformed != (refErr != nil) {
			t.Fatalf("body %q: lane error %v, encoding/json error %v", data, err, refErr)
		}
		if err != nil {
			continue
		}
		for i, want := range wantImages {
			if len(want) > 0 && !bytes.Equal(result.Images[i].Data, want) {
				t.Fatalf("body %q: entry %d differs from encoding/json's", data, i)
			}
		}
	}
}

// BenchmarkDecodeImagesJSON compares the lane's decoder with encoding/json
// alone on an images response with one 1 MiB image.
func BenchmarkDecodeImagesJSON(b *testing.B) {
	image := testImage(7, 1<<20)
	data := []byte(fmt.Sprintf(`{"created":1,"data":[{"b64_json":"%s"}],"output_format":"png"}`, b64(image)))

	b.Run("encoding_json", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			images, _, err := openAIReference(data)
			if err != nil || len(images[0]) != len(image) {
				b.Fatalf("decode: %v", err)
			}
		}
	})
	b.Run("lane", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			result, _, err := decodeOpenAIImages(testCall(), data)
			if err != nil || len(result.Images[0].Data) != len(image) {
				b.Fatalf("decode: %v", err)
			}
		}
	})
}
