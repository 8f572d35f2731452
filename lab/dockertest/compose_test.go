//go:build docker

package dockertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"pingpong/lab/runner"
)

// project is the compose lab the package's tests share.
type project struct {
	root    string   // the repository: docker-compose.yml's folder
	envFile string   // an empty --env-file, instead of a developer's .env
	name    string   // the compose project name, unique per run
	env     []string // the environment docker compose runs with
	gateway string   // http://127.0.0.1:port
	mgmt    string   // http://127.0.0.1:port
}

var lab *project

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	p, err := up()
	if p != nil {
		defer p.down()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dockertest:", err)
		if p != nil {
			p.dumpLogs()
		}
		return 1
	}
	lab = p
	code := m.Run()
	if code != 0 {
		p.dumpLogs()
	}
	return code
}

// up makes the images there, then brings the lab up on free ports with the
// README's command, under a project name of its own.
func up() (*project, error) {
	root, err := runner.RepoRoot()
	if err != nil {
		return nil, err
	}
	if out, err := exec.Command("docker", "compose", "version", "--short").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("docker compose is not there (%v: %s): make test-docker installs it", err, bytes.TrimSpace(out))
	}
	sysroot := runner.Sysroot()
	if sysroot == "" {
		return nil, fmt.Errorf("%s is not set: make test-docker sets it to the tree the stand-in images are built from", runner.SysrootEnv)
	}
	start := time.Now()
	cmd := exec.Command(filepath.Join(root, "lab", "dockertest", "standins.sh"), sysroot)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	fmt.Fprintf(os.Stderr, "images (%s):\n%s", time.Since(start).Round(time.Second), out)
	if err != nil {
		return nil, fmt.Errorf("standins.sh: %v", err)
	}

	ports, err := runner.FreePorts(3)
	if err != nil {
		return nil, err
	}
	// No .env of the developer's, and none of their shell's lab variables:
	// the compose file's defaults, which are .env.example's, and free ports.
	empty := filepath.Join(os.TempDir(), fmt.Sprintf("dockertest-%d.env", os.Getpid()))
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		return nil, err
	}
	p := &project{
		root:    root,
		envFile: empty,
		name:    fmt.Sprintf("pingpong-test-%d", os.Getpid()),
		env: []string{
			"PATH=" + os.Getenv("PATH"),
			"HOME=" + os.Getenv("HOME"),
			"GATEWAY_PORT=" + strconv.Itoa(ports[0]),
			"RABBITMQ_PORT=" + strconv.Itoa(ports[1]),
			"RABBITMQ_MANAGEMENT_PORT=" + strconv.Itoa(ports[2]),
		},
		gateway: "http://127.0.0.1:" + strconv.Itoa(ports[0]),
		mgmt:    "http://127.0.0.1:" + strconv.Itoa(ports[2]),
	}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DOCKER_") {
			p.env = append(p.env, kv)
		}
	}
	start = time.Now()
	if out, err := p.compose(10*time.Minute, "up", "-d", "--build", "--wait"); err != nil {
		return p, fmt.Errorf("docker compose up -d --build --wait: %v\n%s", err, out)
	}
	fmt.Fprintf(os.Stderr, "docker compose up -d --build --wait: healthy in %s\n", time.Since(start).Round(time.Second))
	return p, nil
}

