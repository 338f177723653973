package deploytest

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"
	"gopkg.in/yaml.v3"

	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/workflows"
)

const composeFileName = "docker-compose.temporal.yml"

// Services of the Compose file that the tests name.
const (
	serviceAPI              = "serve"
	serviceWorker           = "worker"
	serviceMigrate          = "migrate"
	serviceSearchAttributes = "temporal-search-attributes"
	serviceTemporal         = "temporal"
)

// composeFile is the part of the Compose file that the tests check. Fields
// are decoded in the short syntax that the file uses, so a command written
// as one string or an environment written as a list fails to decode.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image         string                       `yaml:"image"`
	Build         any                          `yaml:"build"`
	ContainerName string                       `yaml:"container_name"`
	Entrypoint    []string                     `yaml:"entrypoint"`
	Command       []string                     `yaml:"command"`
	Environment   map[string]string            `yaml:"environment"`
	Ports         []string                     `yaml:"ports"`
	Volumes       []string                     `yaml:"volumes"`
	DependsOn     map[string]composeDependency `yaml:"depends_on"`
	Healthcheck   *composeHealthcheck          `yaml:"healthcheck"`
	Deploy        struct {
		Replicas *int `yaml:"replicas"`
	} `yaml:"deploy"`
	Restart string `yaml:"restart"`
}

type composeDependency struct {
	Condition string `yaml:"condition"`
}

type composeHealthcheck struct {
	Test    []string `yaml:"test"`
	Disable bool     `yaml:"disable"`
}

// oneShot reports whether the service is a job that runs once and exits.
func (s composeService) oneShot() bool { return s.Restart == "no" }

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

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	var file composeFile
	if err := yaml.Unmarshal(readRepoFile(t, composeFileName), &file); err != nil {
		t.Fatalf("decode %s: %v", composeFileName, err)
	}
	if len(file.Services) == 0 {
		t.Fatalf("%s has no services", composeFileName)
	}
	return file
}

func (f composeFile) service(t *testing.T, name string) composeService {
	t.Helper()
	svc, ok := f.Services[name]
	if !ok {
		t.Fatalf("%s has no service %q", composeFileName, name)
	}
	return svc
}

func (f composeFile) serviceNames() []string {
	names := make([]string, 0, len(f.Services))
	for name := range f.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// splitImage splits an image reference into name, tag and digest. A colon
// before the last slash belongs to a registry host, not to a tag.
func splitImage(ref string) (name, tag, digest string) {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref, digest = ref[:i], ref[i+1:]
	}
	slash := strings.LastIndex(ref, "/")
	if i := strings.LastIndex(ref, ":"); i > slash {
		return ref[:i], ref[i+1:], digest
	}
	return ref, "", digest
}

// versionTag matches tags that start with a major and a minor version, such
// as 16.6, 1.29.1 or 1.29.1-tctl-1.18.4-cli-1.5.0.
var versionTag = regexp.MustCompile(`^v?\d+\.\d+`)

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

func TestComposeImagesPinned(t *testing.T) {
	file := loadCompose(t)
	for _, name := range file.serviceNames() {
		svc := file.Services[name]
		t.Run(name, func(t *testing.T) {
			if svc.Image == "" {
				t.Fatal("no image")
			}
			if strings.Contains(svc.Image, "$") {
				t.Fatalf("image %q comes from a variable, so its version is not pinned in the file", svc.Image)
			}
			_, tag, digest := splitImage(svc.Image)
			if tag == "latest" {
				t.Fatalf("image %q uses the tag latest", svc.Image)
			}
			if tag == "" && digest == "" {
				t.Fatalf("image %q has no tag", svc.Image)
			}
			// A service built from the Dockerfile names the local result;
			// the Dockerfile pins its own base images.
			if svc.Build != nil || digest != "" {
				return
			}
			if !versionTag.MatchString(tag) {
				t.Fatalf("image %q: tag %q is not a version such as 16.6 or 1.29.1", svc.Image, tag)
			}
		})
	}
}

