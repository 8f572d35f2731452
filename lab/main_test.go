package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"pingpong/lab/runner"
)

// TestRunStopsItsPartsHoweverItIsStopped runs the real runner, `lab run
// nginx`, in a folder of its own, and stops it as a terminal would: Ctrl-C
// after its stdout has gone (make run | tee, where tee dies first), and
// SIGHUP (the terminal closed). Each time the runner must stop nginx before
// it exits: the gateway's port is free again, and nginx's process is gone.
func TestRunStopsItsPartsHoweverItIsStopped(t *testing.T) {
	bin := buildLab(t)
	for _, tt := range []struct {
		name        string
		closeStdout bool
		sig         syscall.Signal
	}{
		{"Ctrl-C after stdout is gone", true, syscall.SIGINT},
		{"the terminal closes", false, syscall.SIGHUP},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := labFolder(t, "nginx")
			ports, err := runner.FreePorts(1)
			if err != nil {
				t.Fatal(err)
			}
			r := startRunner(t, bin, dir, []string{"GATEWAY_PORT=" + strconv.Itoa(ports[0])}, "nginx")
			pids := nginxPids(t, dir)
			if len(pids) == 0 {
				t.Fatal("found no nginx pid in the lab's state folder")
			}
			if tt.closeStdout {
				r.stdout.Close()
			}
			r.cmd.Process.Signal(tt.sig)
			r.waitExit(t, 30*time.Second)
			if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])), time.Second); err == nil {
				c.Close()
				t.Errorf("something still listens on the gateway's port %d after the runner exited", ports[0])
			}
			for _, pid := range pids {
				if syscall.Kill(pid, 0) == nil {
					t.Errorf("nginx (pid %d) still runs after the runner exited", pid)
				}
				// The runner starts each part in a process group of its
				// own, led by it: this ends nginx's workers too, should
				// the runner have left them.
				if syscall.Kill(-pid, syscall.SIGKILL) == nil {
					t.Errorf("nginx's process group %d was still there after the runner exited", pid)
				}
			}
		})
	}
}

// TestKilledRunnerLeavesNothing runs the whole lab with the real runner and
// kills the runner with SIGKILL, which it cannot catch: every part (the
// Erlang VM, its epmd, both services, nginx) must stop by itself, and the
// next run must start. That run is then stopped from outside, as a learner
// who lost its terminal would: a second run names the lab that holds the
// port and the command that stops it, and `lab stop` stops it in order.
func TestKilledRunnerLeavesNothing(t *testing.T) {
	bin := buildLab(t)
	dir := labFolder(t, "nginx", "rabbitmq", "service01", "service02")
	ports, err := runner.FreePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	if ports[3], err = runner.FreeBrokerPort(); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"GATEWAY_PORT=" + strconv.Itoa(ports[0]),
		"SERVICE01_PORT=" + strconv.Itoa(ports[1]),
		"SERVICE02_PORT=" + strconv.Itoa(ports[2]),
		"RABBITMQ_PORT=" + strconv.Itoa(ports[3]),
		"RABBITMQ_MANAGEMENT_PORT=" + strconv.Itoa(ports[4]),
	}
	// The Erlang distribution's port is the AMQP port + 20000, epmd's the
	// AMQP port + 21000 (runner.Options).
	labPorts := append(ports[:5:5], ports[3]+20000, ports[3]+21000)

	first := startRunner(t, bin, dir, env)
	parts := recorded(t, dir)
	names := map[string]bool{}
	for _, p := range parts {
		names[p.name] = true
		if p.name == "rabbitmq" {
			// The runner's child is the Erlang VM itself, not a start
			// script, so that the VM gets the runner's death signal.
			if comm, _ := os.ReadFile("/proc/" + strconv.Itoa(p.pid) + "/comm"); strings.TrimSpace(string(comm)) != "beam.smp" {
				t.Errorf("the recorded rabbitmq process %d is %q, want the Erlang VM (beam.smp)", p.pid, strings.TrimSpace(string(comm)))
			}
		}
	}
	for _, want := range []string{"rabbitmq", "epmd", "service01", "service02", "nginx"} {
		if !names[want] {
			t.Errorf("the runner's record in .lab/running/ names no %s: %v", want, parts)
		}
	}
	first.cmd.Process.Kill()
	first.cmd.Wait()
	waitPortsFree(t, labPorts, 15*time.Second)
	waitProcessesGone(t, parts, time.Minute)

	second := startRunner(t, bin, dir, env)
	out, err := labCmd(bin, dir, env, "run", "nginx")
	if want := "is held by this checkout's own lab (nginx, pid"; err == nil || !strings.Contains(out, want) || !strings.Contains(out, "make stop") {
		t.Errorf("a second lab run on the same ports: %v\n%s\nwant a message with %q naming make stop", err, out, want)
	}
	parts = recorded(t, dir)
	out, err = labCmd(bin, dir, env, "stop")
	if err != nil || !strings.Contains(out, "The lab is stopped.") {
		t.Errorf("lab stop: %v\n%s", err, out)
	}
	second.waitExit(t, 5*time.Second) // lab stop waits for the runner
	if code := second.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("the runner stopped by lab stop exited with %d, want 0; it printed:\n%s", code, second.printed())
	}
	waitPortsFree(t, labPorts, 5*time.Second)
	waitProcessesGone(t, parts, 5*time.Second)
	if left, _ := filepath.Glob(filepath.Join(dir, ".lab", "running", "*")); len(left) > 0 {
		t.Errorf("records left after lab stop: %v", left)
	}
	out, err = labCmd(bin, dir, env, "stop")
	if err != nil || !strings.Contains(out, "No lab of this checkout is running") {
		t.Errorf("lab stop with nothing running: %v\n%s", err, out)
	}
}

