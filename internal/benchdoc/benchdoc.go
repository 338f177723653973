// Package benchdoc writes benchmark reports into sections of one markdown
// page, so that each benchmark tool can rewrite its own section without
// touching the others.
package benchdoc

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// pageHeader starts a page that WriteSection creates.
const pageHeader = "# Benchmarks\n\nEach section below is written by the tool that its command runs, which rewrites only that section.\n"

// WriteSection replaces the section called name in the markdown file at
// path with body, or appends it when the file has no such section. A
// section is the text between the lines "<!-- name:begin -->" and
// "<!-- name:end -->".
func WriteSection(path, name, body string) error {
	begin := []byte("<!-- " + name + ":begin -->\n")
	end := []byte("<!-- " + name + ":end -->\n")

	page, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		page, err = []byte(pageHeader), nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}

	section := append(append(append([]byte{}, begin...), bytes.TrimRight([]byte(body), "\n")...), '\n')
	section = append(section, end...)

	var out []byte
	start := bytes.Index(page, begin)
	stop := bytes.Index(page, end)
	switch {
	case start >= 0 && stop > start:
		out = append(append(append(out, page[:start]...), section...), page[stop+len(end):]...)
	case start < 0 && stop < 0:
		out = append(append(bytes.TrimRight(page, "\n"), '\n', '\n'), section...)
	default:
		return fmt.Errorf("%s: the markers of section %q are broken; fix or remove them", path, name)
	}

	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create folder for %s: %w", path, err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
