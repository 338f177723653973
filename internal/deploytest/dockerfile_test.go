package deploytest

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/testenv"
)

// dockerInstruction is one Dockerfile instruction with its continuation
// lines joined.
type dockerInstruction struct {
	command string
	args    string
	line    int
}

type dockerStage struct {
	image        string
	name         string
	instructions []dockerInstruction
}

type dockerfile struct {
	stages []dockerStage
}

// parseDockerfile reads the instructions of each stage. It handles comments,
// line continuations and FROM flags such as --platform. That is all that the
// checks below need, so it is not a full Dockerfile parser.
func parseDockerfile(text string) (dockerfile, error) {
	var file dockerfile
	var pending strings.Builder
	startLine := 0
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if pending.Len() == 0 {
			startLine = i + 1
		}
		if body, ok := strings.CutSuffix(line, "\\"); ok {
			pending.WriteString(body + " ")
			continue
		}
		pending.WriteString(line)
		command, args, _ := strings.Cut(pending.String(), " ")
		pending.Reset()
		ins := dockerInstruction{command: strings.ToUpper(command), args: strings.TrimSpace(args), line: startLine}

		if ins.command == "FROM" {
			fields := strings.Fields(ins.args)
			for len(fields) > 0 && strings.HasPrefix(fields[0], "--") {
				fields = fields[1:]
			}
			if len(fields) == 0 {
				return file, fmt.Errorf("line %d: FROM without an image", ins.line)
			}
			stage := dockerStage{image: fields[0]}
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				stage.name = fields[2]
			}
			file.stages = append(file.stages, stage)
			continue
		}
		if len(file.stages) == 0 {
			if ins.command == "ARG" {
				continue
			}
			return file, fmt.Errorf("line %d: %s before the first FROM", ins.line, ins.command)
		}
		last := &file.stages[len(file.stages)-1]
		last.instructions = append(last.instructions, ins)
	}
	if pending.Len() > 0 {
		return file, fmt.Errorf("the last instruction ends with a line continuation")
	}
	return file, nil
}

func loadDockerfile(t *testing.T) dockerfile {
	t.Helper()
	file, err := parseDockerfile(string(readRepoFile(t, "Dockerfile")))
	if err != nil {
		t.Fatalf("parse Dockerfile: %v", err)
	}
	if len(file.stages) == 0 {
		t.Fatal("Dockerfile has no FROM")
	}
	return file
}

func (f dockerfile) final() dockerStage { return f.stages[len(f.stages)-1] }

// entrypoint returns the exec-form ENTRYPOINT of the final stage.
func (f dockerfile) entrypoint(t *testing.T) []string {
	t.Helper()
	var entrypoint []string
	for _, ins := range f.final().instructions {
		if ins.command != "ENTRYPOINT" {
			continue
		}
		if err := json.Unmarshal([]byte(ins.args), &entrypoint); err != nil {
			t.Fatalf("line %d: ENTRYPOINT %s is not in exec form (a JSON array): %v", ins.line, ins.args, err)
		}
	}
	if len(entrypoint) == 0 {
		t.Fatal("the final stage has no ENTRYPOINT")
	}
	return entrypoint
}

// splitShellWords splits a command line into words, honoring single and
// double quotes. It does not expand variables or handle escapes and shell
// operators.
func splitShellWords(line string) ([]string, error) {
	var words []string
	var word strings.Builder
	inWord := false
	var quote rune
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			word.WriteRune(r)
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, word.String())
				word.Reset()
				inWord = false
			}
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote in %q", quote, line)
	}
	if inWord {
		words = append(words, word.String())
	}
	return words, nil
}

// goBuild is the `go build` command of a RUN instruction: the variables
// assigned before it and its arguments after "go build".
type goBuild struct {
	env  map[string]string
	args []string
}

// findGoBuild returns the `go build` command of the build stages, with the
// stage's ENV values and the variables set on the RUN line.
func (f dockerfile) findGoBuild(t *testing.T) goBuild {
	t.Helper()
	for _, stage := range f.stages[:len(f.stages)-1] {
		env := map[string]string{}
		for _, ins := range stage.instructions {
			switch ins.command {
			case "ENV":
				words, err := splitShellWords(ins.args)
				if err != nil {
					t.Fatalf("line %d: %v", ins.line, err)
				}
				for _, word := range words {
					if key, value, ok := strings.Cut(word, "="); ok {
						env[key] = value
					}
				}
			case "RUN":
				words, err := splitShellWords(ins.args)
				if err != nil {
					t.Fatalf("line %d: %v", ins.line, err)
				}
				i := 0
				runEnv := maps.Clone(env)
				for ; i < len(words); i++ {
					key, value, ok := strings.Cut(words[i], "=")
					if !ok {
						break
					}
					runEnv[key] = value
				}
				if i+1 < len(words) && words[i] == "go" && words[i+1] == "build" {
					return goBuild{env: runEnv, args: words[i+2:]}
				}
			}
		}
	}
	t.Fatal("no build stage runs `go build`")
	return goBuild{}
}