// buildLab builds the lab command, as make run does.
func buildLab(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "lab")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// labFolder makes a folder the runner takes for a checkout of the lab: a
// go.work marks its root, and it holds a copy of the folders the parts need.
// .lab is made there.
func labFolder(t *testing.T, parts ...string) string {
	t.Helper()
	root, err := runner.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	work := "go 1.26.0\n"
	for _, p := range parts {
		if err := os.CopyFS(filepath.Join(dir, p), os.DirFS(filepath.Join(root, p))); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(p, "service") {
			work += "use ./" + p + "\n"
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "go.work"), []byte(work), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// labEnv is the environment the runner gets in these tests: the ports, and
// nothing from the developer's shell but what finds the tools (Go's own
// variables, for the services' build).
func labEnv(env []string) []string {
	var keep []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "GO") || k == "PATH" || k == "HOME" || k == "TMPDIR" || k == runner.SysrootEnv {
			keep = append(keep, kv)
		}
	}
	return append(keep, env...)
}

// labCmd runs the lab command to the end and returns what it printed.
func labCmd(bin, dir string, env []string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Env = dir, labEnv(env)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// labRun is `lab run` started in the background.
type labRun struct {
	cmd    *exec.Cmd
	stdout io.ReadCloser
	mu     sync.Mutex
	out    strings.Builder
}

func (r *labRun) printed() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.String()
}

// startRunner starts `lab run parts...` in dir, in a process group of its
// own as a shell would, and returns once the lab is up.
func startRunner(t *testing.T, bin, dir string, env []string, parts ...string) *labRun {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"run"}, parts...)...)
	cmd.Dir, cmd.Env = dir, labEnv(env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		labCmd(bin, dir, env, "stop") // this folder's lab, never the checkout's
		cmd.Wait()
	})
	r := &labRun{cmd: cmd, stdout: stdout.(io.ReadCloser)}
	up := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			r.mu.Lock()
			r.out.WriteString(sc.Text() + "\n")
			r.mu.Unlock()
			if strings.Contains(sc.Text(), "Press Ctrl-C to stop") {
				up <- true
			}
		}
		up <- false
	}()
	select {
	case ok := <-up:
		if !ok {
			t.Fatalf("lab run %s stopped before it was up:\n%s", strings.Join(parts, " "), r.printed())
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("lab run %s was not up after 3 minutes:\n%s", strings.Join(parts, " "), r.printed())
	}
	return r
}

// waitExit waits for the runner to exit by itself, which it must do without
// being killed by a signal.
func (r *labRun) waitExit(t *testing.T, limit time.Duration) {
	t.Helper()
	exited := make(chan error, 1)
	go func() { exited <- r.cmd.Wait() }()
	select {
	case err := <-exited:
		if status, ok := r.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && status.Signaled() {
			t.Errorf("the runner was killed by %v (%v) instead of stopping the lab", status.Signal(), err)
		}
	case <-time.After(limit):
		t.Fatalf("the runner did not exit within %s; it printed:\n%s", limit, r.printed())
	}
}

// recordedPart is a process the runner recorded in .lab/running/.
type recordedPart struct {
	name string
	pid  int
}

// recorded reads the runner's record of what it started.
func recorded(t *testing.T, dir string) []recordedPart {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(dir, ".lab", "running", "*.json"))
	if len(paths) != 1 {
		t.Fatalf("want one runner's record in .lab/running/, found %v", paths)
	}
	data, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Parts []struct {
			Name string `json:"name"`
			PID  int    `json:"pid"`
		} `json:"parts"`
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatalf("%s: %v", paths[0], err)
	}
	var parts []recordedPart
	for _, p := range rec.Parts {
		parts = append(parts, recordedPart{p.Name, p.PID})
	}
	return parts
}

// waitPortsFree waits until nothing listens on any of ports.
func waitPortsFree(t *testing.T, ports []int, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for _, p := range ports {
		for {
			c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), time.Second)
			if err != nil {
				break
			}
			c.Close()
			if time.Now().After(deadline) {
				t.Errorf("something still listens on the lab's port %d %s after the runner ended", p, limit)
				break
			}
			time.Sleep(100 * time.Millisecond) // poll interval
		}
	}
}

// waitProcessesGone waits until no process of the recorded parts' process
// groups is left.
func waitProcessesGone(t *testing.T, parts []recordedPart, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for _, p := range parts {
		for syscall.Kill(-p.pid, 0) == nil {
			if time.Now().After(deadline) {
				t.Errorf("%s (process group %d) still runs %s after the runner ended", p.name, p.pid, limit)
				syscall.Kill(-p.pid, syscall.SIGKILL)
				break
			}
			time.Sleep(100 * time.Millisecond) // poll interval
		}
	}
}

// nginxPids reads the pid files nginx wrote under the lab's state folder.
func nginxPids(t *testing.T, dir string) []int {
	t.Helper()
	var pids []int
	filepath.WalkDir(filepath.Join(dir, ".lab"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".pid") {
			if data, err := os.ReadFile(path); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
					pids = append(pids, pid)
				}
			}
		}
		return nil
	})
	return pids
}
