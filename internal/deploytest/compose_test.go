package deploytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/workflows"
)

const composeFileName = "docker-compose.temporal.yml"

// composeTestEnvironment is the shell environment that the tests give
// Compose: the variables that the file requires with ${VAR:?message}, set to
// placeholders. Every other variable is unset, so its ${VAR:-default} applies.
var composeTestEnvironment = types.Mapping{
	"POSTGRES_PASSWORD": "test-postgres-password",
	"JWT_SECRET":        "test-jwt-secret",
	"MASTER_KEY":        "test-master-key",
	"ADMIN_PASSWORD":    "test-admin-password",
}

// composeProjects is one Compose file loaded twice by compose-go.
type composeProjects struct {
	// resolved has the ${VAR} references substituted from
	// composeTestEnvironment, as `docker compose up` would run the file.
	resolved *types.Project
	// raw keeps the ${VAR} references as written, for the checks of what
	// the file itself pins or leaves to the operator.
	raw *types.Project
}

func readRepoFile(t *testing.T, name string) []byte {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return data
}

// loadComposeProject loads Compose file content with the compose-go loader,
// as `docker compose` does: it merges YAML anchors, validates the file
// against the Compose schema, applies the consistency rules (known services
// and volumes, no dependency cycle) and, unless interpolate is false,
// substitutes ${VAR} references from env. The file is read from content and
// no remote resource loader is set, so nothing is fetched.
func loadComposeProject(ctx context.Context, content []byte, env types.Mapping, interpolate bool) (*types.Project, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return nil, err
	}
	details := types.ConfigDetails{
		WorkingDir: root,
		ConfigFiles: []types.ConfigFile{{
			Filename: filepath.Join(root, composeFileName),
			Content:  content,
		}},
		// The loader adds COMPOSE_PROJECT_NAME to the map it gets.
		Environment: maps.Clone(env),
	}
	project, err := loader.LoadWithContext(ctx, details, func(o *loader.Options) {
		o.SkipInterpolation = !interpolate
	})
	if err != nil {
		return nil, fmt.Errorf("load %s with compose-go: %w", composeFileName, err)
	}
	if len(project.Services) == 0 {
		return nil, fmt.Errorf("%s has no services", composeFileName)
	}
	return project, nil
}

func loadComposeProjects(ctx context.Context, content []byte) (composeProjects, error) {
	resolved, err := loadComposeProject(ctx, content, composeTestEnvironment, true)
	if err != nil {
		return composeProjects{}, err
	}
	raw, err := loadComposeProject(ctx, content, composeTestEnvironment, false)
	if err != nil {
		return composeProjects{}, fmt.Errorf("without interpolation: %w", err)
	}
	return composeProjects{resolved: resolved, raw: raw}, nil
}

func loadCompose(t *testing.T) composeProjects {
	t.Helper()
	projects, err := loadComposeProjects(context.Background(), readRepoFile(t, composeFileName))
	if err != nil {
		t.Fatal(err)
	}
	return projects
}

// reportErrors fails the test with one message per problem that a check
// found.
func reportErrors(t *testing.T, errs []error) {
	t.Helper()
	for _, err := range errs {
		t.Error(err)
	}
}

func TestComposeImagesPinned(t *testing.T) {
	reportErrors(t, checkImagesPinned(loadCompose(t).raw))
}

func TestComposeHealthchecks(t *testing.T) {
	reportErrors(t, checkHealthchecks(loadCompose(t).resolved, loadDockerfile(t).entrypoint(t)))
}

func TestComposeHealthcheckCommands(t *testing.T) {
	reportErrors(t, checkHealthcheckCommands(loadCompose(t).resolved))
}

func TestComposeDependencies(t *testing.T) {
	reportErrors(t, checkDependencies(loadCompose(t).resolved))
}

func TestComposeMigrateJob(t *testing.T) {
	reportErrors(t, checkMigrateJob(loadCompose(t).resolved))
}

func TestComposePortsOnLoopback(t *testing.T) {
	reportErrors(t, checkPortsOnLoopback(loadCompose(t).resolved))
}