// flagValue returns the value after flag in args, or "" when flag is absent.
func flagValue(args []string, flag string) string {
	for i, arg := range args {
		if arg == flag && i+1 < len(args) {
			return args[i+1]
		}
		if value, ok := strings.CutPrefix(arg, flag+"="); ok {
			return value
		}
	}
	return ""
}

func TestParseDockerfile(t *testing.T) {
	text := `# comment
ARG GO_VERSION=1
FROM --platform=linux/amd64 golang:1.26.8 AS build
RUN CGO_ENABLED=0 go build \
    -ldflags "-s -w" -o /out/app ./cmd/app
FROM scratch
USER 65532
ENTRYPOINT ["/app"]
`
	file, err := parseDockerfile(text)
	if err != nil {
		t.Fatal(err)
	}
	if len(file.stages) != 2 {
		t.Fatalf("%d stages, want 2", len(file.stages))
	}
	if got := file.stages[0]; got.image != "golang:1.26.8" || got.name != "build" {
		t.Fatalf("first stage %q AS %q, want golang:1.26.8 AS build", got.image, got.name)
	}
	build := file.findGoBuild(t)
	if build.env["CGO_ENABLED"] != "0" {
		t.Fatalf("go build env %v, want CGO_ENABLED=0", build.env)
	}
	if want := []string{"-ldflags", "-s -w", "-o", "/out/app", "./cmd/app"}; !slices.Equal(build.args, want) {
		t.Fatalf("go build args %q, want %q", build.args, want)
	}
	if got := file.entrypoint(t); !slices.Equal(got, []string{"/app"}) {
		t.Fatalf("entrypoint %q, want [/app]", got)
	}

	for _, bad := range []string{"RUN true\n", "FROM\n", "FROM scratch\nRUN a \\\n"} {
		if _, err := parseDockerfile(bad); err == nil {
			t.Errorf("parseDockerfile(%q) succeeded, want an error", bad)
		}
	}
}

func TestDockerfileStages(t *testing.T) {
	file := loadDockerfile(t)
	if len(file.stages) < 2 {
		t.Fatalf("%d stages, want a build stage and a final stage", len(file.stages))
	}

	var earlier []string
	for i, stage := range file.stages {
		t.Run(fmt.Sprintf("stage %d %s", i, stage.image), func(t *testing.T) {
			switch {
			case stage.image == "scratch", slices.Contains(earlier, stage.image):
				return
			}
			_, tag, digest := splitImage(stage.image)
			if digest == "" && !versionTag.MatchString(tag) {
				t.Fatalf("base image %q is not pinned to a version", stage.image)
			}
		})
		if stage.name != "" {
			earlier = append(earlier, stage.name)
		}
	}
}

func TestDockerfileStaticBuild(t *testing.T) {
	build := loadDockerfile(t).findGoBuild(t)
	if build.env["CGO_ENABLED"] != "0" {
		t.Errorf("go build runs with CGO_ENABLED=%q, want 0 for a static binary", build.env["CGO_ENABLED"])
	}
	if !slices.Contains(build.args, "-trimpath") {
		t.Errorf("go build args %q lack -trimpath", build.args)
	}
	ldflags := strings.Fields(flagValue(build.args, "-ldflags"))
	if !slices.Contains(ldflags, "-s") || !slices.Contains(ldflags, "-w") {
		t.Errorf("go build -ldflags %q, want -s and -w", ldflags)
	}
	if flagValue(build.args, "-o") == "" {
		t.Errorf("go build args %q have no -o", build.args)
	}
	if !slices.Contains(build.args, "./cmd/aihigress") {
		t.Errorf("go build args %q do not build ./cmd/aihigress", build.args)
	}
}

func TestDockerfileFinalStage(t *testing.T) {
	file := loadDockerfile(t)
	final := file.final()
	entrypoint := file.entrypoint(t)

	var user string
	copiedBinary := false
	for _, ins := range final.instructions {
		switch ins.command {
		case "USER":
			user = ins.args
		case "COPY":
			fields := strings.Fields(ins.args)
			if strings.HasPrefix(ins.args, "--from=") && fields[len(fields)-1] == entrypoint[0] {
				copiedBinary = true
			}
		}
	}

	name, _, _ := strings.Cut(user, ":")
	uid, err := strconv.Atoi(name)
	switch {
	case user == "":
		t.Error("the final stage has no USER, so the container runs as root")
	case name == "root" || (err == nil && uid == 0):
		t.Errorf("the final stage runs as USER %s", user)
	}
	if !copiedBinary {
		t.Errorf("the final stage copies nothing from a build stage to the ENTRYPOINT %s", entrypoint[0])
	}
}

