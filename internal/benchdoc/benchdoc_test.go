package benchdoc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "docs", "benchmarks.md")

	steps := []struct {
		name, section, body string
		want                []string
		wantAbsent          []string
	}{
		{"creates page", "chat", "## Chat\nfirst", []string{"# Benchmarks", "## Chat\nfirst"}, nil},
		{"appends other", "gateway", "## Gateway\nA", []string{"## Chat\nfirst", "## Gateway\nA"}, nil},
		{"replaces own", "chat", "## Chat\nsecond", []string{"## Chat\nsecond", "## Gateway\nA"}, []string{"first"}},
	}
	for _, step := range steps {
		if err := WriteSection(path, step.section, step.body); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		page, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range step.want {
			if !strings.Contains(string(page), want) {
				t.Errorf("%s: page lacks %q:\n%s", step.name, want, page)
			}
		}
		for _, absent := range step.wantAbsent {
			if strings.Contains(string(page), absent) {
				t.Errorf("%s: page still contains %q:\n%s", step.name, absent, page)
			}
		}
	}

	page, _ := os.ReadFile(path)
	if strings.Index(string(page), "## Chat") > strings.Index(string(page), "## Gateway") {
		t.Errorf("a rewrite moved the chat section after the gateway section:\n%s", page)
	}
}

func TestWriteSectionBrokenMarkers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "benchmarks.md")
	if err := os.WriteFile(path, []byte("# B\n<!-- chat:begin -->\nno end\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteSection(path, "chat", "x"); err == nil {
		t.Error("WriteSection accepted a section without its end marker")
	}
}