func TestComposeHealthchecks(t *testing.T) {
	file := loadCompose(t)
	entrypoint := loadDockerfile(t).entrypoint(t)
	for _, name := range file.serviceNames() {
		svc := file.Services[name]
		if svc.oneShot() {
			continue
		}
		t.Run(name, func(t *testing.T) {
			hc := svc.Healthcheck
			if hc == nil || hc.Disable || len(hc.Test) < 2 {
				t.Fatalf("long-running service has no health check: %+v", hc)
			}
			if hc.Test[0] != "CMD" && hc.Test[0] != "CMD-SHELL" {
				t.Fatalf("health check test starts with %q, want CMD or CMD-SHELL", hc.Test[0])
			}
			if svc.Build == nil {
				return
			}
			// The image built from the Dockerfile has no shell.
			if hc.Test[0] != "CMD" || hc.Test[1] != entrypoint[0] || !slices.Contains(hc.Test, "healthcheck") {
				t.Fatalf("health check %q, want [CMD %s healthcheck ...]", hc.Test, entrypoint[0])
			}
		})
	}
}

func TestComposeHealthcheckCommands(t *testing.T) {
	file := loadCompose(t)
	tests := []struct {
		service string
		want    []string
	}{
		{service: serviceAPI, want: []string{"healthcheck", "http://127.0.0.1:8080/healthz"}},
		{service: serviceWorker, want: []string{"healthcheck", "-worker"}},
	}
	for _, tt := range tests {
		t.Run(tt.service, func(t *testing.T) {
			svc := file.service(t, tt.service)
			if svc.Healthcheck == nil || len(svc.Healthcheck.Test) < 2 {
				t.Fatalf("no health check command: %+v", svc.Healthcheck)
			}
			if got := svc.Healthcheck.Test[2:]; !slices.Equal(got, tt.want) {
				t.Fatalf("health check arguments %q, want %q", got, tt.want)
			}
		})
	}

	// The API listens where its health check looks.
	if addr := file.service(t, serviceAPI).Environment["HTTP_ADDR"]; addr != "0.0.0.0:8080" {
		t.Fatalf("serve HTTP_ADDR = %q, want 0.0.0.0:8080 to match the health check and the published port", addr)
	}
}

func TestComposeDependencies(t *testing.T) {
	file := loadCompose(t)

	completedTargets := map[string]bool{}
	for _, name := range file.serviceNames() {
		for target, dep := range file.Services[name].DependsOn {
			targetSvc, ok := file.Services[target]
			if !ok {
				t.Errorf("%s depends on the missing service %q", name, target)
				continue
			}
			switch dep.Condition {
			case "service_completed_successfully":
				completedTargets[target] = true
				if !targetSvc.oneShot() {
					t.Errorf("%s waits for %s to complete, but %s has restart %q instead of \"no\"", name, target, target, targetSvc.Restart)
				}
			case "service_healthy":
				if targetSvc.Healthcheck == nil {
					t.Errorf("%s waits for %s to be healthy, but %s has no health check", name, target, target)
				}
			default:
				t.Errorf("%s depends on %s with condition %q, want service_healthy or service_completed_successfully", name, target, dep.Condition)
			}
		}
	}
	for _, name := range file.serviceNames() {
		if file.Services[name].oneShot() && !completedTargets[name] {
			t.Errorf("one-shot job %s is not awaited by any service with service_completed_successfully", name)
		}
	}

	tests := []struct {
		dependent, job string
	}{
		{dependent: serviceAPI, job: serviceMigrate},
		{dependent: serviceAPI, job: serviceSearchAttributes},
		{dependent: serviceWorker, job: serviceMigrate},
		{dependent: serviceWorker, job: serviceSearchAttributes},
	}
	for _, tt := range tests {
		t.Run(tt.dependent+" after "+tt.job, func(t *testing.T) {
			dep, ok := file.service(t, tt.dependent).DependsOn[tt.job]
			if !ok || dep.Condition != "service_completed_successfully" {
				t.Fatalf("%s depends on %s with %+v (present: %v), want condition service_completed_successfully", tt.dependent, tt.job, dep, ok)
			}
		})
	}
}