// dockerignoreExcludes reports whether a .dockerignore pattern excludes
// path or one of its parent directories. It follows Docker's rules for
// plain patterns, which is what this repository uses: leading and trailing
// slashes do not matter, and filepath.Match does the matching.
func dockerignoreExcludes(patterns []string, path string) bool {
	parts := strings.Split(path, "/")
	for _, pattern := range patterns {
		pattern = strings.Trim(pattern, "/")
		for i := range parts {
			prefix := strings.Join(parts[:i+1], "/")
			if ok, _ := filepath.Match(pattern, prefix); ok {
				return true
			}
		}
	}
	return false
}

func TestDockerignore(t *testing.T) {
	var patterns []string
	for _, line := range strings.Split(string(readRepoFile(t, ".dockerignore")), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Fatalf("exception %q: dockerignoreExcludes does not handle exceptions; extend it before using one", line)
		}
		patterns = append(patterns, line)
	}

	for _, path := range []string{".git", ".env", "data/aihigress.db", "bin/aihigress"} {
		if !dockerignoreExcludes(patterns, path) {
			t.Errorf(".dockerignore sends %s to the build", path)
		}
	}

	// Every file that `go build ./cmd/aihigress` reads must reach the
	// build: Go files and embedded files of the repository's packages.
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	list := exec.Command("go", "list", "-deps", "-f",
		`{{if not .Standard}}{{$dir := .Dir}}{{range .GoFiles}}{{$dir}}/{{.}}{{"\n"}}{{end}}{{range .EmbedFiles}}{{$dir}}/{{.}}{{"\n"}}{{end}}{{end}}`,
		"./cmd/aihigress")
	list.Dir = root
	list.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	needed := []string{"go.mod", "go.sum"}
	for _, file := range strings.Fields(string(out)) {
		if rel, err := filepath.Rel(root, file); err == nil && !strings.HasPrefix(rel, "..") {
			needed = append(needed, filepath.ToSlash(rel))
		}
	}
	if !slices.Contains(needed, "migrations/embed.go") {
		t.Fatalf("go list found %d repository files, without migrations/embed.go: %q", len(needed), needed)
	}
	for _, path := range needed {
		if dockerignoreExcludes(patterns, path) {
			t.Errorf(".dockerignore excludes %s, which the build needs", path)
		}
	}
}

// TestStaticBinary builds the binary with the Dockerfile's `go build`
// command and checks that it needs no dynamic loader or shared library,
// which the scratch stage does not have. It then runs the healthcheck
// subcommand that the Compose health checks use.
func TestStaticBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	build := loadDockerfile(t).findGoBuild(t)
	binary := filepath.Join(t.TempDir(), "aihigress")
	args := slices.Clone(build.args)
	for i := range args {
		if args[i] == "-o" && i+1 < len(args) {
			args[i+1] = binary
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append([]string{"build"}, args...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=linux")
	for key, value := range build.env {
		cmd.Env = append(cmd.Env, key+"="+value)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %q: %v\n%s", args, err, out)
	}

	f, err := elf.Open(binary)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP || prog.Type == elf.PT_DYNAMIC {
			t.Errorf("binary has a %v program header, so it is dynamically linked", prog.Type)
		}
	}
	libraries, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	if len(libraries) > 0 {
		t.Errorf("binary needs the shared libraries %q", libraries)
	}
	if f.Section(".symtab") != nil {
		t.Error("binary has a symbol table, so -ldflags -s was not applied")
	}

	if runtime.GOOS != "linux" {
		return
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{name: "help lists healthcheck", args: []string{"help"}, wantOut: "healthcheck"},
		{name: "healthy", args: []string{"healthcheck", srv.URL + "/healthz"}},
		{name: "unhealthy", args: []string{"healthcheck", srv.URL + "/down"}, wantCode: 1, wantOut: "503"},
		{name: "worker without Temporal", args: []string{"healthcheck", "-worker"}, wantCode: 1, wantOut: "TEMPORAL_ADDRESS is not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := exec.CommandContext(ctx, binary, tt.args...)
			// A clean environment, so that no DATABASE_URL or
			// TEMPORAL_ADDRESS of the developer leaks in.
			run.Env = []string{"PATH=" + os.Getenv("PATH")}
			var out bytes.Buffer
			run.Stdout, run.Stderr = &out, &out
			err := run.Run()
			code := 0
			var exitErr *exec.ExitError
			if errors.As(err, &exitErr) {
				code = exitErr.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode {
				t.Errorf("exit status %d, want %d; output:\n%s", code, tt.wantCode, out.String())
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("output does not contain %q:\n%s", tt.wantOut, out.String())
			}
		})
	}
}
