package models

import "time"

// Sources of catalog rows: created through the admin API, or seeded at start
// from PROVIDERS_FILE and the OPENAI_* variables.
const (
	SourceAPI  = "api"
	SourceSeed = "seed"
)

// APIKey is a gateway credential. KeyHash is the hex HMAC-SHA256 of the
// secret under MASTER_KEY; the secret itself is never stored.
type APIKey struct {
	ID     string `gorm:"primaryKey"`
	UserID string
	Name   string
	// Prefix is the first characters of the secret, shown in listings so
	// that users can tell their keys apart.
	Prefix    string
	KeyHash   string
	ExpiresAt *time.Time
	// AllowedModels is a JSON array of logical model names; null allows all.
	AllowedModels JSON
	// AllowedIPs is a JSON array of CIDR prefixes; null allows any address.
	AllowedIPs     JSON
	IsActive       bool
	DisabledReason string
	LastUsedAt     *time.Time
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// ProviderRow is an upstream provider as stored. The runtime view with
// decrypted keys is providers.Provider.
type ProviderRow struct {
	ID             string `gorm:"primaryKey"`
	Name           string
	Kind           string
	BaseURL        string
	TimeoutSeconds int
	Enabled        bool
	// Headers is a JSON object of extra request headers, or null.
	Headers   JSON
	Source    string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// TableName maps ProviderRow to the providers table.
func (ProviderRow) TableName() string { return "providers" }

// ProviderKey is one upstream credential of a provider. SecretCiphertext is
// AES-256-GCM under a key derived from MASTER_KEY, nonce first.
type ProviderKey struct {
	ID               string `gorm:"primaryKey"`
	ProviderID       string
	Label            string
	SecretCiphertext []byte
	SecretLast4      string `gorm:"column:secret_last4"`
	Weight           int
	// MaxQPS caps requests per second through this key; 0 means no cap.
	MaxQPS         int `gorm:"column:max_qps"`
	Enabled        bool
	DisabledReason string
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// LogicalModelRow is a model name that clients request. Capabilities is a
// JSON array such as ["chat"].
type LogicalModelRow struct {
	Name         string `gorm:"primaryKey"`
	Capabilities JSON
	Source       string
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// TableName maps LogicalModelRow to the logical_models table.
func (LogicalModelRow) TableName() string { return "logical_models" }

// LogicalModelCandidate is one upstream model that can serve a logical model.
// Position keeps the order in which the admin listed the candidates.
type LogicalModelCandidate struct {
	ID           int64 `gorm:"primaryKey;autoIncrement"`
	LogicalModel string
	ProviderID   string
	Model        string
	Priority     int
	Weight       int
	Position     int
}

// RequestLog is one gateway request. APIKeyID and UserID have no foreign
// keys, so that the log outlives deleted keys and users.
type RequestLog struct {
	ID               int64 `gorm:"primaryKey;autoIncrement"`
	CreatedAt        time.Time
	RequestID        string
	APIKeyID         *string
	UserID           *string
	Method           string
	Path             string
	LogicalModel     string
	ProviderID       string
	UpstreamModel    string
	StatusCode       int
	LatencyMS        float64 `gorm:"column:latency_ms"`
	UpstreamMS       float64 `gorm:"column:upstream_ms"`
	PromptTokens     int
	CompletionTokens int
	Stream           bool
	ErrorCode        string
}
