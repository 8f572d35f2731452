package compose

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v4"
)

// services are the compose services, which are also the folders the two Go
// services are built from.
var services = []string{"nginx", "rabbitmq", "service01", "service02"}

// repoRoot returns the repository's root folder (this package is lab/compose).
func repoRoot(tb testing.TB) string {
	tb.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		tb.Fatal(err)
	}
	return root
}

// mustEnvExample reads .env.example the way `docker compose --env-file` does.
func mustEnvExample(tb testing.TB) map[string]string {
	tb.Helper()
	env, err := dotenv.Read(filepath.Join(repoRoot(tb), ".env.example"))
	if err != nil {
		tb.Fatalf("read .env.example: %v", err)
	}
	if len(env) == 0 {
		tb.Fatal(".env.example defines no variables")
	}
	return env
}

// with returns a copy of env with the given NAME=value pairs set.
func with(env map[string]string, pairs ...string) map[string]string {
	out := maps.Clone(env)
	for _, p := range pairs {
		name, value, _ := strings.Cut(p, "=")
		out[name] = value
	}
	return out
}

// mustLoadProject loads docker-compose.yml as `docker compose` does, with env
// as the entire environment for interpolation. The test process's own
// environment is left out on purpose: a GATEWAY_PORT exported in the caller's
// shell must not change what the tests see.
func mustLoadProject(tb testing.TB, env map[string]string) *types.Project {
	tb.Helper()
	return mustLoadFiles(tb, env, "docker-compose.yml")
}

// mustLoadFiles loads compose files, each merged into the ones before it, as
// `docker compose -f ... -f ...` does.
func mustLoadFiles(tb testing.TB, env map[string]string, files ...string) *types.Project {
	tb.Helper()
	root := repoRoot(tb)
	var pairs []string
	for name, value := range env {
		pairs = append(pairs, name+"="+value)
	}
	var paths []string
	for _, f := range files {
		paths = append(paths, filepath.Join(root, f))
	}
	opts, err := cli.NewProjectOptions(
		paths,
		cli.WithWorkingDirectory(root),
		cli.WithEnv(pairs),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		tb.Fatal(err)
	}
	project, err := opts.LoadProject(tb.Context())
	if err != nil {
		tb.Fatalf("load %s: %v", strings.Join(files, " and "), err)
	}
	return project
}

// mustService returns a service of the project.
func mustService(tb testing.TB, p *types.Project, name string) types.ServiceConfig {
	tb.Helper()
	s, ok := p.Services[name]
	if !ok {
		tb.Fatalf("docker-compose.yml has no service %q", name)
	}
	return s
}

// containerEnv returns a service's environment as the container gets it.
func containerEnv(s types.ServiceConfig) map[string]string {
	env := make(map[string]string, len(s.Environment))
	for name, value := range s.Environment {
		if value != nil {
			env[name] = *value
		} else {
			env[name] = ""
		}
	}
	return env
}

func TestServices(t *testing.T) {
	p := mustLoadProject(t, mustEnvExample(t))
	if got := slices.Sorted(maps.Keys(p.Services)); !slices.Equal(got, services) {
		t.Errorf("services = %v, want %v", got, services)
	}
	if p.Name != "pingpong" {
		t.Errorf("project name = %q, want pingpong (volume names derive from it)", p.Name)
	}
	for _, name := range services {
		if got := mustService(t, p, name).Restart; got != types.RestartPolicyUnlessStopped {
			t.Errorf("%s: restart = %q, want %q", name, got, types.RestartPolicyUnlessStopped)
		}
	}
	if got := mustService(t, p, "rabbitmq").Hostname; got != "rabbitmq" {
		t.Errorf("rabbitmq: hostname = %q, want a fixed %q: the node's name and its data folder derive from it", got, "rabbitmq")
	}
	// As root, the healthcheck's CLI may write the Erlang cookie before the
	// server does, owned by root, and the server dies on it (eacces).
	if got := mustService(t, p, "rabbitmq").User; got != "rabbitmq" {
		t.Errorf("rabbitmq: user = %q, want %q: the server, its healthcheck and docker compose exec must share one user, or a healthcheck run as root can leave an Erlang cookie the server cannot read", got, "rabbitmq")
	}
}

