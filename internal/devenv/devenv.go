// Package devenv starts the local stand-ins that `aihigress dev` and the
// integration tests need: an embedded Redis-protocol server, a Temporal dev
// server built from the Temporal CLI, and the mock upstream.
package devenv

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/alicebob/miniredis/v2"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/aihigress/aihigress/workflows"
)

// StartRedis starts an in-process Redis-protocol server on a loopback port
// and returns its redis:// URL.
func StartRedis() (*miniredis.Miniredis, string, error) {
	srv := miniredis.NewMiniRedis()
	if err := srv.StartAddr("127.0.0.1:0"); err != nil {
		return nil, "", fmt.Errorf("start embedded Redis: %w", err)
	}
	return srv, "redis://" + srv.Addr() + "/0", nil
}

// TemporalOptions configures StartTemporal.
type TemporalOptions struct {
	// CLIPath is the temporal executable, usually ./bin/temporal.
	CLIPath string
	// HostPort is the frontend listen address. Empty picks a free port.
	HostPort  string
	Namespace string
	// DBPath persists the server's state; empty keeps it in memory.
	DBPath string
	// UIPort enables the Web UI on that port when non-empty.
	UIPort string
	Output io.Writer
}

// StartTemporal starts `temporal server start-dev` with the project's search
// attributes registered, and waits until it accepts clients.
func StartTemporal(ctx context.Context, opts TemporalOptions) (*testsuite.DevServer, error) {
	path, err := filepath.Abs(opts.CLIPath)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("temporal CLI not found at %s (run `make bin/temporal` to build it): %w", path, err)
	}
	if opts.DBPath != "" {
		if err := os.MkdirAll(filepath.Dir(opts.DBPath), 0o750); err != nil {
			return nil, err
		}
	}
	out := opts.Output
	if out == nil {
		out = io.Discard
	}
	srv, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath:     path,
		ClientOptions:    &client.Options{HostPort: opts.HostPort, Namespace: opts.Namespace},
		DBFilename:       opts.DBPath,
		EnableUI:         opts.UIPort != "",
		UIPort:           opts.UIPort,
		LogLevel:         "warn",
		SearchAttributes: SearchAttributes(),
		Stdout:           out,
		Stderr:           out,
	})
	if err != nil {
		return nil, fmt.Errorf("start Temporal dev server: %w", err)
	}
	return srv, nil
}

// SearchAttributes returns the project's search attributes with placeholder
// values; only their names and types matter for registration.
func SearchAttributes() temporal.SearchAttributes {
	return temporal.NewSearchAttributes(
		workflows.AttrUserID.ValueSet(""),
		workflows.AttrConversationID.ValueSet(""),
		workflows.AttrLogicalModel.ValueSet(""),
		workflows.AttrRunKind.ValueSet(""),
		workflows.AttrRunStatus.ValueSet(""),
	)
}
