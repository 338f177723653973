package media_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/config"
	"github.com/aihigress/aihigress/internal/media"
	"github.com/aihigress/aihigress/internal/testenv"
)

var testDay = time.Date(2025, 3, 14, 0, 0, 0, 0, time.UTC)

// logRecords returns the JSON records that a logger wrote to buf.
func logRecords(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var records []map[string]any
	for line := range strings.Lines(buf.String()) {
		var record map[string]any
		if err := json.Unmarshal([]byte(line), &record); err != nil {
			t.Fatalf("parse log line %q: %v", line, err)
		}
		records = append(records, record)
	}
	return records
}

func TestOpenChoosesStorage(t *testing.T) {
	server := startFakeOSS(t)
	st := testenv.Store(t)
	localDir := filepath.Join(t.TempDir(), "media")

	tests := []struct {
		name      string
		cfg       config.Images
		wantName  string
		wantLevel string
		wantLog   string
		roundTrip bool
	}{
		{
			name: "oss",
			cfg: config.Images{Storage: config.StorageOSS, Prefix: "aihtest", OSSEndpoint: server.URL(), OSSBucket: testBucket,
				OSSAccessKeyID: testKeyID, OSSAccessKeySecret: testKeySecret},
			wantName: "oss", wantLevel: "INFO", wantLog: "Aliyun OSS", roundTrip: true,
		},
		{
			name:     "local",
			cfg:      config.Images{Storage: config.StorageLocal, Prefix: "aihtest", LocalDir: localDir},
			wantName: "local", wantLevel: "INFO", wantLog: "local directory",
		},
		{
			name:     "database",
			cfg:      config.Images{Storage: config.StorageDatabase, Prefix: "aihtest"},
			wantName: "database", wantLevel: "WARN", wantLog: "carry them as data: URLs", roundTrip: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logged bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&logged, nil))
			ctx := context.Background()

			storage, err := media.Open(ctx, tt.cfg, st.DB, logger)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if storage.Name() != tt.wantName {
				t.Errorf("Name() = %q, want %q", storage.Name(), tt.wantName)
			}

			records := logRecords(t, &logged)
			if len(records) != 1 {
				t.Fatalf("Open logged %d lines, want 1: %s", len(records), logged.String())
			}
			if records[0]["level"] != tt.wantLevel {
				t.Errorf("log level = %v, want %s", records[0]["level"], tt.wantLevel)
			}
			if msg, _ := records[0]["msg"].(string); !strings.Contains(msg, tt.wantLog) {
				t.Errorf("log message = %q, want one containing %q", msg, tt.wantLog)
			}
			if strings.Contains(logged.String(), testKeySecret) {
				t.Errorf("log contains the OSS secret: %s", logged.String())
			}

			if !tt.roundTrip {
				return
			}
			key := media.ObjectKey(tt.cfg.Prefix, "images", testDay, "run-open", 0, "image/png")
			if _, err := storage.Put(ctx, key, strings.NewReader("png bytes"), 9, "image/png"); err != nil {
				t.Fatalf("Put: %v", err)
			}
			info, err := storage.Head(ctx, key)
			if err != nil || info.Size != 9 {
				t.Errorf("Head = %+v, %v, want 9 bytes", info, err)
			}
		})
	}

	if keys := server.Keys(); len(keys) != 1 {
		t.Errorf("fake OSS keys = %v, want the one object of the oss case", keys)
	}
}

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name    string
		cfg     config.Images
		wantErr string
	}{
		{"unknown storage", config.Images{Storage: "s3"}, `unknown storage "s3"`},
		{"empty storage", config.Images{}, `unknown storage ""`},
		{"database without connection", config.Images{Storage: config.StorageDatabase}, "needs a database connection"},
		{"oss without secret", config.Images{Storage: config.StorageOSS, OSSEndpoint: "https://oss.example.invalid", OSSBucket: testBucket, OSSAccessKeyID: testKeyID},
			"needs the access key secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			storage, err := media.Open(context.Background(), tt.cfg, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Open error = %v, want one containing %q", err, tt.wantErr)
			}
			if storage != nil {
				t.Errorf("Open returned storage %v with an error, want nil", storage)
			}
		})
	}
}
