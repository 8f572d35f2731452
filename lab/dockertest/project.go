package dockertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// EnsureImages makes sure the engine has the four images the compose file
// and the Dockerfiles name, official or stand-ins built from the sysroot
// (standins.sh), and returns what it did, a line per image.
func EnsureImages(root, sysroot string) (string, error) {
	if sysroot == "" {
		return "", fmt.Errorf("no sysroot: make test-docker sets LAB_SYSROOT to the tree the stand-in images are built from")
	}
	if out, err := exec.Command("docker", "compose", "version", "--short").CombinedOutput(); err != nil {
		return "", fmt.Errorf("docker compose is not there (%v: %s): make test-docker installs it", err, strings.TrimSpace(string(out)))
	}
	cmd := exec.Command(filepath.Join(root, "lab", "dockertest", "standins.sh"), sysroot)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("standins.sh: %v\n%s", err, stderr.String())
	}
	return string(out), nil
}

// Project is one compose lab: docker-compose.yml under a project name of its
// own, with an environment that leaves out a developer's .env and shell.
type Project struct {
	Root    string   // the repository: docker-compose.yml's folder
	Name    string   // the compose project name
	Env     []string // the environment docker compose runs with
	envFile string
}

// NewProject makes a project named name whose docker compose commands run
// with PATH, HOME, DOCKER_* and env; COMPOSE_PROJECT_NAME and
// COMPOSE_ENV_FILES (an empty file instead of .env) are set, so a plain
// `docker compose ...` typed in that environment reaches this project.
func NewProject(root, name string, env ...string) (*Project, error) {
	f, err := os.CreateTemp("", name+"-*.env")
	if err != nil {
		return nil, err
	}
	f.Close()
	p := &Project{Root: root, Name: name, envFile: f.Name()}
	p.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"COMPOSE_PROJECT_NAME=" + name,
		"COMPOSE_ENV_FILES=" + p.envFile,
	}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DOCKER_") {
			p.Env = append(p.Env, kv)
		}
	}
	p.Env = append(p.Env, env...)
	return p, nil
}

// Compose runs docker compose for the project and returns what it printed.
func (p *Project) Compose(limit time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", append([]string{"compose", "--project-name", p.Name, "--env-file", p.envFile}, args...)...)
	cmd.Dir, cmd.Env = p.Root, p.Env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Down removes the project's containers (one-off ones too), its network,
// the brokers' volumes and the services' images: nothing of it is left,
// whether it ran one node or the cluster (docker-compose.cluster.yml).
func (p *Project) Down() error {
	out, err := p.Compose(3*time.Minute, "-f", "docker-compose.yml", "-f", "docker-compose.cluster.yml",
		"down", "--volumes", "--remove-orphans", "--rmi", "local", "--timeout", "30")
	os.Remove(p.envFile)
	if err != nil {
		return fmt.Errorf("docker compose down: %v\n%s", err, out)
	}
	return nil
}

// Logs returns the last lines of every container's log, for a failure.
func (p *Project) Logs() string {
	out, _ := p.Compose(time.Minute, "logs", "--no-color", "--tail", "40")
	return out
}
