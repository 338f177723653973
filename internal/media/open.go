package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"gorm.io/gorm"

	"github.com/aihigress/aihigress/internal/config"
)

// Open returns the storage that cfg.Storage selects: config.StorageOSS,
// config.StorageLocal or config.StorageDatabase. db is used only by the
// database storage. Open sends no request to OSS, so wrong credentials show
// up at the first operation. It logs one line that names the storage, at
// warning level for the database storage.
func Open(ctx context.Context, cfg config.Images, db *gorm.DB, logger *slog.Logger) (Storage, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	switch cfg.Storage {
	case config.StorageOSS:
		storage, err := NewOSS(OSSConfig{
			Endpoint:        cfg.OSSEndpoint,
			Bucket:          cfg.OSSBucket,
			AccessKeyID:     cfg.OSSAccessKeyID,
			AccessKeySecret: cfg.OSSAccessKeySecret,
			Region:          cfg.OSSRegion,
		})
		if err != nil {
			return nil, fmt.Errorf("open image storage: %w", err)
		}
		logger.InfoContext(ctx, "images are stored in Aliyun OSS", "storage", storage.Name(), "oss", storage, "prefix", cfg.Prefix)
		return storage, nil

	case config.StorageLocal:
		storage, err := NewLocal(cfg.LocalDir)
		if err != nil {
			return nil, fmt.Errorf("open image storage: %w", err)
		}
		logger.InfoContext(ctx, "images are stored in a local directory", "storage", storage.Name(), "dir", cfg.LocalDir)
		return storage, nil

	case config.StorageDatabase:
		if db == nil {
			return nil, errors.New("open image storage: the database storage needs a database connection")
		}
		storage := NewDatabase(db)
		logger.WarnContext(ctx, "neither OSS nor a local directory is configured, so images are kept in the database and API responses carry them as data: URLs; set IMAGE_OSS_* or IMAGE_LOCAL_DIR to store them elsewhere",
			"storage", storage.Name(), "max_object_bytes", MaxDatabaseObjectSize)
		return storage, nil

	default:
		return nil, fmt.Errorf("open image storage: unknown storage %q, want %q, %q or %q",
			cfg.Storage, config.StorageOSS, config.StorageLocal, config.StorageDatabase)
	}
}
