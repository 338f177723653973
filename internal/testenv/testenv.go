// Package testenv provides real backends for tests. The database is SQLite,
// or PostgreSQL when TEST_DATABASE_URL is set. Redis is embedded, or a real
// server when TEST_REDIS_URL is set. The Temporal dev server comes from the
// CLI at TEMPORAL_CLI_PATH or ./bin/temporal.
//
// Every database and Redis key prefix is created for one test and dropped
// after it, because CI shares its PostgreSQL and Redis between runs.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver for creating test databases
	"github.com/redis/go-redis/v9"
	"go.temporal.io/sdk/testsuite"

	"github.com/aihigress/aihigress/internal/devenv"
	"github.com/aihigress/aihigress/internal/store"
)

// Suffix returns a random lowercase hex string for unique names.
func Suffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// DatabaseURL returns a DATABASE_URL for a fresh, empty database: a new
// PostgreSQL database when TEST_DATABASE_URL is set, dropped at cleanup, and
// otherwise "" together with a SQLite path in a temporary folder.
func DatabaseURL(t testing.TB) (databaseURL, sqlitePath string) {
	t.Helper()
	base := os.Getenv("TEST_DATABASE_URL")
	if base == "" {
		return "", filepath.Join(t.TempDir(), "test.db")
	}

	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("open TEST_DATABASE_URL: %v", err)
	}
	defer admin.Close()
	name := "aih_test_" + Suffix()
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create test database %s: %v", name, err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("pgx", base)
		if err != nil {
			t.Errorf("reopen TEST_DATABASE_URL: %v", err)
			return
		}
		defer admin.Close()
		if _, err := admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})

	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse TEST_DATABASE_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String(), ""
}

// Store opens and migrates a fresh database.
func Store(t testing.TB) *store.Store {
	t.Helper()
	databaseURL, sqlitePath := DatabaseURL(t)
	st, err := store.Open(context.Background(), store.Options{DatabaseURL: databaseURL, SQLitePath: sqlitePath})
	if err != nil {
		t.Fatalf("open test database: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if _, err := st.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate test database: %v", err)
	}
	return st
}

// Redis returns a Redis URL and a key prefix unique to the test. With
// TEST_REDIS_URL unset it starts an embedded server.
func Redis(t testing.TB) (redisURL, prefix string) {
	t.Helper()
	prefix = "aihtest:" + Suffix() + ":"
	if base := os.Getenv("TEST_REDIS_URL"); base != "" {
		t.Cleanup(func() { deletePrefix(t, base, prefix) })
		return base, prefix
	}
	srv, url, err := devenv.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return url, prefix
}

func deletePrefix(t testing.TB, redisURL, prefix string) {
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Errorf("parse TEST_REDIS_URL: %v", err)
		return
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iter := rdb.Scan(ctx, 0, prefix+"*", 500).Iterator()
	for iter.Next(ctx) {
		rdb.Del(ctx, iter.Val())
	}
}

// TemporalCLI returns the path of the Temporal CLI used for dev servers.
func TemporalCLI() (string, error) {
	if p := os.Getenv("TEMPORAL_CLI_PATH"); p != "" {
		return p, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, "bin", "temporal")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no Temporal CLI at %s; run `make bin/temporal` or set TEMPORAL_CLI_PATH", p)
	}
	return p, nil
}

// StartTemporal starts a dev server for a test package; call Stop when done.
func StartTemporal() (*testsuite.DevServer, error) {
	cli, err := TemporalCLI()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return devenv.StartTemporal(ctx, devenv.TemporalOptions{CLIPath: cli, Namespace: "default"})
}

// RepoRoot returns the folder that contains go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.mod not found")
		}
		dir = parent
	}
}

// UsingPostgres reports whether tests run on PostgreSQL.
func UsingPostgres() bool {
	return strings.HasPrefix(os.Getenv("TEST_DATABASE_URL"), "postgres")
}

// RedisClient returns a client of a Redis from Redis and the test's key
// prefix. The client is closed at cleanup.
func RedisClient(t testing.TB) (*redis.Client, string) {
	t.Helper()
	redisURL, prefix := Redis(t)
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb, prefix
}
