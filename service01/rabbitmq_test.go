package main

// This file starts a real RabbitMQ node for the package's integration tests:
// its own node name, free ports and a temporary data folder, stopped when the
// tests end. The lab module has the full runner (lab/runner/rabbitmq.go); this is the
// small copy a service needs to test itself on its own.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// rabbitServer is Debian's broker start script that runs as the caller
// (/usr/sbin/rabbitmq-server only lets root or the rabbitmq user run it).
const rabbitServer = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// errNoRabbitMQ is the error of startTestRabbit when RabbitMQ is not
// installed.
var errNoRabbitMQ = errors.New("RabbitMQ is not installed")

// testRabbit is a RabbitMQ node owned by a test run.
type testRabbit struct {
	dir      string
	env      []string
	amqpPort int
	epmdPort int
	cmd      *exec.Cmd
	exited   chan struct{}
}

// URL is the AMQP URL of the node, with the lab's test login.
func (r *testRabbit) URL() string {
	return fmt.Sprintf("amqp://lab:lab@127.0.0.1:%d/", r.amqpPort)
}

// startTestRabbit starts a node in a new temporary folder and waits until it
// accepts AMQP connections.
func startTestRabbit() (*testRabbit, error) {
	if _, err := os.Stat(os.Getenv("LAB_SYSROOT") + rabbitServer); err != nil {
		return nil, fmt.Errorf("%w (%s is missing)", errNoRabbitMQ, os.Getenv("LAB_SYSROOT")+rabbitServer)
	}
	dir, err := os.MkdirTemp("", "rabbit-test-")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	r := &testRabbit{dir: dir, amqpPort: ports[0], epmdPort: ports[3]}
	conf := fmt.Sprintf("listeners.tcp.default = 127.0.0.1:%d\nmanagement.tcp.ip = 127.0.0.1\nmanagement.tcp.port = %d\n", ports[0], ports[1])
	if err := os.WriteFile(filepath.Join(dir, "rabbitmq.conf"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	// No plugins: the management UI is not needed here and costs start time.
	if err := os.WriteFile(filepath.Join(dir, "enabled_plugins"), []byte("[].\n"), 0o644); err != nil {
		return nil, err
	}
	r.env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir, // the Erlang cookie lives here
		"RABBITMQ_CONF_ENV_FILE=" + filepath.Join(dir, "no-env-file"),
		"RABBITMQ_NODENAME=test-" + strconv.Itoa(ports[0]) + "@localhost",
		"RABBITMQ_CONFIG_FILE=" + filepath.Join(dir, "rabbitmq.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_MNESIA_BASE=" + filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE=" + filepath.Join(dir, "log"),
		"RABBITMQ_PLUGINS_EXPAND_DIR=" + filepath.Join(dir, "plugins"),
		"RABBITMQ_DIST_PORT=" + strconv.Itoa(ports[2]),
		"ERL_EPMD_PORT=" + strconv.Itoa(ports[3]),
		"ERL_EPMD_ADDRESS=127.0.0.1",
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
		"RABBITMQ_DEFAULT_USER=lab",
		"RABBITMQ_DEFAULT_PASS=lab",
		"RABBITMQ_LOGS=-",
	}
	if err := r.Start(); err != nil {
		r.Stop()
		return nil, err
	}
	return r, nil
}

// Start (re)starts the node on its ports and data folder and waits until it
// accepts connections.
func (r *testRabbit) Start() error {
	out, err := os.OpenFile(filepath.Join(r.dir, "rabbitmq.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := systemCommand(context.Background(), rabbitServer)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = r.env, r.dir, out, out
	// Its own process group, so Stop reaches the Erlang VM behind the script.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	r.cmd, r.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(r.exited) }()

	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-r.exited:
			return fmt.Errorf("rabbitmq-server exited during start; see %s", filepath.Join(r.dir, "rabbitmq.out"))
		default:
		}
		conn, err := amqp.Dial(r.URL())
		if err == nil {
			conn.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("rabbitmq-server did not accept connections within 60s; see %s", filepath.Join(r.dir, "rabbitmq.out"))
}

// Halt stops the node gracefully (SIGTERM), or kills it (SIGKILL) when
// kill is true, and waits until it is gone. The data folder stays.
func (r *testRabbit) Halt(kill bool) {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	syscall.Kill(-r.cmd.Process.Pid, sig)
	select {
	case <-r.exited:
	case <-time.After(30 * time.Second):
		syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.exited
	}
	// The VM may outlive the script by a moment; wait for its group to go.
	for i := 0; i < 300 && syscall.Kill(-r.cmd.Process.Pid, 0) == nil; i++ {
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop halts the node, stops its port mapper and removes its folder.
func (r *testRabbit) Stop() {
	r.Halt(false)
	// epmd is started by the first node on its port and outlives it.
	systemCommand(context.Background(), "/usr/bin/epmd", "-port", strconv.Itoa(r.epmdPort), "-kill").Run()
	os.RemoveAll(r.dir)
}

// Ctl runs rabbitmqctl against the node.
func (r *testRabbit) Ctl(ctx context.Context, args ...string) ([]byte, error) {
	cmd := systemCommand(ctx, "/usr/lib/rabbitmq/bin/rabbitmqctl", args...)
	cmd.Env = r.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("rabbitmqctl %v: %w: %s", args, err, out)
	}
	return out, nil
}

// systemCommand runs a program of the machine's RabbitMQ packages, or, when
// LAB_SYSROOT names another root file system (make test's round on RabbitMQ
// 4.3), that tree's: in a mount namespace of its own with the tree's /usr
// mounted over the machine's. lab/runner/sysroot.go explains it.
func systemCommand(ctx context.Context, path string, args ...string) *exec.Cmd {
	root := os.Getenv("LAB_SYSROOT")
	if root == "" {
		return exec.CommandContext(ctx, path, args...)
	}
	script := `mount --bind "$0/usr" /usr && mount --bind "$0/etc/ld.so.cache" /etc/ld.so.cache && exec "$@"`
	return exec.CommandContext(ctx, "unshare", append([]string{"--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, root, path}, args...)...)
}

// freePorts asks the kernel for n distinct free TCP ports on the loopback.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, errors.Join(errors.New("no free port"), err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
