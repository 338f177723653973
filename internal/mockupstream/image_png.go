package mockupstream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"image"
	"image/png"
	"math"
	"strconv"
	"strings"
)

const (
	// defaultImageSide is the longer side in pixels of an image without a
	// byte target.
	defaultImageSide = 64

	// maxImageBytes caps the byte target of one image, so a request cannot
	// make the mock allocate without bound.
	maxImageBytes = 64 << 20

	// maxAspectSide caps each side of the "WxH" or "W:H" value that sets the
	// aspect ratio.
	maxAspectSide = 16384

	// maxImageSide caps each side of a generated image in pixels.
	maxImageSide = 1 << 16

	// textChunkOverhead is the length of a tEXt chunk with the keyword
	// "Comment", its NUL separator and no text: length, type, keyword, NUL
	// and CRC.
	textChunkOverhead = 4 + 4 + len(textChunkKeyword) + 1 + 4
	textChunkKeyword  = "Comment"

	// iendChunkLen is the length of the IEND chunk that ends every PNG.
	iendChunkLen = 12
)

// imageSpec identifies one mock image. Equal specs encode to identical
// bytes, because the pixels come from a PRNG seeded with seed and the PNG
// encoder is deterministic.
type imageSpec struct {
	seed   uint64
	width  int
	height int

	// padTo is the exact encoded length in bytes, reached by a tEXt chunk
	// before IEND, or 0 when the encoder's output is used as it is.
	padTo int
}

// newImageSpec plans the image number index of a request. aspect is "WxH",
// "W:H", "auto" or empty, and only its ratio matters. targetBytes is the
// encoded length to reach, or 0 for a small image whose longer side is
// defaultImageSide pixels.
//
// A target below the size of a 1x1 PNG (about 70 bytes) yields a 1x1 image
// that is larger than the target.
func newImageSpec(prompt string, index int, aspect string, targetBytes int) imageSpec {
	hash := fnv.New64a()
	hash.Write([]byte(prompt))
	hash.Write([]byte{0})
	hash.Write([]byte(strconv.Itoa(index)))
	hash.Write([]byte{0})
	hash.Write([]byte(aspect))

	spec := imageSpec{seed: hash.Sum64()}
	ratioWidth, ratioHeight, err := parseAspect(aspect)
	if err != nil {
		ratioWidth, ratioHeight = 1, 1
	}

	if targetBytes <= 0 {
		spec.width, spec.height = scaleToSide(ratioWidth, ratioHeight, defaultImageSide)
		return spec
	}

	spec.width, spec.height = dimensionsForBytes(ratioWidth, ratioHeight, targetBytes-textChunkOverhead)
	if maxPNGLen(spec.width, spec.height)+textChunkOverhead <= targetBytes {
		spec.padTo = targetBytes
	}
	return spec
}

// parseAspect reads "WxH" or "W:H". "auto" and the empty string are square.
func parseAspect(value string) (width, height int, err error) {
	if value == "" || value == "auto" {
		return 1, 1, nil
	}

	separator := "x"
	if strings.Contains(value, ":") {
		separator = ":"
	}
	return parseDimensions(value, separator, maxAspectSide)
}

// parseDimensions reads two integers from 1 to limit joined by separator.
func parseDimensions(value, separator string, limit int) (width, height int, err error) {
	left, right, ok := strings.Cut(value, separator)
	if !ok {
		return 0, 0, fmt.Errorf("%q is not of the form W%sH", value, separator)
	}

	width, errWidth := strconv.Atoi(left)
	height, errHeight := strconv.Atoi(right)
	if errWidth != nil || errHeight != nil || width < 1 || height < 1 || width > limit || height > limit {
		return 0, 0, fmt.Errorf("%q must have integer sides from 1 to %d", value, limit)
	}
	return width, height, nil
}

// scaleToSide returns the dimensions with the ratio width:height whose
// longer side is side pixels.
func scaleToSide(width, height, side int) (int, int) {
	if width >= height {
		return side, max(1, (side*height+width/2)/width)
	}
	return max(1, (side*width+height/2)/height), side
}