func TestComposeMigrateJob(t *testing.T) {
	file := loadCompose(t)
	migrate := file.service(t, serviceMigrate)
	if !slices.Equal(migrate.Command, []string{"migrate"}) {
		t.Fatalf("migrate command %q, want [migrate]", migrate.Command)
	}
	if !migrate.oneShot() {
		t.Fatalf("migrate restart %q, want \"no\"", migrate.Restart)
	}
	if want := file.service(t, serviceAPI).Image; migrate.Image != want {
		t.Fatalf("migrate image %q, want the serve image %q", migrate.Image, want)
	}
	if dep := migrate.DependsOn["postgresql"]; dep.Condition != "service_healthy" {
		t.Fatalf("migrate depends on postgresql with %+v, want service_healthy", dep)
	}
}

func TestComposePortsOnLoopback(t *testing.T) {
	file := loadCompose(t)
	for _, name := range file.serviceNames() {
		for _, port := range file.Services[name].Ports {
			parts := strings.Split(port, ":")
			if len(parts) != 3 || parts[0] != "127.0.0.1" {
				t.Errorf("%s publishes %q, want 127.0.0.1:<host port>:<container port>", name, port)
			}
		}
	}
	for _, name := range []string{"postgresql", "redis"} {
		t.Run(name, func(t *testing.T) {
			if len(file.service(t, name).Ports) == 0 {
				t.Fatal("no published port; the README promises one on 127.0.0.1")
			}
		})
	}
}

// hostPortCount returns how many host ports a published port such as
// 127.0.0.1:8080-8081:8080 covers.
func hostPortCount(port string) (int, error) {
	parts := strings.Split(port, ":")
	if len(parts) != 3 {
		return 0, strconv.ErrSyntax
	}
	first, last, isRange := strings.Cut(parts[1], "-")
	if !isRange {
		return 1, nil
	}
	lo, err := strconv.Atoi(first)
	if err != nil {
		return 0, err
	}
	hi, err := strconv.Atoi(last)
	if err != nil {
		return 0, err
	}
	return hi - lo + 1, nil
}

func TestComposeReplicas(t *testing.T) {
	file := loadCompose(t)
	for _, name := range []string{serviceAPI, serviceWorker} {
		t.Run(name, func(t *testing.T) {
			svc := file.service(t, name)
			if svc.Deploy.Replicas == nil {
				t.Fatal("deploy.replicas is not set, want 2")
			}
			if *svc.Deploy.Replicas != 2 {
				t.Fatalf("deploy.replicas = %d, want 2", *svc.Deploy.Replicas)
			}
			if svc.ContainerName != "" {
				t.Fatalf("container_name %q is set, so a second replica cannot start", svc.ContainerName)
			}
			// Each replica takes one host port, so a range must be at
			// least as wide as the number of replicas.
			for _, port := range svc.Ports {
				count, err := hostPortCount(port)
				if err != nil {
					t.Fatalf("published port %q: %v", port, err)
				}
				if count < *svc.Deploy.Replicas {
					t.Fatalf("published port %q covers %d host ports for %d replicas", port, count, *svc.Deploy.Replicas)
				}
			}
		})
	}
}

// parseLongFlags returns the values of --name=value and --name value
// arguments, and the other arguments in order. Every flag of the commands
// checked here takes a value.
func parseLongFlags(args []string) (flags map[string][]string, positional []string) {
	flags = map[string][]string{}
	for i := 0; i < len(args); i++ {
		name, ok := strings.CutPrefix(args[i], "--")
		if !ok {
			positional = append(positional, args[i])
			continue
		}
		if key, value, hasValue := strings.Cut(name, "="); hasValue {
			flags[key] = append(flags[key], value)
			continue
		}
		if i+1 < len(args) {
			flags[name] = append(flags[name], args[i+1])
			i++
		}
	}
	return flags, positional
}

