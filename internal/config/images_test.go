package config

import (
	"strings"
	"testing"
)

// imageSwitch is an on/off image setting and the field that it sets.
type imageSwitch struct {
	name  string
	value func(Config) bool
}

func imageSwitches() []imageSwitch {
	return []imageSwitch{
		{"IMAGE_WORKER_IN_API", func(c Config) bool { return c.Images.WorkerInAPI }},
		{"IMAGE_DOWNLOAD_ALLOW_PRIVATE", func(c Config) bool { return c.Images.DownloadAllowPrivate }},
	}
}

func TestLoadImageSwitches(t *testing.T) {
	values := []struct {
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
	for _, setting := range imageSwitches() {
		for _, tt := range values {
			t.Run(setting.name+"="+tt.value, func(t *testing.T) {
				cfg, err := Load(envOf(map[string]string{setting.name: tt.value}))
				if err != nil {
					t.Fatal(err)
				}
				if got := setting.value(cfg); got != tt.want {
					t.Errorf("%s=%q gives %v, want %v", setting.name, tt.value, got, tt.want)
				}
			})
		}
	}
}

func TestLoadRejectsImageSwitchValue(t *testing.T) {
	for _, setting := range imageSwitches() {
		t.Run(setting.name, func(t *testing.T) {
			_, err := Load(envOf(map[string]string{setting.name: "sometimes"}))
			if err == nil || !strings.Contains(err.Error(), setting.name) {
				t.Fatalf("Load error = %v, want one naming %s", err, setting.name)
			}
		})
	}
}

func TestLoadOSSRegion(t *testing.T) {
	tests := []struct {
		value   string
		wantErr bool
	}{
		{"", false},
		{"cn-hangzhou", false},
		{"ap-southeast-1", false},
		{"oss-cn-hangzhou", true},
		{"CN-Hangzhou", true},
		{"cn hangzhou", true},
		{"-cn", true},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			cfg, err := Load(envOf(map[string]string{"IMAGE_OSS_REGION": tt.value}))
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "IMAGE_OSS_REGION") {
					t.Fatalf("Load error = %v, want one naming IMAGE_OSS_REGION", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Images.OSSRegion != tt.value {
				t.Errorf("OSSRegion = %q, want %q", cfg.Images.OSSRegion, tt.value)
			}
		})
	}
}