func TestNoVersionKey(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]any
	if err := yaml.Unmarshal(data, &top); err != nil {
		t.Fatal(err)
	}
	if len(top) == 0 {
		t.Fatal("docker-compose.yml is empty")
	}
	// The Compose specification has no version; `docker compose` warns
	// that it is obsolete.
	if _, ok := top["version"]; ok {
		t.Error("docker-compose.yml has a top-level version key; remove it")
	}
}

func TestImagesAndBuilds(t *testing.T) {
	root := repoRoot(t)
	p := mustLoadProject(t, mustEnvExample(t))
	images := map[string]string{
		"rabbitmq": "rabbitmq:4.3-management",
		"nginx":    "nginx:1.30-alpine",
	}
	for name, want := range images {
		s := mustService(t, p, name)
		if s.Image != want {
			t.Errorf("%s: image = %q, want %q", name, s.Image, want)
		}
		if s.Build != nil {
			t.Errorf("%s: has a build section; it runs the official image", name)
		}
	}
	for _, name := range []string{"service01", "service02"} {
		s := mustService(t, p, name)
		if s.Build == nil {
			t.Errorf("%s: no build section", name)
			continue
		}
		if want := filepath.Join(root, name); s.Build.Context != want {
			t.Errorf("%s: build context = %q, want %q (the module alone)", name, s.Build.Context, want)
		}
		if s.Build.Dockerfile != "Dockerfile" {
			t.Errorf("%s: dockerfile = %q, want Dockerfile", name, s.Build.Dockerfile)
		}
		if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestHealthchecks(t *testing.T) {
	p := mustLoadProject(t, mustEnvExample(t))
	gatewayPort := mustEnvExample(t)["GATEWAY_PORT"]
	tests := []struct {
		service string
		test    []string
		// minTimeout is what the command itself may take.
		minTimeout time.Duration
	}{
		{"rabbitmq", []string{"CMD", "rabbitmq-diagnostics", "-q", "ping"}, 5 * time.Second},
		// -healthcheck waits up to 2 s for /readyz.
		{"service01", []string{"CMD", "/service01", "-healthcheck"}, 3 * time.Second},
		{"service02", []string{"CMD", "/service02", "-healthcheck"}, 3 * time.Second},
		{"nginx", []string{"CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:" + gatewayPort + "/healthz"}, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.service, func(t *testing.T) {
			hc := mustService(t, p, tt.service).HealthCheck
			if hc == nil || hc.Disable {
				t.Fatal("no healthcheck")
			}
			if !slices.Equal(hc.Test, tt.test) {
				t.Errorf("test = %q, want %q", hc.Test, tt.test)
			}
			if hc.Interval == nil || hc.Timeout == nil || hc.StartPeriod == nil || hc.Retries == nil {
				t.Fatalf("interval, timeout, start_period and retries must all be set: %+v", hc)
			}
			if got := time.Duration(*hc.Timeout); got < tt.minTimeout {
				t.Errorf("timeout = %v, want at least %v", got, tt.minTimeout)
			}
			if *hc.Timeout > *hc.Interval {
				t.Errorf("timeout %v exceeds interval %v", *hc.Timeout, *hc.Interval)
			}
			// Docker Engine 20.10 (Debian 12's docker.io) refuses to
			// create any container of a file that sets start_interval.
			if hc.StartInterval != nil {
				t.Errorf("start_interval is set: Docker Engines before 25 refuse the file")
			}
		})
	}
}

func TestDependsOn(t *testing.T) {
	p := mustLoadProject(t, mustEnvExample(t))
	type dep struct {
		condition string
		restart   bool
	}
	healthy := types.ServiceConditionHealthy
	want := map[string]map[string]dep{
		"rabbitmq":  {},
		"service01": {"rabbitmq": {healthy, false}},
		"service02": {"rabbitmq": {healthy, false}},
		// nginx resolves the services' addresses once, at start: it must
		// restart with them.
		"nginx": {"service01": {healthy, true}, "service02": {healthy, true}},
	}
	for name, wantDeps := range want {
		got := map[string]dep{}
		for on, d := range mustService(t, p, name).DependsOn {
			if !d.Required {
				t.Errorf("%s: depends_on %s is not required", name, on)
			}
			got[on] = dep{d.Condition, d.Restart}
		}
		if !maps.Equal(got, wantDeps) {
			t.Errorf("%s: depends_on = %+v, want %+v", name, got, wantDeps)
		}
	}
}

// port is a published port: host address and port, container port.
type port struct {
	hostIP    string
	published string
	target    uint32
}

func ports(s types.ServiceConfig) []port {
	var out []port
	for _, p := range s.Ports {
		if p.Protocol != "tcp" {
			continue
		}
		out = append(out, port{p.HostIP, p.Published, p.Target})
	}
	slices.SortFunc(out, func(a, b port) int { return int(a.target) - int(b.target) })
	return out
}

func TestPorts(t *testing.T) {
	env := mustEnvExample(t)
	p := mustLoadProject(t, env)
	// Published only on the host's loopback: the lab's login is well known.
	want := map[string][]port{
		"rabbitmq": {
			{"127.0.0.1", env["RABBITMQ_PORT"], 5672},
			{"127.0.0.1", env["RABBITMQ_MANAGEMENT_PORT"], 15672},
		},
		"nginx": {{"127.0.0.1", env["GATEWAY_PORT"], mustPort(t, env["GATEWAY_PORT"])}},
		// Clients use the gateway; the tutorial also reads each service's
		// /readyz and /metrics on its own port, as natively.
		"service01": {{"127.0.0.1", env["SERVICE01_PORT"], 8001}},
		"service02": {{"127.0.0.1", env["SERVICE02_PORT"], 8002}},
	}
	for name, wantPorts := range want {
		s := mustService(t, p, name)
		if got := ports(s); !slices.Equal(got, wantPorts) {
			t.Errorf("%s: ports = %+v, want %+v", name, got, wantPorts)
		}
		if len(s.Ports) != len(wantPorts) {
			t.Errorf("%s: %d ports published, want %d", name, len(s.Ports), len(wantPorts))
		}
	}
}

func mustPort(tb testing.TB, s string) uint32 {
	tb.Helper()
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		tb.Fatalf("port %q: %v", s, err)
	}
	return uint32(n)
}

// mount is a service's volume, as the test cares about it.
type mount struct {
	typ, source, target string
	readOnly            bool
	createHostPath      bool
}

func TestVolumes(t *testing.T) {
	root := repoRoot(t)
	p := mustLoadProject(t, mustEnvExample(t))
	bind := func(source, target string) mount {
		// Read-only, and a missing source is an error rather than an
		// empty directory silently created in its place.
		return mount{types.VolumeTypeBind, filepath.Join(root, source), target, true, false}
	}
	want := map[string][]mount{
		"rabbitmq": {
			bind("rabbitmq/rabbitmq.conf", "/etc/rabbitmq/rabbitmq.conf"),
			bind("rabbitmq/enabled_plugins", "/etc/rabbitmq/enabled_plugins"),
			{types.VolumeTypeVolume, "rabbitmq-data", "/var/lib/rabbitmq", false, false},
		},
		// As default.conf.template, the rendered gateway replaces the
		// image's default server.
		"nginx": {
			bind("nginx/templates/gateway.conf.template", "/etc/nginx/templates/default.conf.template"),
		},
		"service01": nil,
		"service02": nil,
	}
	for name, wantMounts := range want {
		var got []mount
		for _, v := range mustService(t, p, name).Volumes {
			m := mount{v.Type, v.Source, v.Target, v.ReadOnly, false}
			if v.Bind != nil {
				m.createHostPath = bool(v.Bind.CreateHostPath)
			}
			got = append(got, m)
			if v.Type == types.VolumeTypeBind {
				if fi, err := os.Stat(v.Source); err != nil || !fi.Mode().IsRegular() {
					t.Errorf("%s: bind source %s is not a file in the repository", name, v.Source)
				}
			}
		}
		if !slices.Equal(got, wantMounts) {
			t.Errorf("%s: volumes =\n%+v\nwant\n%+v", name, got, wantMounts)
		}
	}
	vol, ok := p.Volumes["rabbitmq-data"]
	if !ok {
		t.Fatalf("no top-level volume rabbitmq-data; volumes: %v", slices.Collect(maps.Keys(p.Volumes)))
	}
	if bool(vol.External) {
		t.Error("rabbitmq-data is external; compose should own it (down -v deletes it)")
	}
	if len(p.Volumes) != 1 {
		t.Errorf("volumes = %v, want only rabbitmq-data", slices.Collect(maps.Keys(p.Volumes)))
	}
}

// TestDefaultsAreEnvExample checks that every ${VAR:-default} in the compose
// files falls back to .env.example's value: the lab, and the cluster, run
// the same with no .env.
func TestDefaultsAreEnvExample(t *testing.T) {
	for i := range composeFiles {
		files := composeFiles[:i+1]
		withExample, err := mustLoadFiles(t, mustEnvExample(t), files...).MarshalYAML()
		if err != nil {
			t.Fatal(err)
		}
		withNothing, err := mustLoadFiles(t, map[string]string{}, files...).MarshalYAML()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(withExample, withNothing) {
			t.Errorf("%s loaded with .env.example differs from the same loaded with no environment: a ${VAR:-default} default differs from .env.example\n%s",
				strings.Join(files, " and "), lineDiff(string(withExample), string(withNothing)))
		}
	}
}

// lineDiff lists the lines of a and b that differ, position by position; good
// enough to point at a changed value in two otherwise identical documents.
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out strings.Builder
	for i := range max(len(al), len(bl)) {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			fmt.Fprintf(&out, "- %s\n+ %s\n", x, y)
		}
	}
	return out.String()
}