func searchAttributeJobArgs(t *testing.T, file composeFile) []string {
	t.Helper()
	job := file.service(t, serviceSearchAttributes)
	return append(slices.Clone(job.Entrypoint), job.Command...)
}

func TestComposeSearchAttributeJob(t *testing.T) {
	file := loadCompose(t)
	args := searchAttributeJobArgs(t, file)
	flags, positional := parseLongFlags(args)

	if want := []string{"temporal", "operator", "search-attribute", "create"}; !slices.Equal(positional, want) {
		t.Fatalf("job runs %q, want %q with flags", positional, want)
	}

	names := flags["name"]
	if len(names) != len(workflows.SearchAttributeNames) {
		t.Errorf("job registers %d attributes %q, want the %d of workflows.SearchAttributeNames %q",
			len(names), names, len(workflows.SearchAttributeNames), workflows.SearchAttributeNames)
	}
	for _, want := range workflows.SearchAttributeNames {
		if !slices.Contains(names, want) {
			t.Errorf("job does not register %s", want)
		}
	}
	for _, got := range names {
		if !slices.Contains(workflows.SearchAttributeNames, got) {
			t.Errorf("job registers %s, which is not in workflows.SearchAttributeNames", got)
		}
	}

	types := flags["type"]
	if len(types) != len(names) {
		t.Fatalf("job has %d --type flags for %d --name flags", len(types), len(names))
	}
	for i, typ := range types {
		if typ != "Keyword" {
			t.Errorf("attribute %s has type %q, want Keyword", names[i], typ)
		}
	}

	api := file.service(t, serviceAPI)
	if got, want := flags["namespace"], api.Environment["TEMPORAL_NAMESPACE"]; !slices.Equal(got, []string{want}) {
		t.Errorf("job namespace %q, want the TEMPORAL_NAMESPACE %q of serve", got, want)
	}
	if got, want := flags["address"], api.Environment["TEMPORAL_ADDRESS"]; !slices.Equal(got, []string{want}) {
		t.Errorf("job address %q, want the TEMPORAL_ADDRESS %q of serve", got, want)
	}
}

// secretKey matches environment variables that hold secrets.
var secretKey = regexp.MustCompile(`PASSWORD|SECRET|PWD|TOKEN|_KEY`)

// variableReference matches a value that is one variable reference, either
// required (${NAME:?message}), plain (${NAME}) or empty by default
// (${NAME:-}). A default value would put a secret into the file.
var variableReference = regexp.MustCompile(`^\$\{[A-Z][A-Z0-9_]*(:\?[^}]*|:-)?\}$`)

// requiredReference matches ${NAME:?message}, which stops Compose when NAME
// is unset or empty.
var requiredReference = regexp.MustCompile(`^\$\{[A-Z][A-Z0-9_]*:\?[^}]*\}$`)

// urlPassword captures the password of a URL with user information.
var urlPassword = regexp.MustCompile(`://[^:/@]+:([^@]+)@`)

// requiredSecrets must be set by the operator; the services cannot share
// them or keep them across restarts otherwise.
var requiredSecrets = []string{"JWT_SECRET", "MASTER_KEY", "ADMIN_PASSWORD", "POSTGRES_PASSWORD", "POSTGRES_PWD"}

