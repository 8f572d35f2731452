//go:build docker

package dockertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"pingpong/lab/runner"
)

// lab is the compose lab the package's tests share.
var lab *composeLab

type composeLab struct {
	*Project
	gateway string // http://127.0.0.1:port
	mgmt    string // http://127.0.0.1:port
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	l, err := up()
	if l != nil {
		defer func() {
			if err := l.Down(); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
		}()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dockertest:", err)
		if l != nil {
			fmt.Fprintf(os.Stderr, "docker compose logs (last 40 lines each):\n%s", l.Logs())
		}
		return 1
	}
	lab = l
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "docker compose logs (last 40 lines each):\n%s", l.Logs())
	}
	return code
}

// up makes the images there, then brings the lab up on free ports with the
// README's command, under a project name of its own.
func up() (*composeLab, error) {
	root, err := runner.RepoRoot()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	out, err := EnsureImages(root, runner.Sysroot())
	fmt.Fprintf(os.Stderr, "images (%s):\n%s", time.Since(start).Round(time.Second), out)
	if err != nil {
		return nil, err
	}
	ports, err := runner.FreePorts(5)
	if err != nil {
		return nil, err
	}
	p, err := NewProject(root, fmt.Sprintf("pingpong-test-%d", os.Getpid()),
		"GATEWAY_PORT="+strconv.Itoa(ports[0]),
		"RABBITMQ_PORT="+strconv.Itoa(ports[1]),
		"RABBITMQ_MANAGEMENT_PORT="+strconv.Itoa(ports[2]),
		"SERVICE01_PORT="+strconv.Itoa(ports[3]),
		"SERVICE02_PORT="+strconv.Itoa(ports[4]),
	)
	if err != nil {
		return nil, err
	}
	l := &composeLab{
		Project: p,
		gateway: "http://127.0.0.1:" + strconv.Itoa(ports[0]),
		mgmt:    "http://127.0.0.1:" + strconv.Itoa(ports[2]),
	}
	start = time.Now()
	if out, err := p.Compose(10*time.Minute, "up", "-d", "--build", "--wait"); err != nil {
		return l, fmt.Errorf("docker compose up -d --build --wait: %v\n%s", err, out)
	}
	fmt.Fprintf(os.Stderr, "docker compose up -d --build --wait: healthy in %s\n", time.Since(start).Round(time.Second))
	return l, nil
}

func (l *composeLab) mustCompose(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := l.Compose(3*time.Minute, args...)
	if err != nil {
		tb.Fatalf("docker compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
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
	// The stopped container's address no longer answers: the gateway gives
	// up after its 2 s connect timeout (natively, a refused connection
	// gives 502 at once). The how-to says so.
	resp, err := client.Get(lab.gateway + "/pong")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("GET /pong with service02 stopped: %s, want 504", resp.Status)
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

// startedAt is when the service's container last started.
func startedAt(tb testing.TB, service string) string {
	tb.Helper()
	id := strings.TrimSpace(lab.mustCompose(tb, "ps", "-q", service))
	out, err := exec.Command("docker", "inspect", "-f", "{{.State.StartedAt}}", id).CombinedOutput()
	if err != nil {
		tb.Fatalf("docker inspect %s: %v: %s", service, err, out)
	}
	return strings.TrimSpace(string(out))
}

// docker compose restart of a service restarts the gateway after it
// (restart: true under nginx's depends_on), as the how-to says.
func TestRestartServiceRestartsGateway(t *testing.T) {
	before := startedAt(t, "nginx")
	lab.mustCompose(t, "restart", "service01")
	waitHealthy(t, "service01")
	waitHealthy(t, "nginx")
	if after := startedAt(t, "nginx"); after == before {
		t.Errorf("nginx was not restarted with service01 (started at %s before and after)", before)
	}
	waitPing(t, "after restarting service01", 30*time.Second)
}

// The how-to's way to take a changed service: recreate it, then restart
// the gateway, which resolves the new container's address.
func TestRecreateServiceThenGateway(t *testing.T) {
	lab.mustCompose(t, "up", "-d", "--build", "--wait", "--force-recreate", "--no-deps", "service01")
	lab.mustCompose(t, "restart", "nginx")
	waitHealthy(t, "nginx")
	waitPing(t, "after recreating service01", 30*time.Second)
}