func TestComposeReplicas(t *testing.T) {
	reportErrors(t, checkReplicas(loadCompose(t).resolved))
}

func TestComposeSearchAttributeJob(t *testing.T) {
	reportErrors(t, checkSearchAttributeJob(loadCompose(t).resolved))
}

func TestComposeSecretsNotHardCoded(t *testing.T) {
	reportErrors(t, checkSecretsReferenced(loadCompose(t).raw))
}

func TestComposeSharedSettings(t *testing.T) {
	reportErrors(t, checkSharedSettings(loadCompose(t).resolved))
}

func TestComposeTemporalDynamicConfig(t *testing.T) {
	reportErrors(t, checkTemporalDynamicConfig(loadCompose(t).resolved))
}

func TestComposeSharedImageVolume(t *testing.T) {
	reportErrors(t, checkSharedImageVolume(loadCompose(t).resolved, loadDockerfile(t).final()))
}

// TestComposeRequiredVariables loads the file with one required variable
// unset at a time: compose-go must stop with a message that names it, as
// `docker compose up` does.
func TestComposeRequiredVariables(t *testing.T) {
	content := readRepoFile(t, composeFileName)
	for _, name := range slices.Sorted(maps.Keys(composeTestEnvironment)) {
		t.Run(name, func(t *testing.T) {
			env := maps.Clone(composeTestEnvironment)
			delete(env, name)
			_, err := loadComposeProject(context.Background(), content, env, true)
			if err == nil {
				t.Fatalf("the file loads without %s", name)
			}
			if !strings.Contains(err.Error(), "required variable "+name+" is missing") {
				t.Fatalf("load error does not name %s: %v", name, err)
			}
		})
	}
}

func TestSplitImage(t *testing.T) {
	tests := []struct {
		ref, name, tag, digest string
	}{
		{ref: "postgres:16.6", name: "postgres", tag: "16.6"},
		{ref: "postgres", name: "postgres"},
		{ref: "registry.example.invalid:5000/team/app", name: "registry.example.invalid:5000/team/app"},
		{ref: "registry.example.invalid:5000/team/app:1.2", name: "registry.example.invalid:5000/team/app", tag: "1.2"},
		{ref: "redis:7.4.2@sha256:abc", name: "redis", tag: "7.4.2", digest: "sha256:abc"},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			name, tag, digest := splitImage(tt.ref)
			if name != tt.name || tag != tt.tag || digest != tt.digest {
				t.Fatalf("splitImage(%q) = %q, %q, %q; want %q, %q, %q", tt.ref, name, tag, digest, tt.name, tt.tag, tt.digest)
			}
		})
	}
}

func TestHostPortCount(t *testing.T) {
	tests := []struct {
		published string
		want      int
		wantErr   bool
	}{
		{published: "8080", want: 1},
		{published: "8080-8081", want: 2},
		{published: "8080-8080", want: 1},
		{published: "", wantErr: true},
		{published: "http", wantErr: true},
		{published: "8080-x", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.published, func(t *testing.T) {
			got, err := hostPortCount(tt.published)
			if (err != nil) != tt.wantErr {
				t.Fatalf("hostPortCount(%q) error = %v, want error: %v", tt.published, err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("hostPortCount(%q) = %d, want %d", tt.published, got, tt.want)
			}
		})
	}
}

func TestSecretPatterns(t *testing.T) {
	tests := []struct {
		value              string
		reference, require bool
	}{
		{value: "${JWT_SECRET:?set JWT_SECRET}", reference: true, require: true},
		{value: "${OPENAI_API_KEY:-}", reference: true},
		{value: "${OPENAI_API_KEY}", reference: true},
		{value: "${OPENAI_API_KEY:-sk-live-123}"},
		{value: "hunter2"},
		{value: "prefix-${JWT_SECRET:?x}"},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			if got := variableReference.MatchString(tt.value); got != tt.reference {
				t.Errorf("variableReference matches %q: %v, want %v", tt.value, got, tt.reference)
			}
			if got := requiredReference.MatchString(tt.value); got != tt.require {
				t.Errorf("requiredReference matches %q: %v, want %v", tt.value, got, tt.require)
			}
		})
	}
}

