package benchstack

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver for dropping the benchmark database
	"github.com/redis/go-redis/v9"
	"go.temporal.io/sdk/testsuite"
)

// DropDatabase drops the database name through the server at adminURL,
// closing its open connections.
func DropDatabase(adminURL, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := sql.Open("pgx", adminURL)
	if err != nil {
		return fmt.Errorf("open -database-url: %w", err)
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// RedisVersion returns the redis_version of the server, or
// "(version unknown)".
func RedisVersion(ctx context.Context, rdb *redis.Client) string {
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return "(version unknown)"
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return v
		}
	}
	return "(version unknown)"
}

// DeleteKeys deletes every key that starts with prefix, scanning at most
// a million keys.
func DeleteKeys(rdb *redis.Client, prefix string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	iter := rdb.Scan(ctx, 0, prefix+"*", 500).Iterator()
	for scanned := 0; scanned < 1_000_000 && iter.Next(ctx); scanned++ {
		if err := rdb.Del(ctx, iter.Val()).Err(); err != nil {
			return fmt.Errorf("delete %s: %w", iter.Val(), err)
		}
	}
	return iter.Err()
}

// StopDevServer stops the server and kills it when it has not exited after
// 30 seconds.
func StopDevServer(srv *testsuite.DevServer, pid int) error {
	done := make(chan error, 1)
	go func() { done <- srv.Stop() }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		if process, err := os.FindProcess(pid); err == nil {
			_ = process.Kill()
		}
		return fmt.Errorf("the Temporal dev server (pid %d) did not stop within 30s and was killed", pid)
	}
}

// TemporalVersion describes the Temporal Server that the CLI at cli
// embeds, such as "Temporal Server 1.29.1".
func TemporalVersion(ctx context.Context, cli string) string {
	out, err := exec.CommandContext(ctx, cli, "--version").Output()
	if err != nil {
		return "Temporal CLI"
	}
	// The output reads "temporal version X (Server Y, UI Z)".
	if _, server, ok := strings.Cut(string(out), "Server "); ok {
		if version, _, ok := strings.Cut(server, ","); ok {
			return "Temporal Server " + version
		}
	}
	return strings.TrimSpace(string(out))
}

// FreeLoopbackAddr returns a 127.0.0.1 address whose port was free a
// moment ago.
func FreeLoopbackAddr() (string, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free loopback port: %w", err)
	}
	addr := listener.Addr().String()
	if err := listener.Close(); err != nil {
		return "", fmt.Errorf("release port %s: %w", addr, err)
	}
	return addr, nil
}

// WaitHealthy polls healthURL every 100ms until it returns 200 or ctx ends.
func WaitHealthy(ctx context.Context, healthURL string) error {
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, healthURL, nil)
		if err != nil {
			return fmt.Errorf("build request for %s: %w", healthURL, err)
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("GET %s did not return 200: %w", healthURL, ctx.Err())
		case <-ticker.C:
		}
	}
}

// RandomHex returns n random bytes as 2n hex digits.
func RandomHex(n int) string {
	b := make([]byte, n)
	// crypto/rand.Read never returns an error since Go 1.24.
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
