// Package migrations embeds the versioned SQL migrations, one folder per
// database dialect. Files follow goose's naming: NNNNN_name.sql.
package migrations

import "embed"

// FS contains postgres/*.sql and sqlite/*.sql.
//
//go:embed postgres/*.sql sqlite/*.sql
var FS embed.FS
