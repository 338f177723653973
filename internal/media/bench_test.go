package media_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/aihigress/aihigress/internal/fakeoss"
	"github.com/aihigress/aihigress/internal/media"
	"github.com/aihigress/aihigress/internal/testenv"
)

// BenchmarkStoragePutGet puts and reads back one 1 MiB object per
// iteration. The OSS case runs against fakeoss on loopback, so it measures
// the SDK and HTTP overhead, not OSS itself.
func BenchmarkStoragePutGet(b *testing.B) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	storages := []struct {
		name string
		open func(b *testing.B) media.Storage
	}{
		{"oss", func(b *testing.B) media.Storage {
			server := fakeoss.Start(b, fakeoss.Options{AccessKeyID: testKeyID, AccessKeySecret: testKeySecret, Bucket: testBucket})
			s, err := media.NewOSS(media.OSSConfig{Endpoint: server.URL(), Bucket: testBucket, AccessKeyID: testKeyID, AccessKeySecret: testKeySecret})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"database", func(b *testing.B) media.Storage { return media.NewDatabase(testenv.Store(b).DB) }},
	}
	for _, storage := range storages {
		b.Run(storage.name, func(b *testing.B) {
			s := storage.open(b)
			ctx := context.Background()
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				key := fmt.Sprintf("aihbench/%d.bin", i%16)
				if _, err := s.Put(ctx, key, bytes.NewReader(data), int64(len(data)), "application/octet-stream"); err != nil {
					b.Fatal(err)
				}
				body, _, err := s.Get(ctx, key, 0, -1)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, body); err != nil {
					b.Fatal(err)
				}
				body.Close()
			}
		})
	}
}