func TestComposeSecretsNotHardCoded(t *testing.T) {
	file := loadCompose(t)
	for _, name := range file.serviceNames() {
		env := file.Services[name].Environment
		keys := make([]string, 0, len(env))
		for key := range env {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		for _, key := range keys {
			value := env[key]
			if secretKey.MatchString(key) && !variableReference.MatchString(value) {
				t.Errorf("%s: %s = %q, want a variable reference such as ${%s:?message}", name, key, value, key)
			}
			if slices.Contains(requiredSecrets, key) && !requiredReference.MatchString(value) {
				t.Errorf("%s: %s = %q, want ${%s:?message} so that Compose stops when it is unset", name, key, value, key)
			}
			if m := urlPassword.FindStringSubmatch(value); m != nil && !requiredReference.MatchString(m[1]) {
				t.Errorf("%s: %s has the URL password %q, want ${VAR:?message}", name, key, m[1])
			}
		}
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

// TestComposeSharedSettings checks that the API, the workers and the
// migrations use one database, one Redis, one Temporal namespace and the
// same keys, because a token or a provider key written by one process must
// be readable by the others.
func TestComposeSharedSettings(t *testing.T) {
	file := loadCompose(t)
	api := file.service(t, serviceAPI).Environment
	for _, key := range []string{"DATABASE_URL", "REDIS_URL", "REDIS_PREFIX", "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "JWT_SECRET", "MASTER_KEY", "IMAGE_LOCAL_DIR"} {
		t.Run(key, func(t *testing.T) {
			if api[key] == "" {
				t.Fatalf("serve has no %s", key)
			}
			for _, name := range []string{serviceWorker, serviceMigrate} {
				if got := file.service(t, name).Environment[key]; got != api[key] {
					t.Errorf("%s %s = %q, want the serve value %q", name, key, got, api[key])
				}
			}
		})
	}
}

// TestComposeSharedImageVolume checks that workers write images where the
// API replicas read them: one named volume at IMAGE_LOCAL_DIR, created by
// the Dockerfile with the non-root user as owner.
func TestComposeSharedImageVolume(t *testing.T) {
	file := loadCompose(t)
	dir := file.service(t, serviceAPI).Environment["IMAGE_LOCAL_DIR"]
	if dir == "" {
		t.Fatal("serve has no IMAGE_LOCAL_DIR")
	}

	volumes := map[string]string{}
	for _, name := range []string{serviceAPI, serviceWorker} {
		for _, mount := range file.service(t, name).Volumes {
			parts := strings.Split(mount, ":")
			if len(parts) >= 2 && parts[1] == dir {
				volumes[name] = parts[0]
			}
		}
	}
	volume := volumes[serviceAPI]
	if volume == "" || volumes[serviceWorker] != volume {
		t.Fatalf("volumes at %s: %v, want one named volume in both serve and worker", dir, volumes)
	}
	if _, ok := file.Volumes[volume]; !ok {
		t.Fatalf("volume %q is not declared under volumes, so it is a bind mount of a host path", volume)
	}

	final := loadDockerfile(t).final()
	owned := false
	for _, ins := range final.instructions {
		if ins.command == "COPY" && strings.Contains(ins.args, "--chown=") && strings.HasSuffix(ins.args, " "+dir) {
			owned = true
		}
	}
	if !owned {
		t.Fatalf("the final Dockerfile stage does not create %s with COPY --chown, so the non-root user cannot write to a new volume there", dir)
	}
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
	file := loadCompose(t)
	composeAddress := file.service(t, serviceAPI).Environment["TEMPORAL_ADDRESS"]
	namespace := file.service(t, serviceAPI).Environment["TEMPORAL_NAMESPACE"]

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

	health := file.service(t, serviceTemporal).Healthcheck
	if health == nil || len(health.Test) != 2 || health.Test[0] != "CMD-SHELL" {
		t.Fatalf("temporal health check %+v, want [CMD-SHELL <command>]", health)
	}
	healthCmd := exec.CommandContext(ctx, "sh", "-c", strings.ReplaceAll(health.Test[1], composeAddress, address))
	healthCmd.Env = append(os.Environ(), pathEnv)
	if out, err := healthCmd.CombinedOutput(); err != nil {
		t.Fatalf("temporal health check failed against a running dev server: %v\n%s", err, out)
	}

	args := searchAttributeJobArgs(t, file)
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