// editBlock replaces old with replacement inside the block of text that
// starts at the line header and ends before the next line indented no
// deeper than header. It returns an error unless old occurs exactly once in
// that block, so a stale broken-file case cannot pass by changing nothing.
func editBlock(text, header, old, replacement string) (string, error) {
	start := strings.Index(text, "\n"+header+"\n")
	if start < 0 {
		return "", fmt.Errorf("no line %q", header)
	}
	start++
	indent := len(header) - len(strings.TrimLeft(header, " "))
	end := len(text)
	offset := start + len(header) + 1
	for _, line := range strings.SplitAfter(text[offset:], "\n") {
		trimmed := strings.TrimLeft(line, " ")
		if strings.TrimSpace(line) != "" && len(line)-len(trimmed) <= indent {
			end = offset
			break
		}
		offset += len(line)
	}
	block := text[start:end]
	if n := strings.Count(block, old); n != 1 {
		return "", fmt.Errorf("%q occurs %d times in the block %q, want once", old, n, header)
	}
	return text[:start] + strings.Replace(block, old, replacement, 1) + text[end:], nil
}

func TestEditBlock(t *testing.T) {
	text := "services:\n  a:\n    image: x:1\n  b:\n    image: x:1\nvolumes:\n"
	got, err := editBlock(text, "  b:", "x:1", "x:2")
	if err != nil {
		t.Fatal(err)
	}
	if want := "services:\n  a:\n    image: x:1\n  b:\n    image: x:2\nvolumes:\n"; got != want {
		t.Fatalf("editBlock = %q, want %q", got, want)
	}
	if _, err := editBlock(text, "services:", "x:1", "x:2"); err == nil {
		t.Fatal("editBlock replaced a string that occurs twice in the block")
	}
	if _, err := editBlock(text, "  c:", "x:1", "x:2"); err == nil {
		t.Fatal("editBlock edited a block that does not exist")
	}
	if _, err := editBlock(text, "  a:", "x:2", "x:3"); err == nil {
		t.Fatal("editBlock accepted a string that is not in the block")
	}
}

