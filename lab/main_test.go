package main

import (
	"bufio"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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
	root, err := runner.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "lab")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, tt := range []struct {
		name        string
		closeStdout bool
		sig         syscall.Signal
	}{
		{"Ctrl-C after stdout is gone", true, syscall.SIGINT},
		{"the terminal closes", false, syscall.SIGHUP},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// A lab folder of its own: go.work marks its root, and the
			// gateway's template is all nginx needs; .lab is made there.
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "go.work"), []byte("go 1.26.0\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.CopyFS(filepath.Join(dir, "nginx"), os.DirFS(filepath.Join(root, "nginx"))); err != nil {
				t.Fatal(err)
			}
			ports, err := runner.FreePorts(1)
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "run", "nginx")
			cmd.Dir = dir
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
				"LAB_SYSROOT=" + os.Getenv("LAB_SYSROOT"), "GATEWAY_PORT=" + strconv.Itoa(ports[0])}
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = cmd.Stdout
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })

			up := make(chan bool, 1)
			var printed strings.Builder
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					printed.WriteString(sc.Text() + "\n")
					if strings.Contains(sc.Text(), "Press Ctrl-C to stop") {
						up <- true
						return
					}
				}
				up <- false
			}()
			select {
			case ok := <-up:
				if !ok {
					t.Fatalf("lab run nginx stopped before it was up:\n%s", printed.String())
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("lab run nginx was not up after a minute:\n%s", printed.String())
			}
			pids := nginxPids(t, dir)
			if len(pids) == 0 {
				t.Fatal("found no nginx pid in the lab's state folder")
			}
			if tt.closeStdout {
				stdout.(io.Closer).Close()
			}
			cmd.Process.Signal(tt.sig)

			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case err := <-exited:
				if status, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && status.Signaled() {
					t.Errorf("the runner was killed by %v (%v) instead of stopping the lab", status.Signal(), err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the runner did not exit within 30 s")
			}
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
