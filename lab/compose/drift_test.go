package compose

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"pingpong/lab/configvars"
)

// mustConfigVars returns the variables the config structs of the Go
// package in dir read.
func mustConfigVars(tb testing.TB, dir string) map[string]configvars.Var {
	tb.Helper()
	vars, err := configvars.Read(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return vars
}

// composeFiles are the lab's compose files: the lab, and the cluster
// override on top of it.
var composeFiles = []string{"docker-compose.yml", "docker-compose.cluster.yml"}

// composeReferences returns the names of the variables the compose files
// interpolate (${NAME...}), comments aside.
func composeReferences(tb testing.TB) map[string]bool {
	tb.Helper()
	re := regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)`)
	refs := map[string]bool{}
	for _, f := range composeFiles {
		data, err := os.ReadFile(filepath.Join(repoRoot(tb), f))
		if err != nil {
			tb.Fatal(err)
		}
		for line := range strings.Lines(string(data)) {
			if strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			for _, m := range re.FindAllStringSubmatch(line, -1) {
				refs[m[1]] = true
			}
		}
	}
	return refs
}

// networkSettings are the service variables the compose file sets to what
// the container network requires, whatever .env says.
var networkSettings = map[string]string{
	"RABBITMQ_HOST": "rabbitmq", // the broker's service name
	"RABBITMQ_PORT": "5672",     // its port inside the network; .env's is published on the host
	// One broker: RABBITMQ_HOST.
	"RABBITMQ_ADDRESSES": "",
	"LISTEN_HOST":        "", // every interface, so nginx can connect
	// The services' ports inside the network; .env's are published on the host.
	"SERVICE01_PORT": "8001",
	"SERVICE02_PORT": "8002",
}

// TestConfigDrift keeps the services' config structs, .env.example and the
// compose file in step: every variable a service reads is documented with
// its default, passed to that service's container, and nothing else is.
func TestConfigDrift(t *testing.T) {
	root := repoRoot(t)
	example := mustEnvExample(t)
	p := mustLoadProject(t, example)
	for _, name := range []string{"service01", "service02"} {
		t.Run(name, func(t *testing.T) {
			vars := mustConfigVars(t, filepath.Join(root, name))
			for _, v := range slices.Sorted(maps.Keys(vars)) {
				cv := vars[v]
				want, ok := example[v]
				if !ok {
					t.Errorf("%s: %s is not in .env.example; document it there with its default", cv.Pos, v)
					continue
				}
				// The native lab runs with no .env, so the struct's
				// default is the documented one.
				if cv.Default != want {
					how := `envDefault:"` + cv.Default + `"`
					if !cv.HasDefault {
						how = "no envDefault"
					}
					t.Errorf("%s: %s has %s, but .env.example says %q", cv.Pos, v, how, want)
				}
			}

			env := containerEnv(mustService(t, p, name))
			for _, v := range slices.Sorted(maps.Keys(vars)) {
				got, ok := env[v]
				if !ok {
					t.Errorf("docker-compose.yml does not pass %s to %s", v, name)
					continue
				}
				want, fixed := networkSettings[v]
				if !fixed {
					want = example[v]
				}
				if got != want {
					t.Errorf("%s gets %s=%q from compose, want %q", name, v, got, want)
				}
			}
			for _, v := range slices.Sorted(maps.Keys(env)) {
				if _, ok := vars[v]; !ok {
					t.Errorf("docker-compose.yml passes %s to %s, whose config does not read it", v, name)
				}
			}
		})
	}
}

// TestEveryVariableIsUsed checks the other direction: each variable in
// .env.example is read by a service, by the native runner (lab/runner/config.go)
// or by the compose file, and the compose file interpolates only documented
// variables.
func TestEveryVariableIsUsed(t *testing.T) {
	root := repoRoot(t)
	example := mustEnvExample(t)
	used := composeReferences(t)
	if len(used) == 0 {
		t.Fatal("docker-compose.yml interpolates no variable")
	}
	// The native runner's own settings (the ports it binds, the gateway's
	// rate limit it renders) are read by its config struct like the
	// services' are.
	for _, dir := range []string{"service01", "service02", filepath.Join("lab", "runner")} {
		for v := range mustConfigVars(t, filepath.Join(root, dir)) {
			used[v] = true
		}
	}
	for _, v := range slices.Sorted(maps.Keys(example)) {
		if !used[v] {
			t.Errorf(".env.example documents %s, but no service, neither the native runner nor docker-compose.yml uses it", v)
		}
	}
	for _, v := range slices.Sorted(maps.Keys(composeReferences(t))) {
		if _, ok := example[v]; !ok {
			t.Errorf("a compose file interpolates ${%s}, which .env.example does not document", v)
		}
	}
}