// TestComposeChecksRejectBrokenFiles feeds broken copies of the Compose file
// to the loader and the checks. Each copy must be rejected, either by
// compose-go while loading or by the named check.
func TestComposeChecksRejectBrokenFiles(t *testing.T) {
	dockerfile := loadDockerfile(t)
	entrypoint := dockerfile.entrypoint(t)
	original := string(readRepoFile(t, composeFileName))

	tests := []struct {
		name        string
		edits       []composeEdit
		check       func(composeProjects) []error
		wantErr     string // part of one error that check returns
		wantLoadErr string // part of the compose-go error, when loading must fail
	}{
		{
			name:    "image with tag latest",
			edits:   []composeEdit{{header: "  redis:", old: "image: redis:7.4.2", new: "image: redis:latest"}},
			wantErr: "redis: image \"redis:latest\" uses the tag latest",
			check:   func(p composeProjects) []error { return checkImagesPinned(p.raw) },
		},
		{
			name:    "image without tag",
			edits:   []composeEdit{{header: "  postgresql:", old: "image: postgres:16.6", new: "image: postgres"}},
			wantErr: "postgresql: image \"postgres\" has no tag",
			check:   func(p composeProjects) []error { return checkImagesPinned(p.raw) },
		},
		{
			name:    "image tag from a variable",
			edits:   []composeEdit{{header: "  temporal-ui:", old: "image: temporalio/ui:2.34.0", new: "image: temporalio/ui:${UI_TAG:-2.34.0}"}},
			wantErr: "temporal-ui: image \"temporalio/ui:${UI_TAG:-2.34.0}\" comes from a variable",
			check:   func(p composeProjects) []error { return checkImagesPinned(p.raw) },
		},
		{
			name:    "image tag not a version",
			edits:   []composeEdit{{header: "  temporal:", old: "image: temporalio/auto-setup:1.29.1", new: "image: temporalio/auto-setup:stable"}},
			wantErr: "temporal: image \"temporalio/auto-setup:stable\": tag \"stable\" is not a version",
			check:   func(p composeProjects) []error { return checkImagesPinned(p.raw) },
		},
		{
			name:    "missing health check",
			edits:   []composeEdit{{header: "  redis:", old: "    healthcheck:\n      test: [\"CMD\", \"redis-cli\", \"ping\"]\n      interval: 5s\n      timeout: 5s\n      retries: 30\n", new: ""}},
			wantErr: "redis: long-running service has no health check",
			check:   func(p composeProjects) []error { return checkHealthchecks(p.resolved, entrypoint) },
		},
		{
			name:    "disabled health check",
			edits:   []composeEdit{{header: "  temporal-ui:", old: "    healthcheck:\n", new: "    healthcheck:\n      disable: true\n"}},
			wantErr: "temporal-ui: long-running service has no health check",
			check:   func(p composeProjects) []error { return checkHealthchecks(p.resolved, entrypoint) },
		},
		{
			name:    "health check through a shell in the built image",
			edits:   []composeEdit{{header: "  serve:", old: `test: ["CMD", "/usr/local/bin/aihigress", "healthcheck", "http://127.0.0.1:8080/healthz"]`, new: `test: ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8080/healthz"]`}},
			wantErr: "serve: health check [\"CMD-SHELL\"",
			check:   func(p composeProjects) []error { return checkHealthchecks(p.resolved, entrypoint) },
		},
		{
			name:    "worker health check without -worker",
			edits:   []composeEdit{{header: "  worker:", old: `"healthcheck", "-worker"]`, new: `"healthcheck"]`}},
			wantErr: "worker: health check arguments [\"healthcheck\"]",
			check:   checkProjectsResolved(checkHealthcheckCommands),
		},
		{
			name:    "api listens on another port",
			edits:   []composeEdit{{header: "  serve:", old: "HTTP_ADDR: 0.0.0.0:8080", new: "HTTP_ADDR: 0.0.0.0:9090"}},
			wantErr: "serve: HTTP_ADDR = \"0.0.0.0:9090\"",
			check:   checkProjectsResolved(checkHealthcheckCommands),
		},
		{
			name:    "serve starts before the migrations finish",
			edits:   []composeEdit{{header: "  serve:", old: "      migrate:\n        condition: service_completed_successfully", new: "      migrate:\n        condition: service_started"}},
			wantErr: "serve depends on migrate with condition \"service_started\"",
			check:   checkProjectsResolved(checkDependencies),
		},
		{
			name:    "worker does not wait for the search attributes",
			edits:   []composeEdit{{header: "  worker:", old: "      temporal-search-attributes:\n        condition: service_completed_successfully\n", new: ""}},
			wantErr: "worker does not depend on temporal-search-attributes",
			check:   checkProjectsResolved(checkDependencies),
		},
		{
			name:    "temporal starts before postgresql",
			edits:   []composeEdit{{header: "  temporal:", old: "    depends_on:\n      postgresql:\n        condition: service_healthy\n", new: ""}},
			wantErr: "temporal does not depend on postgresql",
			check:   checkProjectsResolved(checkDependencies),
		},
		{
			name:    "waits for a service without health check",
			edits:   []composeEdit{{header: "  temporal-ui:", old: "      temporal:\n        condition: service_healthy", new: "      temporal-search-attributes:\n        condition: service_healthy"}},
			wantErr: "temporal-ui waits for temporal-search-attributes to be healthy, but temporal-search-attributes has no health check",
			check:   checkProjectsResolved(checkDependencies),
		},
		{
			name:    "serve does not wait for the migrations",
			edits:   []composeEdit{{header: "  serve:", old: "      migrate:\n        condition: service_completed_successfully\n", new: ""}},
			wantErr: "serve does not depend on migrate",
			check:   checkProjectsResolved(checkDependencies),
		},
		{
			name: "one-shot job nobody waits for",
			edits: []composeEdit{
				{header: "  serve:", old: "      migrate:\n        condition: service_completed_successfully\n", new: ""},
				{header: "  worker:", old: "      migrate:\n        condition: service_completed_successfully\n", new: ""},
			},
			wantErr: "one-shot job migrate is not awaited",
			check:   checkProjectsResolved(checkDependencies),
		},
		{
			name:        "dependency cycle",
			edits:       []composeEdit{{header: "  migrate:", old: "      postgresql:\n        condition: service_healthy", new: "      postgresql:\n        condition: service_healthy\n      serve:\n        condition: service_healthy"}},
			wantLoadErr: "dependency cycle",
		},
		{
			name:        "dependency on a missing service",
			edits:       []composeEdit{{header: "  worker:", old: "      redis:\n        condition: service_healthy", new: "      valkey:\n        condition: service_healthy"}},
			wantLoadErr: "undefined service",
		},
		{
			name:    "migrate restarts",
			edits:   []composeEdit{{header: "  migrate:", old: `restart: "no"`, new: "restart: on-failure"}},
			wantErr: "migrate restart \"on-failure\"",
			check:   checkProjectsResolved(checkMigrateJob),
		},
		{
			name:    "migrate runs serve",
			edits:   []composeEdit{{header: "  migrate:", old: `command: ["migrate"]`, new: `command: ["serve"]`}},
			wantErr: "migrate command [\"serve\"]",
			check:   checkProjectsResolved(checkMigrateJob),
		},
		{
			name:    "postgresql published on every interface",
			edits:   []composeEdit{{header: "  postgresql:", old: `"127.0.0.1:5432:5432"`, new: `"5432:5432"`}},
			wantErr: "postgresql publishes container port 5432 on \"\"",
			check:   checkProjectsResolved(checkPortsOnLoopback),
		},
		{
			name:    "redis not published",
			edits:   []composeEdit{{header: "  redis:", old: "    ports:\n      - \"127.0.0.1:6379:6379\"\n", new: ""}},
			wantErr: "redis has no published port",
			check:   checkProjectsResolved(checkPortsOnLoopback),
		},
		{
			name:    "one worker replica",
			edits:   []composeEdit{{header: "  worker:", old: "replicas: 2", new: "replicas: 1"}},
			wantErr: "worker: 1 replicas, want 2",
			check:   checkProjectsResolved(checkReplicas),
		},
		{
			name:    "serve port range narrower than the replicas",
			edits:   []composeEdit{{header: "  serve:", old: `"127.0.0.1:8080-8081:8080"`, new: `"127.0.0.1:8080:8080"`}},
			wantErr: "serve: published port \"8080\" covers 1 host ports for 2 replicas",
			check:   checkProjectsResolved(checkReplicas),
		},
		{
			name:        "container name with two replicas",
			edits:       []composeEdit{{header: "  serve:", old: "    deploy:\n", new: "    container_name: aihigress-serve\n    deploy:\n"}},
			wantLoadErr: "container_name",
		},
		{
			name:    "search attribute missing",
			edits:   []composeEdit{{header: "  temporal-search-attributes:", old: "      - --name=AihProvider\n      - --type=Keyword\n", new: ""}},
			wantErr: "job does not register AihProvider",
			check:   checkProjectsResolved(checkSearchAttributeJob),
		},
		{
			name:    "search attribute with type Text",
			edits:   []composeEdit{{header: "  temporal-search-attributes:", old: "      - --name=AihProvider\n      - --type=Keyword\n", new: "      - --name=AihProvider\n      - --type=Text\n"}},
			wantErr: "attribute AihProvider has type \"Text\"",
			check:   checkProjectsResolved(checkSearchAttributeJob),
		},
		{
			name:    "search attributes in another namespace",
			edits:   []composeEdit{{header: "  temporal-search-attributes:", old: "--namespace=default", new: "--namespace=aihigress"}},
			wantErr: "job namespace [\"aihigress\"]",
			check:   checkProjectsResolved(checkSearchAttributeJob),
		},
		{
			name:    "hard-coded secret",
			edits:   []composeEdit{{header: "x-aihigress: &aihigress", old: "JWT_SECRET: ${JWT_SECRET:?set JWT_SECRET, for example with openssl rand -hex 32}", new: "JWT_SECRET: hunter2-hunter2"}},
			wantErr: "serve: JWT_SECRET = \"hunter2-hunter2\"",
			check:   func(p composeProjects) []error { return checkSecretsReferenced(p.raw) },
		},
		{
			name:    "secret with a default",
			edits:   []composeEdit{{header: "  temporal:", old: "POSTGRES_PWD: ${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}", new: "POSTGRES_PWD: ${POSTGRES_PASSWORD:-postgres}"}},
			wantErr: "temporal: POSTGRES_PWD = \"${POSTGRES_PASSWORD:-postgres}\"",
			check:   func(p composeProjects) []error { return checkSecretsReferenced(p.raw) },
		},
		{
			name:    "worker on another redis prefix",
			edits:   []composeEdit{{header: "  worker:", old: "    command: [\"worker\"]\n", new: "    command: [\"worker\"]\n    environment:\n      <<: *aihigress-environment\n      REDIS_PREFIX: \"other:\"\n"}},
			wantErr: "worker: REDIS_PREFIX = \"other:\"",
			check:   checkProjectsResolved(checkSharedSettings),
		},
		{
			name:    "worker without the media volume",
			edits:   []composeEdit{{header: "  worker:", old: "    command: [\"worker\"]\n", new: "    command: [\"worker\"]\n    volumes:\n      - ./providers:/etc/aihigress:ro\n"}},
			wantErr: "want one named volume in both serve and worker",
			check:   func(p composeProjects) []error { return checkSharedImageVolume(p.resolved, dockerfile.final()) },
		},
		{
			name:    "Temporal without its dynamic config",
			edits:   []composeEdit{{header: "  temporal:", old: "      DYNAMIC_CONFIG_FILE_PATH: config/dynamicconfig/aihigress.yaml\n", new: ""}},
			wantErr: "DYNAMIC_CONFIG_FILE_PATH",
			check:   checkProjectsResolved(checkTemporalDynamicConfig),
		},
		{
			name:    "Temporal's dynamic config not mounted",
			edits:   []composeEdit{{header: "  temporal:", old: "    volumes:\n      - ./deploy/temporal:/etc/temporal/config/dynamicconfig:ro\n", new: ""}},
			wantErr: "mounts no folder",
			check:   checkProjectsResolved(checkTemporalDynamicConfig),
		},
		{
			name:    "Temporal's dynamic config file missing",
			edits:   []composeEdit{{header: "  temporal:", old: "config/dynamicconfig/aihigress.yaml", new: "config/dynamicconfig/missing.yaml"}},
			wantErr: "read its dynamic config",
			check:   checkProjectsResolved(checkTemporalDynamicConfig),
		},
		{
			name:    "media as a bind mount",
			edits:   []composeEdit{{header: "x-aihigress: &aihigress", old: "- media:/var/lib/aihigress/media", new: "- ./media:/var/lib/aihigress/media"}},
			wantErr: "as type \"bind\"",
			check:   func(p composeProjects) []error { return checkSharedImageVolume(p.resolved, dockerfile.final()) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			broken := original
			for _, edit := range tt.edits {
				var err error
				broken, err = editBlock(broken, edit.header, edit.old, edit.new)
				if err != nil {
					t.Fatalf("cannot build the broken copy: %v", err)
				}
			}
			projects, err := loadComposeProjects(context.Background(), []byte(broken))
			if tt.wantLoadErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantLoadErr) {
					t.Fatalf("load error %v, want one that contains %q", err, tt.wantLoadErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("the broken copy does not load, so the check never runs: %v", err)
			}
			errs := tt.check(projects)
			if len(errs) == 0 {
				t.Fatal("the check accepts the broken copy")
			}
			if !slices.ContainsFunc(errs, func(err error) bool { return strings.Contains(err.Error(), tt.wantErr) }) {
				t.Fatalf("no error contains %q; the check returned:\n%v", tt.wantErr, errors.Join(errs...))
			}
		})
	}
}