// TestSettingsReachContainers changes variables the way a .env would and
// checks where each one lands, including those that deliberately do not
// reach the containers.
func TestSettingsReachContainers(t *testing.T) {
	example := mustEnvExample(t)
	tests := []struct {
		name  string
		set   []string
		check func(t *testing.T, p *types.Project)
	}{
		{
			name: "gateway port",
			set:  []string{"GATEWAY_PORT=9000"},
			check: func(t *testing.T, p *types.Project) {
				nginx := mustService(t, p, "nginx")
				wantEnv(t, nginx, "GATEWAY_LISTEN", "9000")
				if got, want := ports(nginx), []port{{"127.0.0.1", "9000", 9000}}; !slices.Equal(got, want) {
					t.Errorf("nginx ports = %+v, want %+v", got, want)
				}
				if hc := nginx.HealthCheck.Test; !strings.Contains(strings.Join(hc, " "), "127.0.0.1:9000/") {
					t.Errorf("nginx healthcheck %q does not follow GATEWAY_PORT", hc)
				}
			},
		},
		{
			// As natively, the gateway listens on the loopback unless
			// GATEWAY_ADDRESS opens it; inside the container it listens
			// on every interface, as Docker's port forwarding needs.
			name: "gateway address",
			set:  []string{"GATEWAY_ADDRESS=0.0.0.0"},
			check: func(t *testing.T, p *types.Project) {
				nginx := mustService(t, p, "nginx")
				gp := example["GATEWAY_PORT"]
				if got, want := ports(nginx), []port{{"0.0.0.0", gp, mustPort(t, gp)}}; !slices.Equal(got, want) {
					t.Errorf("nginx ports = %+v, want %+v", got, want)
				}
				wantEnv(t, nginx, "GATEWAY_LISTEN", gp)
				for _, name := range []string{"rabbitmq", "service01", "service02"} {
					for _, pt := range ports(mustService(t, p, name)) {
						if pt.hostIP != "127.0.0.1" {
							t.Errorf("%s is published on %s: GATEWAY_ADDRESS opens the gateway only", name, pt.hostIP)
						}
					}
				}
			},
		},
		{
			// The service ports move the published ports; inside the
			// network the services stay on 8001 and 8002.
			name: "service ports",
			set:  []string{"SERVICE01_PORT=9001", "SERVICE02_PORT=9002"},
			check: func(t *testing.T, p *types.Project) {
				for name, want := range map[string]port{"service01": {"127.0.0.1", "9001", 8001}, "service02": {"127.0.0.1", "9002", 8002}} {
					s := mustService(t, p, name)
					if got := ports(s); !slices.Equal(got, []port{want}) {
						t.Errorf("%s ports = %+v, want %+v", name, got, want)
					}
				}
				wantEnv(t, mustService(t, p, "service01"), "SERVICE01_PORT", "8001")
				wantEnv(t, mustService(t, p, "service02"), "SERVICE02_PORT", "8002")
				wantEnv(t, mustService(t, p, "nginx"), "SERVICE01_ADDR", "service01:8001")
				wantEnv(t, mustService(t, p, "nginx"), "SERVICE02_ADDR", "service02:8002")
			},
		},
		{
			// RABBITMQ_PORT moves the published port; inside the compose
			// network the broker stays on 5672.
			name: "AMQP port",
			set:  []string{"RABBITMQ_PORT=5673"},
			check: func(t *testing.T, p *types.Project) {
				got := ports(mustService(t, p, "rabbitmq"))
				if len(got) == 0 || got[0] != (port{"127.0.0.1", "5673", 5672}) {
					t.Errorf("rabbitmq ports = %+v, want 127.0.0.1:5673 -> 5672 first", got)
				}
				for _, s := range []string{"service01", "service02"} {
					wantEnv(t, mustService(t, p, s), "RABBITMQ_PORT", "5672")
					wantEnv(t, mustService(t, p, s), "RABBITMQ_HOST", "rabbitmq")
				}
			},
		},
		{
			name: "management port",
			set:  []string{"RABBITMQ_MANAGEMENT_PORT=15673"},
			check: func(t *testing.T, p *types.Project) {
				got := ports(mustService(t, p, "rabbitmq"))
				if len(got) != 2 || got[1] != (port{"127.0.0.1", "15673", 15672}) {
					t.Errorf("rabbitmq ports = %+v, want 127.0.0.1:15673 -> 15672 second", got)
				}
			},
		},
		{
			// Containers listen on every interface whatever .env says.
			name: "listen host",
			set:  []string{"LISTEN_HOST=127.0.0.1"},
			check: func(t *testing.T, p *types.Project) {
				wantEnv(t, mustService(t, p, "service01"), "LISTEN_HOST", "")
				wantEnv(t, mustService(t, p, "service02"), "LISTEN_HOST", "")
			},
		},
		{
			name: "login and virtual host",
			set:  []string{"RABBITMQ_DEFAULT_USER=alice", "RABBITMQ_DEFAULT_PASS=s3cret", "RABBITMQ_VHOST=lab"},
			check: func(t *testing.T, p *types.Project) {
				rabbit := mustService(t, p, "rabbitmq")
				wantEnv(t, rabbit, "RABBITMQ_DEFAULT_USER", "alice")
				wantEnv(t, rabbit, "RABBITMQ_DEFAULT_PASS", "s3cret")
				wantEnv(t, rabbit, "RABBITMQ_DEFAULT_VHOST", "lab")
				for _, s := range []string{"service01", "service02"} {
					wantEnv(t, mustService(t, p, s), "RABBITMQ_DEFAULT_USER", "alice")
					wantEnv(t, mustService(t, p, s), "RABBITMQ_DEFAULT_PASS", "s3cret")
					wantEnv(t, mustService(t, p, s), "RABBITMQ_VHOST", "lab")
				}
			},
		},
		{
			name: "topology",
			set:  []string{"RABBITMQ_QUEUE_TYPE=classic", "RABBITMQ_QUEUE=q2", "RABBITMQ_DELIVERY_LIMIT=9"},
			check: func(t *testing.T, p *types.Project) {
				for _, s := range []string{"service01", "service02"} {
					wantEnv(t, mustService(t, p, s), "RABBITMQ_QUEUE_TYPE", "classic")
					wantEnv(t, mustService(t, p, s), "RABBITMQ_QUEUE", "q2")
					wantEnv(t, mustService(t, p, s), "RABBITMQ_DELIVERY_LIMIT", "9")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, mustLoadProject(t, with(example, tt.set...)))
		})
	}
}

func wantEnv(tb testing.TB, s types.ServiceConfig, name, want string) {
	tb.Helper()
	got, ok := containerEnv(s)[name]
	if !ok {
		tb.Errorf("%s: %s is not set", s.Name, name)
		return
	}
	if got != want {
		tb.Errorf("%s: %s = %q, want %q", s.Name, name, got, want)
	}
}