// dimensionsForBytes returns the largest image with about the ratio
// width:height whose PNG, as encode writes it, is at most maxBytes long.
func dimensionsForBytes(ratioWidth, ratioHeight, maxBytes int) (int, int) {
	// Each row is a filter byte plus three bytes per RGB pixel. Stored
	// deflate blocks and IDAT chunks add less than 0.1%, which the
	// decrement below absorbs.
	pixelBudget := float64(max(maxBytes-64, 0)) / 3
	width := min(max(1, int(math.Sqrt(pixelBudget*float64(ratioWidth)/float64(ratioHeight)))), maxImageSide)
	height := min(max(1, int(pixelBudget/float64(width))), maxImageSide)

	for height > 1 && maxPNGLen(width, height) > maxBytes {
		rowLen := 1 + 3*width
		excessRows := (maxPNGLen(width, height) - maxBytes + rowLen - 1) / rowLen
		height = max(1, height-excessRows)
	}
	for width > 1 && maxPNGLen(width, height) > maxBytes {
		width--
	}
	return width, height
}

// maxPNGLen returns an upper bound of the length of the PNG that encode
// writes for an opaque width x height image. With png.NoCompression the
// image/png encoder (Go 1.26) writes each row as a filter byte and RGB
// triples, and the zlib stream stores them in deflate blocks of at most
// 65535 bytes plus an empty final block. The encoder's 32 KiB bufio.Writer
// makes every IDAT chunk but the last at least 32 KiB long.
func maxPNGLen(width, height int) int {
	const (
		signature   = 8
		ihdrChunk   = 25
		zlibFraming = 2 + 4
		storedBlock = 5
		chunkFrame  = 12
	)

	raw := height * (1 + 3*width)
	zlibLen := zlibFraming + raw + storedBlock*(raw/65535+2)
	idatChunks := (zlibLen + 32<<10 - 1) / (32 << 10)
	return signature + ihdrChunk + zlibLen + chunkFrame*idatChunks + iendChunkLen
}

// encodedLen returns the length of the PNG without encoding it when the
// spec pads to an exact length.
func (s imageSpec) encodedLen() (int, error) {
	if s.padTo > 0 {
		return s.padTo, nil
	}
	encoded, err := s.encode()
	return len(encoded), err
}

// encode renders the spec as a PNG.
func (s imageSpec) encode() ([]byte, error) {
	img := image.NewRGBA(image.Rect(0, 0, s.width, s.height))
	fillNoise(img.Pix, s.seed)

	var buf bytes.Buffer
	buf.Grow(max(s.padTo, maxPNGLen(s.width, s.height)))

	// Random pixels do not compress, so compressing would only cost time.
	encoder := png.Encoder{CompressionLevel: png.NoCompression}
	if err := encoder.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("encode %dx%d PNG: %w", s.width, s.height, err)
	}

	encoded := buf.Bytes()
	if s.padTo == 0 {
		return encoded, nil
	}
	return padPNG(encoded, s.padTo)
}

// fillNoise writes opaque RGBA pixels from a splitmix64 sequence seeded
// with seed. Each 64-bit step fills two pixels, with both alpha bytes set.
func fillNoise(pix []byte, seed uint64) {
	const opaque = 0xff000000ff000000

	state := seed
	next := func() uint64 {
		state += 0x9e3779b97f4a7c15
		z := state
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		return z ^ (z >> 31)
	}

	i := 0
	for ; i+8 <= len(pix); i += 8 {
		binary.LittleEndian.PutUint64(pix[i:], next()|opaque)
	}
	if i < len(pix) {
		// An odd pixel count leaves one pixel, whose alpha is byte 3.
		binary.LittleEndian.PutUint32(pix[i:], uint32(next())|0xff000000)
	}
}

// padPNG inserts a tEXt chunk before IEND so that the PNG is exactly length
// bytes long. encoded must have spare capacity, which encode reserves.
func padPNG(encoded []byte, length int) ([]byte, error) {
	gap := length - len(encoded)
	if gap < textChunkOverhead {
		return nil, fmt.Errorf("pad PNG of %d bytes to %d: the gap is below the %d bytes of a tEXt chunk",
			len(encoded), length, textChunkOverhead)
	}
	if !bytes.HasSuffix(encoded, []byte("\x00\x00\x00\x00IEND\xaeB`\x82")) {
		return nil, errors.New("pad PNG: the encoder output does not end with an IEND chunk")
	}

	var iend [iendChunkLen]byte
	copy(iend[:], encoded[len(encoded)-iendChunkLen:])
	out := encoded[:len(encoded)-iendChunkLen]

	textLen := gap - textChunkOverhead
	out = binary.BigEndian.AppendUint32(out, uint32(len(textChunkKeyword)+1+textLen))
	chunkStart := len(out)
	out = append(out, "tEXt"+textChunkKeyword+"\x00"...)

	const filler = "mock image padding "
	for textLen > 0 {
		n := min(textLen, len(filler))
		out = append(out, filler[:n]...)
		textLen -= n
	}
	out = binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(out[chunkStart:]))

	return append(out, iend[:]...), nil
}