// composeEdit replaces old with new in the block of the Compose file that
// starts at the line header.
type composeEdit struct {
	header, old, new string
}

// checkProjectsResolved adapts a check of the resolved project to the
// composeProjects that TestComposeChecksRejectBrokenFiles loads.
func checkProjectsResolved(check func(*types.Project) []error) func(composeProjects) []error {
	return func(p composeProjects) []error { return check(p.resolved) }
}

// TestComposeTemporalCommands runs the Temporal CLI commands of the Compose
// file against a dev server: the Temporal health check and the search
// attribute job, twice, because the job runs on every `up`.
func TestComposeTemporalCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a Temporal dev server")
	}
	cli, err := testenv.TemporalCLI()
	if err != nil {
		t.Fatal(err)
	}
	cli, err = filepath.Abs(cli)
	if err != nil {
		t.Fatal(err)
	}
	file := loadCompose(t).resolved
	composeAddress := envValue(file.Services[serviceAPI], "TEMPORAL_ADDRESS")
	namespace := envValue(file.Services[serviceAPI], "TEMPORAL_NAMESPACE")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// A dev server without the project's search attributes, unlike the one
	// that testenv.StartTemporal starts.
	srv, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath:  cli,
		ClientOptions: &client.Options{Namespace: namespace},
		LogLevel:      "error",
		Stdout:        io.Discard,
		Stderr:        io.Discard,
	})
	if err != nil {
		t.Fatalf("start Temporal dev server: %v", err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	address := srv.FrontendHostPort()

	customAttributes := func() map[string]enumspb.IndexedValueType {
		t.Helper()
		resp, err := srv.Client().OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
		if err != nil {
			t.Fatalf("list search attributes: %v", err)
		}
		return resp.GetCustomAttributes()
	}
	for _, name := range workflows.SearchAttributeNames {
		if _, ok := customAttributes()[name]; ok {
			t.Fatalf("the dev server has %s before the job ran", name)
		}
	}

	// The health check calls `temporal` from PATH.
	binDir := t.TempDir()
	if err := os.Symlink(cli, filepath.Join(binDir, "temporal")); err != nil {
		t.Fatal(err)
	}
	pathEnv := "PATH=" + binDir + string(os.PathListSeparator) + os.Getenv("PATH")

	health := file.Services[serviceTemporal].HealthCheck
	if health == nil || len(health.Test) != 2 || health.Test[0] != "CMD-SHELL" {
		t.Fatalf("temporal health check %+v, want [CMD-SHELL <command>]", health)
	}
	healthCmd := exec.CommandContext(ctx, "sh", "-c", strings.ReplaceAll(health.Test[1], composeAddress, address))
	healthCmd.Env = append(os.Environ(), pathEnv)
	if out, err := healthCmd.CombinedOutput(); err != nil {
		t.Fatalf("temporal health check failed against a running dev server: %v\n%s", err, out)
	}

	args, err := searchAttributeJobArgs(file)
	if err != nil {
		t.Fatal(err)
	}
	for i, arg := range args {
		args[i] = strings.ReplaceAll(arg, composeAddress, address)
	}
	for run := 1; run <= 2; run++ {
		job := exec.CommandContext(ctx, cli, args[1:]...)
		job.Env = append(os.Environ(), pathEnv)
		if out, err := job.CombinedOutput(); err != nil {
			t.Fatalf("search attribute job, run %d: %v\n%s", run, err, out)
		}
	}

	got := customAttributes()
	for _, name := range workflows.SearchAttributeNames {
		if typ, ok := got[name]; !ok || typ != enumspb.INDEXED_VALUE_TYPE_KEYWORD {
			t.Errorf("after the job, %s has type %v (present: %v), want Keyword", name, typ, ok)
		}
	}
}
