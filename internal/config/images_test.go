package config

import (
	"strings"
	"testing"
)

func TestLoadImageWorkerInAPI(t *testing.T) {
	tests := []struct {
		value string
		want  bool
	}{
		{"", false},
		{"true", true},
		{"on", true},
		{"false", false},
		{"off", false},
	}
	for _, tt := range tests {
		t.Run("value "+tt.value, func(t *testing.T) {
			cfg, err := Load(envOf(map[string]string{"IMAGE_WORKER_IN_API": tt.value}))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Images.WorkerInAPI != tt.want {
				t.Errorf("IMAGE_WORKER_IN_API=%q gives WorkerInAPI %v, want %v", tt.value, cfg.Images.WorkerInAPI, tt.want)
			}
		})
	}
}

func TestLoadRejectsImageWorkerInAPI(t *testing.T) {
	_, err := Load(envOf(map[string]string{"IMAGE_WORKER_IN_API": "sometimes"}))
	if err == nil || !strings.Contains(err.Error(), "IMAGE_WORKER_IN_API") {
		t.Fatalf("Load error = %v, want one naming IMAGE_WORKER_IN_API", err)
	}
}

func TestLoadImageDownloadAllowPrivate(t *testing.T) {
	tests := []struct {
		value string
		want  bool
	}{
		{"", false},
		{"true", true},
		{"on", true},
		{"1", true},
		{"false", false},
		{"off", false},
	}
	for _, tt := range tests {
		t.Run("value "+tt.value, func(t *testing.T) {
			cfg, err := Load(envOf(map[string]string{"IMAGE_DOWNLOAD_ALLOW_PRIVATE": tt.value}))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Images.DownloadAllowPrivate != tt.want {
				t.Errorf("IMAGE_DOWNLOAD_ALLOW_PRIVATE=%q gives DownloadAllowPrivate %v, want %v", tt.value, cfg.Images.DownloadAllowPrivate, tt.want)
			}
		})
	}
}

func TestLoadRejectsImageDownloadAllowPrivate(t *testing.T) {
	_, err := Load(envOf(map[string]string{"IMAGE_DOWNLOAD_ALLOW_PRIVATE": "maybe"}))
	if err == nil || !strings.Contains(err.Error(), "IMAGE_DOWNLOAD_ALLOW_PRIVATE") {
		t.Fatalf("Load error = %v, want one naming IMAGE_DOWNLOAD_ALLOW_PRIVATE", err)
	}
}
