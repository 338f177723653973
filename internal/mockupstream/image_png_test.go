package mockupstream

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"testing"
)

func decodePNG(t *testing.T, encoded []byte) image.Image {
	t.Helper()

	img, err := png.Decode(bytes.NewReader(encoded))
	if err != nil {
		t.Fatalf("decode PNG of %d bytes: %v", len(encoded), err)
	}
	return img
}

func TestImageSpecReachesExactLength(t *testing.T) {
	targets := []int{100, 1000, 4096, 70_000, 1 << 20, 4 << 20}
	aspects := []string{"", "auto", "1024x1024", "1792x1024", "1024x1792", "16:9", "16384x1"}

	for _, target := range targets {
		for _, aspect := range aspects {
			t.Run(fmt.Sprintf("%d bytes %q", target, aspect), func(t *testing.T) {
				spec := newImageSpec("a red fox", 0, aspect, target)
				encoded, err := spec.encode()
				if err != nil {
					t.Fatalf("encode: %v", err)
				}

				if len(encoded) != target {
					t.Errorf("PNG length = %d, want %d", len(encoded), target)
				}
				if n, err := spec.encodedLen(); err != nil || n != len(encoded) {
					t.Errorf("encodedLen() = %d, %v, want %d", n, err, len(encoded))
				}

				bounds := decodePNG(t, encoded).Bounds()
				if bounds.Dx() != spec.width || bounds.Dy() != spec.height {
					t.Errorf("decoded size = %dx%d, want %dx%d", bounds.Dx(), bounds.Dy(), spec.width, spec.height)
				}
			})
		}
	}
}

func TestImageSpecFollowsAspectRatio(t *testing.T) {
	spec := newImageSpec("wide", 0, "1792x1024", 1<<20)

	ratio := float64(spec.width) / float64(spec.height)
	if ratio < 1.70 || ratio > 1.80 {
		t.Errorf("%dx%d has ratio %.3f, want about 1.75", spec.width, spec.height, ratio)
	}
}

func TestImageSpecTinyTargetGivesOnePixel(t *testing.T) {
	spec := newImageSpec("tiny", 0, "", 10)
	encoded, err := spec.encode()
	if err != nil {
		t.Fatalf("encode: %v", err)
	}

	if spec.width != 1 || spec.height != 1 {
		t.Errorf("size = %dx%d, want 1x1", spec.width, spec.height)
	}
	if spec.padTo != 0 {
		t.Errorf("padTo = %d, want 0 for a target below the smallest PNG", spec.padTo)
	}
	decodePNG(t, encoded)
}

func TestImageSpecDefaultDimensions(t *testing.T) {
	tests := []struct {
		aspect     string
		wantWidth  int
		wantHeight int
	}{
		{aspect: "", wantWidth: 64, wantHeight: 64},
		{aspect: "auto", wantWidth: 64, wantHeight: 64},
		{aspect: "1024x1024", wantWidth: 64, wantHeight: 64},
		{aspect: "1792x1024", wantWidth: 64, wantHeight: 37},
		{aspect: "1024x1792", wantWidth: 37, wantHeight: 64},
		{aspect: "21:9", wantWidth: 64, wantHeight: 27},
		{aspect: "not a size", wantWidth: 64, wantHeight: 64},
	}

	for _, tt := range tests {
		t.Run(tt.aspect, func(t *testing.T) {
			spec := newImageSpec("fox", 0, tt.aspect, 0)
			encoded, err := spec.encode()
			if err != nil {
				t.Fatalf("encode: %v", err)
			}

			bounds := decodePNG(t, encoded).Bounds()
			if bounds.Dx() != tt.wantWidth || bounds.Dy() != tt.wantHeight {
				t.Errorf("decoded size = %dx%d, want %dx%d", bounds.Dx(), bounds.Dy(), tt.wantWidth, tt.wantHeight)
			}
		})
	}
}

func TestImageSpecDeterministic(t *testing.T) {
	encode := func(prompt string, index int, aspect string, target int) []byte {
		t.Helper()
		encoded, err := newImageSpec(prompt, index, aspect, target).encode()
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		return encoded
	}

	base := encode("a red fox", 0, "1024x1024", 5000)
	if again := encode("a red fox", 0, "1024x1024", 5000); !bytes.Equal(base, again) {
		t.Error("equal inputs gave different PNGs")
	}

	variants := map[string][]byte{
		"other prompt": encode("a blue fox", 0, "1024x1024", 5000),
		"other index":  encode("a red fox", 1, "1024x1024", 5000),
		"other size":   encode("a red fox", 0, "1536x1024", 5000),
	}
	for name, variant := range variants {
		if bytes.Equal(base, variant) {
			t.Errorf("%s gave the same PNG", name)
		}
	}

	// Pixels, not just padding, must differ between prompts.
	first := decodePNG(t, encode("a red fox", 0, "", 0)).(*image.RGBA)
	second := decodePNG(t, encode("a blue fox", 0, "", 0)).(*image.RGBA)
	if bytes.Equal(first.Pix, second.Pix) {
		t.Error("different prompts gave identical pixels")
	}
}

func TestMaxPNGLenIsUpperBound(t *testing.T) {
	sizes := [][2]int{{1, 1}, {1, 5000}, {5000, 1}, {64, 64}, {181, 181}, {1000, 700}, {1183, 1183}}

	for _, size := range sizes {
		t.Run(fmt.Sprintf("%dx%d", size[0], size[1]), func(t *testing.T) {
			spec := imageSpec{seed: 1, width: size[0], height: size[1]}
			encoded, err := spec.encode()
			if err != nil {
				t.Fatalf("encode: %v", err)
			}

			bound := maxPNGLen(size[0], size[1])
			if len(encoded) > bound {
				t.Errorf("PNG length %d exceeds the bound %d", len(encoded), bound)
			}
			// A loose bound would leave a visible padding chunk.
			if slack := bound - len(encoded); slack > 200 {
				t.Errorf("bound %d exceeds the PNG length %d by %d bytes, want at most 200", bound, len(encoded), slack)
			}
		})
	}
}

func BenchmarkEncodeImage4MiB(b *testing.B) {
	spec := newImageSpec("benchmark prompt", 0, "1024x1024", 4<<20)
	b.SetBytes(4 << 20)

	for b.Loop() {
		if _, err := spec.encode(); err != nil {
			b.Fatal(err)
		}
	}
}
