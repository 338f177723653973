package media_test

import (
	"testing"

	"github.com/aihigress/aihigress/internal/media"
	"github.com/aihigress/aihigress/internal/media/storagetest"
)

func TestLocalConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) media.Storage {
		local, err := media.NewLocal(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = local.Close() })
		return local
	})
}
