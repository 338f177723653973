package deploytest

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"

	"github.com/aihigress/aihigress/workflows"
)

// The check functions below take a project loaded by compose-go and return
// every problem they find, each naming its service. They return errors
// instead of failing a test so that TestComposeChecksRejectBrokenFiles can
// run them on broken copies of the file.

// Services of the Compose file that the checks name.
const (
	serviceAPI              = "serve"
	serviceWorker           = "worker"
	serviceMigrate          = "migrate"
	serviceSearchAttributes = "temporal-search-attributes"
	serviceTemporal         = "temporal"
	serviceTemporalUI       = "temporal-ui"
	servicePostgres         = "postgresql"
	serviceRedis            = "redis"
)

// oneShot reports whether the service is a job that runs once and exits.
func oneShot(svc types.ServiceConfig) bool { return svc.Restart == types.RestartPolicyNo }

// envValue returns the value of key in the service's environment, or "" when
// the key is absent or has no value.
func envValue(svc types.ServiceConfig, key string) string {
	if value := svc.Environment[key]; value != nil {
		return *value
	}
	return ""
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

// checkImagesPinned requires a version tag or a digest on every image. It
// needs the raw project, because a ${VAR} reference in an image is only
// visible before interpolation.
func checkImagesPinned(raw *types.Project) []error {
	var errs []error
	for _, name := range raw.ServiceNames() {
		if err := checkImagePinned(raw.Services[name]); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errs
}

func checkImagePinned(svc types.ServiceConfig) error {
	if svc.Image == "" {
		return errors.New("no image")
	}
	if strings.Contains(svc.Image, "$") {
		return fmt.Errorf("image %q comes from a variable, so its version is not pinned in the file", svc.Image)
	}
	_, tag, digest := splitImage(svc.Image)
	if tag == "latest" {
		return fmt.Errorf("image %q uses the tag latest", svc.Image)
	}
	if tag == "" && digest == "" {
		return fmt.Errorf("image %q has no tag", svc.Image)
	}
	// A service built from the Dockerfile names the local result, and the
	// Dockerfile pins its own base images.
	if svc.Build != nil || digest != "" {
		return nil
	}
	if !versionTag.MatchString(tag) {
		return fmt.Errorf("image %q: tag %q is not a version such as 16.6 or 1.29.1", svc.Image, tag)
	}
	return nil
}

// checkHealthchecks requires a health check on every long-running service.
// entrypoint is the exec-form ENTRYPOINT of the image that the Dockerfile
// builds, which has no shell.
func checkHealthchecks(p *types.Project, entrypoint []string) []error {
	var errs []error
	for _, name := range p.ServiceNames() {
		svc := p.Services[name]
		if oneShot(svc) {
			continue
		}
		hc := svc.HealthCheck
		if hc == nil || hc.Disable || len(hc.Test) < 2 {
			errs = append(errs, fmt.Errorf("%s: long-running service has no health check: %+v", name, hc))
			continue
		}
		if hc.Test[0] != "CMD" && hc.Test[0] != "CMD-SHELL" {
			errs = append(errs, fmt.Errorf("%s: health check test starts with %q, want CMD or CMD-SHELL", name, hc.Test[0]))
			continue
		}
		if svc.Build == nil {
			continue
		}
		if hc.Test[0] != "CMD" || hc.Test[1] != entrypoint[0] || !slices.Contains(hc.Test, "healthcheck") {
			errs = append(errs, fmt.Errorf("%s: health check %q, want [CMD %s healthcheck ...] because the image has no shell", name, hc.Test, entrypoint[0]))
		}
	}
	return errs
}

// checkHealthcheckCommands checks the arguments of the serve and worker
// health checks, and that the API listens where its health check looks.
func checkHealthcheckCommands(p *types.Project) []error {
	tests := []struct {
		service string
		want    []string
	}{
		{service: serviceAPI, want: []string{"healthcheck", "http://127.0.0.1:8080/healthz"}},
		{service: serviceWorker, want: []string{"healthcheck", "-worker"}},
	}
	var errs []error
	for _, tt := range tests {
		svc, err := p.GetService(tt.service)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if svc.HealthCheck == nil || len(svc.HealthCheck.Test) < 2 {
			errs = append(errs, fmt.Errorf("%s: no health check command: %+v", tt.service, svc.HealthCheck))
			continue
		}
		if got := svc.HealthCheck.Test[2:]; !slices.Equal(got, tt.want) {
			errs = append(errs, fmt.Errorf("%s: health check arguments %q, want %q", tt.service, got, tt.want))
		}
	}

	api, err := p.GetService(serviceAPI)
	if err != nil {
		return append(errs, err)
	}
	if addr := envValue(api, "HTTP_ADDR"); addr != "0.0.0.0:8080" {
		errs = append(errs, fmt.Errorf("%s: HTTP_ADDR = %q, want 0.0.0.0:8080 to match the health check and the published port", serviceAPI, addr))
	}
	return errs
}

// startOrder lists pairs of services where Compose must start or finish the
// first before it starts the second, through depends_on directly or through
// the services in between.
var startOrder = []struct{ first, then string }{
	{first: servicePostgres, then: serviceTemporal},
	{first: serviceTemporal, then: serviceTemporalUI},
	{first: serviceTemporal, then: serviceSearchAttributes},
	{first: servicePostgres, then: serviceMigrate},
	{first: servicePostgres, then: serviceAPI},
	{first: serviceRedis, then: serviceAPI},
	{first: serviceTemporal, then: serviceAPI},
	{first: serviceMigrate, then: serviceAPI},
	{first: serviceSearchAttributes, then: serviceAPI},
	{first: servicePostgres, then: serviceWorker},
	{first: serviceRedis, then: serviceWorker},
	{first: serviceTemporal, then: serviceWorker},
	{first: serviceMigrate, then: serviceWorker},
	{first: serviceSearchAttributes, then: serviceWorker},
}

// dependsOn reports whether service reaches target through depends_on,
// directly or through other services.
func dependsOn(p *types.Project, service, target string) bool {
	seen := map[string]bool{}
	stack := []string{service}
	for len(stack) > 0 {
		name := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for dep := range p.Services[name].DependsOn {
			if dep == target {
				return true
			}
			if !seen[dep] {
				seen[dep] = true
				stack = append(stack, dep)
			}
		}
	}
	return false
}

// checkDependencies checks the condition of every depends_on entry, that
// every one-shot job is awaited, and the start order. compose-go has already
// rejected unknown services and dependency cycles while loading.
func checkDependencies(p *types.Project) []error {
	var errs []error
	completedTargets := map[string]bool{}
	for _, name := range p.ServiceNames() {
		deps := p.Services[name].DependsOn
		for _, target := range slices.Sorted(maps.Keys(deps)) {
			dep := deps[target]
			targetSvc, ok := p.Services[target]
			if !ok {
				errs = append(errs, fmt.Errorf("%s depends on the missing service %q", name, target))
				continue
			}
			switch dep.Condition {
			case types.ServiceConditionCompletedSuccessfully:
				completedTargets[target] = true
				if !oneShot(targetSvc) {
					errs = append(errs, fmt.Errorf("%s waits for %s to complete, but %s has restart %q instead of \"no\"", name, target, target, targetSvc.Restart))
				}
			case types.ServiceConditionHealthy:
				if targetSvc.HealthCheck == nil || targetSvc.HealthCheck.Disable {
					errs = append(errs, fmt.Errorf("%s waits for %s to be healthy, but %s has no health check", name, target, target))
				}
			default:
				errs = append(errs, fmt.Errorf("%s depends on %s with condition %q, want service_healthy or service_completed_successfully", name, target, dep.Condition))
			}
		}
	}
	for _, name := range p.ServiceNames() {
		if oneShot(p.Services[name]) && !completedTargets[name] {
			errs = append(errs, fmt.Errorf("one-shot job %s is not awaited by any service with service_completed_successfully", name))
		}
	}

	jobs := []struct{ dependent, job string }{
		{dependent: serviceAPI, job: serviceMigrate},
		{dependent: serviceAPI, job: serviceSearchAttributes},
		{dependent: serviceWorker, job: serviceMigrate},
		{dependent: serviceWorker, job: serviceSearchAttributes},
	}
	for _, tt := range jobs {
		dep, ok := p.Services[tt.dependent].DependsOn[tt.job]
		if !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
			errs = append(errs, fmt.Errorf("%s depends on %s with %+v (present: %v), want condition service_completed_successfully", tt.dependent, tt.job, dep, ok))
		}
	}

	for _, pair := range startOrder {
		if !dependsOn(p, pair.then, pair.first) {
			errs = append(errs, fmt.Errorf("%s does not depend on %s, directly or through other services, so Compose may start it first", pair.then, pair.first))
		}
	}
	return errs
}

func checkMigrateJob(p *types.Project) []error {
	migrate, err := p.GetService(serviceMigrate)
	if err != nil {
		return []error{err}
	}
	api, err := p.GetService(serviceAPI)
	if err != nil {
		return []error{err}
	}
	var errs []error
	if !slices.Equal(migrate.Command, types.ShellCommand{"migrate"}) {
		errs = append(errs, fmt.Errorf("migrate command %q, want [migrate]", migrate.Command))
	}
	if !oneShot(migrate) {
		errs = append(errs, fmt.Errorf("migrate restart %q, want \"no\"", migrate.Restart))
	}
	if migrate.Image != api.Image {
		errs = append(errs, fmt.Errorf("migrate image %q, want the serve image %q", migrate.Image, api.Image))
	}
	if dep := migrate.DependsOn[servicePostgres]; dep.Condition != types.ServiceConditionHealthy {
		errs = append(errs, fmt.Errorf("migrate depends on postgresql with %+v, want service_healthy", dep))
	}
	return errs
}

func checkPortsOnLoopback(p *types.Project) []error {
	var errs []error
	for _, name := range p.ServiceNames() {
		for _, port := range p.Services[name].Ports {
			if port.HostIP != "127.0.0.1" || port.Published == "" {
				errs = append(errs, fmt.Errorf("%s publishes container port %d on %q port %q, want 127.0.0.1 and a fixed host port", name, port.Target, port.HostIP, port.Published))
			}
		}
	}
	for _, name := range []string{servicePostgres, serviceRedis} {
		if len(p.Services[name].Ports) == 0 {
			errs = append(errs, fmt.Errorf("%s has no published port, but the README promises one on 127.0.0.1", name))
		}
	}
	return errs
}

// hostPortCount returns how many host ports a published port such as 8080
// or 8080-8081 covers.
func hostPortCount(published string) (int, error) {
	first, last, isRange := strings.Cut(published, "-")
	if !isRange {
		if _, err := strconv.Atoi(first); err != nil {
			return 0, err
		}
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

// wantReplicas is the number of serve and worker containers that the file
// starts, enough to show that neither keeps state in one process.
const wantReplicas = 2

func checkReplicas(p *types.Project) []error {
	var errs []error
	for _, name := range []string{serviceAPI, serviceWorker} {
		svc, err := p.GetService(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if svc.Deploy == nil || svc.Deploy.Replicas == nil {
			errs = append(errs, fmt.Errorf("%s: deploy.replicas is not set, want %d", name, wantReplicas))
			continue
		}
		replicas := svc.GetScale()
		if replicas != wantReplicas {
			errs = append(errs, fmt.Errorf("%s: %d replicas, want %d", name, replicas, wantReplicas))
		}
		// compose-go rejects container_name together with more than one
		// replica, so this only fires when the replica count is wrong too.
		if svc.ContainerName != "" {
			errs = append(errs, fmt.Errorf("%s: container_name %q is set, so a second replica cannot start", name, svc.ContainerName))
		}
		// Each replica takes one host port, so a range must be at least as
		// wide as the number of replicas.
		for _, port := range svc.Ports {
			count, err := hostPortCount(port.Published)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: published port %q: %w", name, port.Published, err))
				continue
			}
			if count < replicas {
				errs = append(errs, fmt.Errorf("%s: published port %q covers %d host ports for %d replicas", name, port.Published, count, replicas))
			}
		}
	}
	return errs
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

// searchAttributeJobArgs returns the entrypoint and command of the search
// attribute job as one argument list.
func searchAttributeJobArgs(p *types.Project) ([]string, error) {
	job, err := p.GetService(serviceSearchAttributes)
	if err != nil {
		return nil, err
	}
	return append(slices.Clone(job.Entrypoint), job.Command...), nil
}

func checkSearchAttributeJob(p *types.Project) []error {
	args, err := searchAttributeJobArgs(p)
	if err != nil {
		return []error{err}
	}
	flags, positional := parseLongFlags(args)

	if want := []string{"temporal", "operator", "search-attribute", "create"}; !slices.Equal(positional, want) {
		return []error{fmt.Errorf("job runs %q, want %q with flags", positional, want)}
	}

	var errs []error
	names := flags["name"]
	if len(names) != len(workflows.SearchAttributeNames) {
		errs = append(errs, fmt.Errorf("job registers %d attributes %q, want the %d of workflows.SearchAttributeNames %q",
			len(names), names, len(workflows.SearchAttributeNames), workflows.SearchAttributeNames))
	}
	for _, want := range workflows.SearchAttributeNames {
		if !slices.Contains(names, want) {
			errs = append(errs, fmt.Errorf("job does not register %s", want))
		}
	}
	for _, got := range names {
		if !slices.Contains(workflows.SearchAttributeNames, got) {
			errs = append(errs, fmt.Errorf("job registers %s, which is not in workflows.SearchAttributeNames", got))
		}
	}

	attributeTypes := flags["type"]
	if len(attributeTypes) != len(names) {
		errs = append(errs, fmt.Errorf("job has %d --type flags for %d --name flags", len(attributeTypes), len(names)))
	} else {
		for i, typ := range attributeTypes {
			if typ != "Keyword" {
				errs = append(errs, fmt.Errorf("attribute %s has type %q, want Keyword", names[i], typ))
			}
		}
	}

	api := p.Services[serviceAPI]
	if got, want := flags["namespace"], envValue(api, "TEMPORAL_NAMESPACE"); !slices.Equal(got, []string{want}) {
		errs = append(errs, fmt.Errorf("job namespace %q, want the TEMPORAL_NAMESPACE %q of serve", got, want))
	}
	if got, want := flags["address"], envValue(api, "TEMPORAL_ADDRESS"); !slices.Equal(got, []string{want}) {
		errs = append(errs, fmt.Errorf("job address %q, want the TEMPORAL_ADDRESS %q of serve", got, want))
	}
	return errs
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

// requiredSecrets must be set by the operator, because the services cannot
// share them or keep them across restarts otherwise.
var requiredSecrets = []string{"JWT_SECRET", "MASTER_KEY", "ADMIN_PASSWORD", "POSTGRES_PASSWORD", "POSTGRES_PWD"}

// checkSecretsReferenced requires a ${VAR} reference for every secret in an
// environment. It needs the raw project, because interpolation replaces the
// references.
func checkSecretsReferenced(raw *types.Project) []error {
	var errs []error
	for _, name := range raw.ServiceNames() {
		svc := raw.Services[name]
		for _, key := range slices.Sorted(maps.Keys(svc.Environment)) {
			value := envValue(svc, key)
			if secretKey.MatchString(key) && !variableReference.MatchString(value) {
				errs = append(errs, fmt.Errorf("%s: %s = %q, want a variable reference such as ${%s:?message}", name, key, value, key))
			}
			if slices.Contains(requiredSecrets, key) && !requiredReference.MatchString(value) {
				errs = append(errs, fmt.Errorf("%s: %s = %q, want ${%s:?message} so that Compose stops when it is unset", name, key, value, key))
			}
			if m := urlPassword.FindStringSubmatch(value); m != nil && !requiredReference.MatchString(m[1]) {
				errs = append(errs, fmt.Errorf("%s: %s has the URL password %q, want ${VAR:?message}", name, key, m[1]))
			}
		}
	}
	return errs
}

// sharedSettings must be equal in serve, worker and migrate, because a token
// or a provider key written by one process must be readable by the others.
var sharedSettings = []string{"DATABASE_URL", "REDIS_URL", "REDIS_PREFIX", "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "JWT_SECRET", "MASTER_KEY", "IMAGE_LOCAL_DIR"}

func checkSharedSettings(p *types.Project) []error {
	var errs []error
	api := p.Services[serviceAPI]
	for _, key := range sharedSettings {
		want := envValue(api, key)
		if want == "" {
			errs = append(errs, fmt.Errorf("serve has no %s", key))
			continue
		}
		for _, name := range []string{serviceWorker, serviceMigrate} {
			if got := envValue(p.Services[name], key); got != want {
				errs = append(errs, fmt.Errorf("%s: %s = %q, want the serve value %q", name, key, got, want))
			}
		}
	}
	return errs
}

// checkSharedImageVolume checks that workers write images where the API
// replicas read them: one named volume at IMAGE_LOCAL_DIR, created by the
// final Dockerfile stage with the non-root user as owner.
func checkSharedImageVolume(p *types.Project, final dockerStage) []error {
	dir := envValue(p.Services[serviceAPI], "IMAGE_LOCAL_DIR")
	if dir == "" {
		return []error{errors.New("serve has no IMAGE_LOCAL_DIR")}
	}

	var errs []error
	volumes := map[string]string{}
	for _, name := range []string{serviceAPI, serviceWorker} {
		for _, mount := range p.Services[name].Volumes {
			if mount.Target != dir {
				continue
			}
			if mount.Type != types.VolumeTypeVolume {
				errs = append(errs, fmt.Errorf("%s mounts %s at %s as type %q, want a named volume", name, mount.Source, dir, mount.Type))
				continue
			}
			volumes[name] = mount.Source
		}
	}
	volume := volumes[serviceAPI]
	if volume == "" || volumes[serviceWorker] != volume {
		errs = append(errs, fmt.Errorf("volumes at %s: %v, want one named volume in both serve and worker", dir, volumes))
	}

	owned := false
	for _, ins := range final.instructions {
		if ins.command == "COPY" && strings.Contains(ins.args, "--chown=") && strings.HasSuffix(ins.args, " "+dir) {
			owned = true
		}
	}
	if !owned {
		errs = append(errs, fmt.Errorf("the final Dockerfile stage does not create %s with COPY --chown, so the non-root user cannot write to a new volume there", dir))
	}
	return errs
}

// temporalConfigDir is where the temporalio/auto-setup image resolves
// DYNAMIC_CONFIG_FILE_PATH values that start with config/dynamicconfig/.
const temporalConfigDir = "/etc/temporal/config/dynamicconfig"

// checkTemporalDynamicConfig checks that the Temporal service loads a
// dynamic config file from a folder that the file mounts, and that the file
// turns on eager activity execution for every namespace.
func checkTemporalDynamicConfig(p *types.Project) []error {
	svc := p.Services[serviceTemporal]
	name, ok := strings.CutPrefix(envValue(svc, "DYNAMIC_CONFIG_FILE_PATH"), "config/dynamicconfig/")
	if !ok || name == "" || strings.Contains(name, "/") {
		return []error{fmt.Errorf("%s: DYNAMIC_CONFIG_FILE_PATH = %q, want config/dynamicconfig/<file>", serviceTemporal, envValue(svc, "DYNAMIC_CONFIG_FILE_PATH"))}
	}
	source := ""
	for _, mount := range svc.Volumes {
		if mount.Target == temporalConfigDir && mount.Type == types.VolumeTypeBind {
			source = mount.Source
		}
	}
	if source == "" {
		return []error{fmt.Errorf("%s mounts no folder of the repository at %s", serviceTemporal, temporalConfigDir)}
	}

	data, err := os.ReadFile(filepath.Join(source, name))
	if err != nil {
		return []error{fmt.Errorf("%s: read its dynamic config: %w", serviceTemporal, err)}
	}
	var config map[string][]struct {
		Value       any            `yaml:"value"`
		Constraints map[string]any `yaml:"constraints"`
	}
	if err := yaml.Unmarshal(data, &config); err != nil {
		return []error{fmt.Errorf("%s: parse %s: %w", serviceTemporal, name, err)}
	}
	for _, entry := range config["system.enableActivityEagerExecution"] {
		if entry.Value == true && len(entry.Constraints) == 0 {
			return nil
		}
	}
	return []error{fmt.Errorf("%s: %s does not set system.enableActivityEagerExecution to true without constraints", serviceTemporal, name)}
}
