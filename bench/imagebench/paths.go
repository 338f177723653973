package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/aihigress/aihigress/bench/internal/benchstack"
)

// newHTTPClient returns a client whose pool keeps a connection per
// concurrent request, so that no sample opens a connection.
func newHTTPClient(concurrency int) *http.Client {
	transport := &http.Transport{
		MaxIdleConns:        max(concurrency*4, 256),
		MaxIdleConnsPerHost: max(concurrency*4, 256),
		IdleConnTimeout:     5 * time.Minute,
		DisableCompression:  true,
	}
	return &http.Client{Transport: transport}
}

// sample is the timing of one image generation through one path. The
// steps add up to total.
type sample struct {
	total time.Duration
	// generate is the POST until its response was read: for the direct
	// path the mock's response with the decoded image, for ours the API's
	// response with the link.
	generate time.Duration
	// store is the direct path's file write and fsync. Ours stores inside
	// generate.
	store time.Duration
	// readBack is the GET of the stored image until its last byte.
	readBack time.Duration

	// prompt joins our path's sample with its workflow, whose summary
	// contains it. sent and responded are when the POST went out and when
	// its response was read, on the machine's clock, which the dev
	// server's event times also use.
	prompt          string
	sent, responded time.Time
}

// directPath calls the mock upstream, decodes the image, writes it to a
// folder and reads it back from a bare http.ServeFile server.
type directPath struct {
	http       *http.Client
	mockURL    string
	dir        string
	fileURL    string
	imageBytes int
}

// fileServer serves the files of dir with http.ServeFile on loopback.
type fileServer struct {
	url    string
	server *http.Server
	served chan struct{}
}

func startFileServer(dir string, logger *slog.Logger) (*fileServer, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &fileServer{url: "http://" + listener.Addr().String(), served: make(chan struct{})}
	f.server = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			name := path.Base(r.URL.Path)
			if strings.HasPrefix(name, ".") || name == "/" {
				http.NotFound(w, r)
				return
			}
			http.ServeFile(w, r, filepath.Join(dir, name))
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	go func() {
		defer close(f.served)
		if err := f.server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("file server stopped", "error", err)
		}
	}()
	return f, nil
}

func (f *fileServer) close() error {
	err := f.server.Close()
	<-f.served
	return err
}

// run makes one image generation with prompt and returns its timing.
func (d *directPath) run(ctx context.Context, prompt string) (sample, error) {
	body, err := json.Marshal(map[string]any{"model": "mock-image", "prompt": prompt, "n": 1, "response_format": "b64_json"})
	if err != nil {
		return sample{}, err
	}
	started := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.mockURL+"/v1/images/generations", bytes.NewReader(body))
	if err != nil {
		return sample{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Mock-Image-Bytes", fmt.Sprint(d.imageBytes))
	image, err := d.generate(req)
	if err != nil {
		return sample{}, err
	}
	generated := time.Now()

	name := benchstack.RandomHex(16) + ".png"
	if err := writeFileSynced(filepath.Join(d.dir, name), image); err != nil {
		return sample{}, err
	}
	stored := time.Now()

	if err := readBack(ctx, d.http, d.fileURL+"/"+name, d.imageBytes); err != nil {
		return sample{}, err
	}
	done := time.Now()
	return sample{total: done.Sub(started), generate: generated.Sub(started), store: stored.Sub(generated), readBack: done.Sub(stored)}, nil
}

// generate sends the mock request and returns the decoded image.
func (d *directPath) generate(req *http.Request) ([]byte, error) {
	resp, err := d.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("POST mock images: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("POST mock images: status %d: %s", resp.StatusCode, raw)
	}
	var answer struct {
		Data []struct {
			B64JSON string `json:"b64_json"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return nil, fmt.Errorf("decode mock images response: %w", err)
	}
	if len(answer.Data) != 1 {
		return nil, fmt.Errorf("mock images response has %d images, want 1", len(answer.Data))
	}
	image, err := base64.StdEncoding.DecodeString(answer.Data[0].B64JSON)
	if err != nil {
		return nil, fmt.Errorf("decode mock image: %w", err)
	}
	if len(image) != d.imageBytes {
		return nil, fmt.Errorf("mock image has %d bytes, want %d", len(image), d.imageBytes)
	}
	return image, nil
}

// writeFileSynced writes data to a new file and syncs it to disk, as the
// local media storage does before it links a file.
func writeFileSynced(name string, data []byte) error {
	file, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	if _, err := file.Write(data); err != nil {
		_ = file.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := file.Sync(); err != nil {
		_ = file.Close()
		return fmt.Errorf("sync %s: %w", name, err)
	}
	return file.Close()
}

// readBack fetches url and checks that the body has wantBytes bytes.
func readBack(ctx context.Context, client *http.Client, url string, wantBytes int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("GET image: %w", err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return fmt.Errorf("GET image: read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK || n != int64(wantBytes) {
		return fmt.Errorf("GET image: status %d with %d bytes, want 200 with %d", resp.StatusCode, n, wantBytes)
	}
	return nil
}

// ourPath posts to the API's POST /v1/images/generations, which waits for
// the image workflow, and fetches the signed link of the response.
type ourPath struct {
	http       *http.Client
	apiURL     string
	apiKey     string
	model      string
	imageBytes int
}

func (o *ourPath) run(ctx context.Context, prompt string) (sample, error) {
	started := time.Now()
	links, err := o.generate(ctx, prompt, 1)
	if err != nil {
		return sample{}, err
	}
	generated := time.Now()
	if err := readBack(ctx, o.http, links[0], o.imageBytes); err != nil {
		return sample{}, err
	}
	done := time.Now()
	return sample{
		total: done.Sub(started), generate: generated.Sub(started), readBack: done.Sub(generated),
		prompt: prompt, sent: started, responded: generated,
	}, nil
}

// generate requests n images as links and returns the links.
func (o *ourPath) generate(ctx context.Context, prompt string, n int) ([]string, error) {
	var answer struct {
		Data []struct {
			URL string `json:"url"`
		} `json:"data"`
	}
	body := map[string]any{"model": o.model, "prompt": prompt, "n": n, "response_format": "url"}
	if err := postJSON(ctx, o.http, o.apiURL+"/v1/images/generations", o.apiKey, body, http.StatusOK, &answer); err != nil {
		return nil, err
	}
	if len(answer.Data) != n {
		return nil, fmt.Errorf("POST /v1/images/generations returned %d images, want %d", len(answer.Data), n)
	}
	links := make([]string, n)
	for i, datum := range answer.Data {
		if datum.URL == "" {
			return nil, fmt.Errorf("POST /v1/images/generations returned image %d without a url", i)
		}
		links[i] = datum.URL
	}
	return links, nil
}

// postJSON posts body as JSON with an optional bearer token, checks the
// status and decodes the response into out unless out is nil.
func postJSON(ctx context.Context, client *http.Client, url, token string, body any, wantStatus int, out any) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != wantStatus {
		text, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("POST %s: status %d, want %d: %s", url, resp.StatusCode, wantStatus, text)
	}
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("POST %s: decode response: %w", url, err)
	}
	return nil
}
