// Package store opens the database, runs the migrations and holds the
// queries that the API and the activities share.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/pressly/goose/v3"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/aihigress/aihigress/migrations"
)

// Dialect names the database engine behind a Store.
type Dialect string

const (
	Postgres Dialect = "postgres"
	SQLite   Dialect = "sqlite"
)

// ErrNotFound is returned when a row does not exist or belongs to another user.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned when a unique constraint rejects a write.
var ErrConflict = errors.New("conflict")

// Store wraps the GORM handle.
type Store struct {
	DB      *gorm.DB
	Dialect Dialect
}

// Options selects the database. A postgres:// DatabaseURL wins; otherwise
// SQLitePath is opened, and its folder is created when missing.
type Options struct {
	DatabaseURL  string
	SQLitePath   string
	MaxOpenConns int
}

// Open connects to the database without migrating it.
func Open(ctx context.Context, opts Options) (*Store, error) {
	gormConfig := &gorm.Config{
		Logger:                 logger.Discard,
		SkipDefaultTransaction: true,
		// PostgreSQL keeps microseconds, so SQLite rows get no more, and a
		// row reads back as it was written on either database.
		NowFunc: func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) },
	}

	var (
		db      *gorm.DB
		dialect Dialect
		err     error
	)
	if strings.HasPrefix(opts.DatabaseURL, "postgres://") || strings.HasPrefix(opts.DatabaseURL, "postgresql://") {
		dialect = Postgres
		db, err = gorm.Open(postgres.Open(opts.DatabaseURL), gormConfig)
	} else {
		if opts.DatabaseURL != "" {
			return nil, fmt.Errorf("open database: DATABASE_URL must start with postgres:// or be unset for SQLite")
		}
		dialect = SQLite
		if dir := filepath.Dir(opts.SQLitePath); dir != "" {
			if err := os.MkdirAll(dir, 0o750); err != nil {
				return nil, fmt.Errorf("open database: create %s: %w", dir, err)
			}
		}
		dsn := opts.SQLitePath + "?_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)"
		db, err = gorm.Open(sqlite.Open(dsn), gormConfig)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s database: %w", dialect, err)
	}

	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("open %s database: %w", dialect, err)
	}
	if dialect == SQLite {
		// SQLite allows one writer at a time; a single connection turns lock
		// contention into queueing inside database/sql.
		sqlDB.SetMaxOpenConns(1)
	} else {
		maxOpen := opts.MaxOpenConns
		if maxOpen <= 0 {
			maxOpen = 20
		}
		sqlDB.SetMaxOpenConns(maxOpen)
		sqlDB.SetMaxIdleConns(maxOpen)
		sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	}
	if err := sqlDB.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("connect to %s database: %w", dialect, err)
	}
	return &Store{DB: db, Dialect: dialect}, nil
}

// Close releases the connection pool.
func (s *Store) Close() error {
	sqlDB, err := s.DB.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// Ping checks that the database responds, with a round trip to the server
// on PostgreSQL.
func (s *Store) Ping(ctx context.Context) error {
	sqlDB, err := s.DB.DB()
	if err != nil {
		return err
	}
	return sqlDB.PingContext(ctx)
}

// Migrate applies every pending migration of the store's dialect.
func (s *Store) Migrate(ctx context.Context) ([]string, error) {
	sqlDB, err := s.DB.DB()
	if err != nil {
		return nil, err
	}
	return Migrate(ctx, sqlDB, s.Dialect)
}

// Migrate applies the embedded migrations for dialect to db and returns the
// names of the files it applied.
func Migrate(ctx context.Context, db *sql.DB, dialect Dialect) ([]string, error) {
	folder, err := fs.Sub(migrations.FS, string(dialect))
	if err != nil {
		return nil, fmt.Errorf("migrations for %s: %w", dialect, err)
	}
	gooseDialect := goose.DialectPostgres
	if dialect == SQLite {
		gooseDialect = goose.DialectSQLite3
	}
	provider, err := goose.NewProvider(gooseDialect, db, folder)
	if err != nil {
		return nil, fmt.Errorf("prepare migrations: %w", err)
	}
	results, err := provider.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("apply migrations: %w", err)
	}
	applied := make([]string, 0, len(results))
	for _, r := range results {
		applied = append(applied, r.Source.Path)
	}
	return applied, nil
}

// isUniqueViolation reports whether err comes from a unique constraint.
func isUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "SQLSTATE 23505") || strings.Contains(msg, "UNIQUE constraint failed")
}

func notFound(err error) error {
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return ErrNotFound
	}
	return err
}