// compose runs docker compose with the project's name and environment.
func (p *project) compose(limit time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", append([]string{"compose", "--project-name", p.name, "--env-file", p.envFile}, args...)...)
	cmd.Dir, cmd.Env = p.root, p.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (p *project) mustCompose(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := p.compose(3*time.Minute, args...)
	if err != nil {
		tb.Fatalf("docker compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// down removes the containers, the network, the broker's volume and the
// services' images: nothing of the run is left.
func (p *project) down() {
	if out, err := p.compose(3*time.Minute, "down", "--volumes", "--rmi", "local", "--timeout", "30"); err != nil {
		fmt.Fprintf(os.Stderr, "docker compose down: %v\n%s", err, out)
	}
	os.Remove(p.envFile)
}

func (p *project) dumpLogs() {
	out, _ := p.compose(time.Minute, "logs", "--no-color", "--tail", "40")
	fmt.Fprintf(os.Stderr, "docker compose logs (last 40 lines each):\n%s", out)
}

var client = &http.Client{Timeout: 10 * time.Second}

// ping posts one ping through the gateway and returns the status and the
// message id.
func ping(tb testing.TB, msg string) (int, string) {
	tb.Helper()
	body, _ := json.Marshal(map[string]string{"msg": msg})
	resp, err := client.Post(lab.gateway+"/ping", "application/json", bytes.NewReader(body))
	if err != nil {
		tb.Fatalf("POST /ping: %v", err)
	}
	defer resp.Body.Close()
	var reply struct {
		ID string `json:"id"`
	}
	json.NewDecoder(resp.Body).Decode(&reply)
	return resp.StatusCode, reply.ID
}

func mustPing(tb testing.TB, msg string) string {
	tb.Helper()
	status, id := ping(tb, msg)
	if status != http.StatusAccepted || id == "" {
		tb.Fatalf("POST /ping: %d (id %q), want 202 with an id", status, id)
	}
	return id
}

// stored returns the ids GET /pong lists, or an error for any other answer.
func stored() ([]string, error) {
	resp, err := client.Get(lab.gateway + "/pong?limit=1000")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("GET /pong: %s: %s", resp.Status, b)
	}
	var page struct {
		Messages []struct {
			ID string `json:"id"`
		} `json:"messages"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		return nil, err
	}
	var ids []string
	for _, m := range page.Messages {
		ids = append(ids, m.ID)
	}
	return ids, nil
}

// waitStored waits until /pong lists every id in want, each once.
func waitStored(tb testing.TB, want []string, limit time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		ids, err := stored()
		last = err
		if err == nil {
			missing := 0
			for _, id := range want {
				switch n := countOf(ids, id); {
				case n > 1:
					tb.Fatalf("%s is in /pong %d times", id, n)
				case n == 0:
					missing++
				}
			}
			if missing == 0 {
				return
			}
			last = fmt.Errorf("%d of %d not in /pong yet", missing, len(want))
		}
		time.Sleep(200 * time.Millisecond)
	}
	tb.Fatalf("within %s: %v", limit, last)
}

func countOf(ids []string, id string) int {
	n := 0
	for _, x := range ids {
		if x == id {
			n++
		}
	}
	return n
}

// waitPing posts pings until one is accepted, and returns how long that took.
func waitPing(tb testing.TB, msg string, limit time.Duration) (string, time.Duration) {
	tb.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		resp, err := client.Post(lab.gateway+"/ping", "application/json", strings.NewReader(`{"msg":"`+msg+`"}`))
		if err == nil {
			var reply struct {
				ID string `json:"id"`
			}
			json.NewDecoder(resp.Body).Decode(&reply)
			resp.Body.Close()
			if resp.StatusCode == http.StatusAccepted {
				return reply.ID, time.Since(start)
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	tb.Fatalf("no POST /ping accepted within %s", limit)
	return "", 0
}

// getJSON reads the management API.
func getJSON(tb testing.TB, path string, v any) {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodGet, lab.mgmt+path, nil)
	req.SetBasicAuth("lab", "lab")
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		tb.Fatalf("GET %s: %s: %s", path, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		tb.Fatalf("GET %s: %v", path, err)
	}
}

func TestEveryContainerHealthy(t *testing.T) {
	out := lab.mustCompose(t, "ps", "--format", "{{.Service}} {{.Health}}")
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		got = append(got, strings.TrimSpace(line))
	}
	slices.Sort(got)
	want := []string{"nginx healthy", "rabbitmq healthy", "service01 healthy", "service02 healthy"}
	if !slices.Equal(got, want) {
		t.Errorf("docker compose ps: %q, want %q", got, want)
	}
}

// The versions the images carry are the ones make test's second round
// tests natively.
func TestImageVersions(t *testing.T) {
	var o struct {
		RabbitMQ string `json:"rabbitmq_version"`
	}
	getJSON(t, "/api/overview", &o)
	if !strings.HasPrefix(o.RabbitMQ, "4.3.") {
		t.Errorf("RabbitMQ %q, want 4.3.x (the rabbitmq:4.3-management image)", o.RabbitMQ)
	}
	out := lab.mustCompose(t, "exec", "-T", "nginx", "nginx", "-v")
	if !strings.Contains(out, "nginx/1.30.") {
		t.Errorf("nginx -v: %q, want nginx/1.30.x (the nginx:1.30-alpine image)", out)
	}
	t.Logf("RabbitMQ %s, %s", o.RabbitMQ, strings.TrimSpace(out))
}

func TestPingReachesPong(t *testing.T) {
	id := mustPing(t, "hello from docker")
	waitStored(t, []string{id}, 10*time.Second)

	var q struct {
		Durable bool   `json:"durable"`
		Type    string `json:"type"`
	}
	getJSON(t, "/api/queues/%2F/pings", &q)
	if !q.Durable || q.Type != "quorum" {
		t.Errorf("queue pings: durable %v, type %q; want a durable quorum queue", q.Durable, q.Type)
	}
}

// While service02 is stopped, pings are accepted and wait in the queue;
// once it is started again, every one of them reaches /pong.
func TestService02StopStart(t *testing.T) {
	lab.mustCompose(t, "stop", "service02")
	var ids []string
	for i := range 3 {
		ids = append(ids, mustPing(t, fmt.Sprintf("while service02 is stopped %d", i)))
	}
	if _, err := stored(); err == nil {
		t.Error("GET /pong answered 200 with service02 stopped")
	}
	lab.mustCompose(t, "start", "service02")
	waitHealthy(t, "service02")
	waitStored(t, ids, 30*time.Second)
}

// waitHealthy waits until compose reports the service's container healthy.
func waitHealthy(tb testing.TB, service string) {
	tb.Helper()
	deadline := time.Now().Add(time.Minute)
	var out string
	for time.Now().Before(deadline) {
		out = strings.TrimSpace(lab.mustCompose(tb, "ps", "--format", "{{.Health}}", service))
		if out == "healthy" {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	tb.Fatalf("%s is %q after a minute, want healthy", service, out)
}

// A broker restart keeps the messages queued on its volume: pings accepted
// while service02 is stopped survive docker compose restart rabbitmq, and
// service01 accepts pings again on its own once the broker is back.
func TestBrokerRestartKeepsQueuedMessages(t *testing.T) {
	lab.mustCompose(t, "stop", "service02")
	var ids []string
	for i := range 3 {
		ids = append(ids, mustPing(t, fmt.Sprintf("before the broker restart %d", i)))
	}
	start := time.Now()
	lab.mustCompose(t, "restart", "rabbitmq")
	restarted := time.Since(start)
	id, took := waitPing(t, "after the broker restart", 60*time.Second)
	t.Logf("docker compose restart rabbitmq returned after %s; the first ping accepted after it %s later", restarted.Round(100*time.Millisecond), took.Round(100*time.Millisecond))
	ids = append(ids, id)
	lab.mustCompose(t, "start", "service02")
	waitHealthy(t, "service02")
	waitStored(t, ids, 30*time.Second)
}
