//go:build docker

package doctest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"pingpong/lab/dockertest"
	"pingpong/lab/runner"
)

// TestDockerTutorials runs every chapter's Docker road: its docker compose
// commands and the console blocks for both roads or for Docker, each chapter
// on a compose project of its own on free ports, as a reader with Docker and
// no Go would type them. make test-docker runs it.
func TestDockerTutorials(t *testing.T) {
	root, err := runner.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out, err := dockertest.EnsureImages(root, runner.Sysroot())
	t.Logf("images:\n%s", out)
	if err != nil {
		t.Fatal(err)
	}
	eachChapter(t, runDockerChapter)
}

func runDockerChapter(t *testing.T, root, name string, steps []step) {
	var docker, commands int
	for _, s := range steps {
		switch {
		case s.kind == stepDocker:
			docker++
		case s.kind == stepCommand && s.road != roadNative:
			commands++
		}
	}
	if docker == 0 || commands == 0 {
		t.Fatalf("%s has %d docker blocks and %d console commands for Docker: every chapter has a Docker road", name, docker, commands)
	}
	// The compose cluster's second and third nodes publish their
	// management UIs too (docker-compose.cluster.yml).
	defaults := []int{8000, 8001, 8002, 5672, 15672, 15673, 15674}
	vars := []string{"GATEWAY_PORT", "SERVICE01_PORT", "SERVICE02_PORT", "RABBITMQ_PORT", "RABBITMQ_MANAGEMENT_PORT",
		"RABBITMQ_MANAGEMENT_PORT_2", "RABBITMQ_MANAGEMENT_PORT_3"}
	ports, err := runner.FreePorts(len(defaults))
	if err != nil {
		t.Fatal(err)
	}
	portMap := map[int]int{}
	var env []string
	for i, def := range defaults {
		portMap[def] = ports[i]
		env = append(env, vars[i]+"="+strconv.Itoa(ports[i]))
	}
	chapter := strings.SplitN(name, "-", 2)[0]
	p, err := dockertest.NewProject(root, fmt.Sprintf("pingpong-doc%s-%d", chapter, os.Getpid()), env...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("docker compose logs (last 40 lines each):\n%s", p.Logs())
		}
		if err := p.Down(); err != nil {
			t.Error(err)
		}
	})
	sh := mustShell(t, root, p.Env)
	if _, _, err := sh.run(`curl() { command curl --no-progress-meter "$@"; }`, commandTimeout); err != nil {
		t.Fatal(err)
	}
	rw := newPortRewriter(portMap, "")
	// The chapter names the default project's network and containers
	// (pingpong_default, pingpong-rabbitmq-3-1); here they are the test
	// project's.
	rw.names = strings.NewReplacer("pingpong_default", p.Name+"_default", "pingpong-", p.Name+"-")
	started := false
	for _, s := range steps {
		if s.road == roadNative {
			continue
		}
		where := fmt.Sprintf("%s:%d", name, s.line)
		switch s.kind {
		case stepDocker:
			for _, c := range s.commands {
				start := time.Now()
				out, rc, err := sh.run(rw.command(c), 10*time.Minute)
				if err != nil || rc != 0 {
					t.Fatalf("%s: $ %s\nexit status %d (%v); it printed:\n%s", where, c, rc, err, out)
				}
				t.Logf("%s: $ %s (%s)", where, c, time.Since(start).Round(100*time.Millisecond))
			}
			started = true
		case stepCommand:
			if !started {
				t.Fatalf("%s: a command before any docker compose block", where)
			}
			runCommand(t, sh, rw, where, s)
		}
	}
}
