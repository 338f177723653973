package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Image storage backends.
const (
	StorageOSS      = "oss"
	StorageLocal    = "local"
	StorageDatabase = "database"
)

// Images configures image generation, its storage and the signed media
// links.
type Images struct {
	// Storage is StorageOSS when the IMAGE_OSS_* settings are present,
	// StorageLocal when LocalDir is set, and StorageDatabase otherwise, in
	// which case responses carry data: URLs.
	Storage string

	OSSEndpoint        string
	OSSBucket          string
	OSSAccessKeyID     string
	OSSAccessKeySecret string
	// OSSRegion, such as cn-hangzhou, is the region of OSS V4 signatures.
	// Empty takes it from a standard endpoint (see media.OSSConfig.Region).
	OSSRegion string
	// Prefix is the first path segment of every object key. Signed links
	// outside it are rejected.
	Prefix string

	// LocalDir is the directory of the local storage. `dev` sets it to
	// data/media when it is empty.
	LocalDir string

	// PublicBaseURL is the scheme and host that signed links start with,
	// such as https://api.example.com. When empty, links are built from the
	// request's host, which only trusted proxies can change.
	PublicBaseURL string
	// LinkTTL is how long a signed media link stays valid.
	LinkTTL time.Duration

	MaxPromptChars int
	// DownloadMaxBytes caps an image that an upstream returns as a URL.
	DownloadMaxBytes int64
	DownloadTimeout  time.Duration
	// DownloadAllowPrivate lets those downloads reach loopback, private,
	// link-local and other non-public addresses. When false, only public
	// addresses and the provider's own base_url host are allowed.
	DownloadAllowPrivate bool
	// SyncWaitTimeout is how long POST /v1/images/generations waits for the
	// workflow before it responds 202 with the run id.
	SyncWaitTimeout time.Duration
	MaxAttempts     int
	// WorkerInAPI makes `serve` also run a worker for the image task
	// queue, with its workflows and activities, on the API's Temporal
	// client. Image workflows that the API starts then run their first
	// workflow task in the API process, without a trip through the
	// matching service (eager workflow start). The activities that they
	// schedule run there too when the cluster allows eager activity
	// execution.
	WorkerInAPI bool
}

func loadImages(env *lookup) Images {
	images := Images{
		OSSEndpoint:          env.str("IMAGE_OSS_ENDPOINT", ""),
		OSSBucket:            env.str("IMAGE_OSS_BUCKET", ""),
		OSSAccessKeyID:       env.str("IMAGE_OSS_ACCESS_KEY_ID", ""),
		OSSAccessKeySecret:   env.str("IMAGE_OSS_ACCESS_KEY_SECRET", ""),
		OSSRegion:            env.str("IMAGE_OSS_REGION", ""),
		Prefix:               strings.Trim(env.str("IMAGE_OSS_PREFIX", "aihigress"), "/"),
		LocalDir:             env.str("IMAGE_LOCAL_DIR", ""),
		PublicBaseURL:        strings.TrimRight(env.str("PUBLIC_BASE_URL", ""), "/"),
		LinkTTL:              env.duration("MEDIA_LINK_TTL", time.Hour),
		MaxPromptChars:       env.integer("IMAGE_MAX_PROMPT_CHARS", 32000),
		DownloadMaxBytes:     int64(env.integer("IMAGE_DOWNLOAD_MAX_BYTES", 32<<20)),
		DownloadTimeout:      env.duration("IMAGE_DOWNLOAD_TIMEOUT", 30*time.Second),
		DownloadAllowPrivate: env.switchOn("IMAGE_DOWNLOAD_ALLOW_PRIVATE", false),
		SyncWaitTimeout:      env.duration("IMAGE_SYNC_WAIT_TIMEOUT", 5*time.Minute),
		MaxAttempts:          env.integer("IMAGE_MAX_ATTEMPTS", 3),
		WorkerInAPI:          env.switchOn("IMAGE_WORKER_IN_API", false),
	}
	switch {
	case images.OSSEndpoint != "" || images.OSSBucket != "":
		images.Storage = StorageOSS
	case images.LocalDir != "":
		images.Storage = StorageLocal
	default:
		images.Storage = StorageDatabase
	}
	return images
}

// UseLocalDir selects the local storage in dir unless OSS is configured.
// `dev` calls it so that images land under data/media by default.
func (i *Images) UseLocalDir(dir string) {
	if i.Storage == StorageOSS || i.LocalDir != "" {
		return
	}
	i.LocalDir, i.Storage = dir, StorageLocal
}

func (i Images) validate() error {
	if i.Storage == StorageOSS {
		var missing []string
		for name, value := range map[string]string{
			"IMAGE_OSS_ENDPOINT": i.OSSEndpoint, "IMAGE_OSS_BUCKET": i.OSSBucket,
			"IMAGE_OSS_ACCESS_KEY_ID": i.OSSAccessKeyID, "IMAGE_OSS_ACCESS_KEY_SECRET": i.OSSAccessKeySecret,
		} {
			if value == "" {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("invalid configuration: OSS image storage also needs %s", strings.Join(slices.Sorted(slices.Values(missing)), ", "))
		}
	}
	if i.OSSRegion != "" && (!isRegionID(i.OSSRegion) || strings.HasPrefix(i.OSSRegion, "oss-")) {
		return fmt.Errorf("invalid configuration: IMAGE_OSS_REGION must be a region ID such as cn-hangzhou, without the oss- of the endpoint, got %q", i.OSSRegion)
	}
	if i.Prefix == "" || strings.Contains(i.Prefix, "..") || strings.ContainsAny(i.Prefix, `\?#%`) {
		return fmt.Errorf("invalid configuration: IMAGE_OSS_PREFIX must be a non-empty path without .., \\, ?, # or %%, got %q", i.Prefix)
	}
	if i.PublicBaseURL != "" {
		u, err := url.Parse(i.PublicBaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("invalid configuration: PUBLIC_BASE_URL must be an http or https URL such as https://api.example.com, got %q", i.PublicBaseURL)
		}
	}
	if i.LinkTTL < time.Second {
		return fmt.Errorf("invalid configuration: MEDIA_LINK_TTL must be at least 1s, got %s", i.LinkTTL)
	}
	if i.MaxPromptChars < 1 || i.MaxAttempts < 1 || i.DownloadMaxBytes < 1 {
		return fmt.Errorf("invalid configuration: IMAGE_MAX_PROMPT_CHARS, IMAGE_MAX_ATTEMPTS and IMAGE_DOWNLOAD_MAX_BYTES must be at least 1")
	}
	return nil
}

// isRegionID reports whether region consists of lower-case letters, digits
// and inner hyphens, as Aliyun region IDs such as cn-hangzhou do.
func isRegionID(region string) bool {
	if region == "" || strings.HasPrefix(region, "-") || strings.HasSuffix(region, "-") {
		return false
	}
	for _, r := range region {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			return false
		}
	}
	return true
}
