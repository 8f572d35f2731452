package runner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Debian's /usr/sbin/rabbitmq-server is a wrapper that only root or the
// rabbitmq user may run and that switches to the rabbitmq user; the scripts in
// /usr/lib/rabbitmq/bin run the broker as the caller, which is what a lab
// with its data in the work tree needs.
const debianScripts = "/usr/lib/rabbitmq/bin"

// rabbitmqScript finds one of RabbitMQ's scripts (rabbitmq-server,
// rabbitmqctl) and epmd: Debian's, the sysroot's (always Debian's), or,
// where RabbitMQ is installed some other way (Homebrew, the generic Unix
// package), the ones on PATH, which run as the caller too. Only Debian's
// and the sysroot's are tested.
func rabbitmqScript(name string) (string, error) { return findScript(debianScripts, name) }

// findScript is rabbitmqScript with Debian's folder of scripts as a
// parameter, for its test.
func findScript(scripts, name string) (string, error) {
	debian := filepath.Join(scripts, name)
	if name == "epmd" {
		debian = "/usr/bin/epmd"
	}
	if root := Sysroot(); root != "" {
		if _, err := os.Stat(root + debian); err != nil {
			return "", fmt.Errorf("%s not found in %s=%s: run make sysroot", debian, SysrootEnv, root)
		}
		return debian, nil
	}
	if _, err := os.Stat(debian); err == nil {
		return debian, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s not found (neither %s nor on PATH): RabbitMQ is not installed; run make deps (or apt-get install rabbitmq-server)", name, debian)
}

// rabbitmq is one of the lab's own RabbitMQ nodes: its own node name, ports,
// data folder and Erlang port mapper, so it never meets a system-wide
// broker. The lab runs one, or a cluster of three (RABBITMQ_NODES), which
// share their port mapper and their Erlang cookie.
type rabbitmq struct {
	part     string // the process's name: rabbitmq, or rabbitmq-1 to -3 in a cluster
	dir      string // data and logs
	home     string // HOME: the Erlang cookie, which a cluster's nodes share
	confDir  string // the repository's rabbitmq/ folder
	amqpPort int
	mgmtPort int
	distPort int      // Erlang distribution (rabbitmqctl and the other nodes talk to the node on it)
	peers    []string // a cluster's node names, this one's included; none for a lone node
	srcIP    string   // a cluster's node: the address it connects to the others from
	epmd     *epmd    // the port mapper the node registers with
	user     string
	pass     string
	proc     *process // the Erlang VM running the node
}

func (r *rabbitmq) nodeName() string { return nodeName(r.amqpPort) }

// nodeName is the name of the node on amqpPort.
func nodeName(amqpPort int) string { return "lab-" + strconv.Itoa(amqpPort) + "@localhost" }

// env is the environment of the node and of rabbitmqctl.
func (r *rabbitmq) env() []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + r.home, // the Erlang cookie lives here
		"LANG=C.UTF-8",
		// Never read the system's /etc/rabbitmq/rabbitmq-env.conf.
		"RABBITMQ_CONF_ENV_FILE=" + filepath.Join(r.dir, "rabbitmq-env.conf"),
		"RABBITMQ_NODENAME=" + r.nodeName(),
		"RABBITMQ_CONFIG_FILE=" + filepath.Join(r.dir, "rabbitmq.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(r.confDir, "enabled_plugins"),
		"RABBITMQ_MNESIA_BASE=" + filepath.Join(r.dir, "mnesia"),
		"RABBITMQ_LOG_BASE=" + filepath.Join(r.dir, "log"),
		"RABBITMQ_PLUGINS_EXPAND_DIR=" + filepath.Join(r.dir, "plugins"),
		"RABBITMQ_DIST_PORT=" + strconv.Itoa(r.distPort),
		"ERL_EPMD_PORT=" + strconv.Itoa(r.epmd.port),
		"ERL_EPMD_ADDRESS=127.0.0.1",
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=" + r.erlArgs(),
		"RABBITMQ_DEFAULT_USER=" + r.user,
		"RABBITMQ_DEFAULT_PASS=" + r.pass,
		"RABBITMQ_LOGS=-",
		// rabbitmq-server then execs the Erlang VM instead of running it
		// in the background behind a shell that forwards signals to it,
		// as it does under systemd and in RabbitMQ's Docker image: the
		// runner's child is the VM itself, which stops the node gracefully
		// on SIGTERM, reports how it ended, and gets the runner's death
		// signal (process.go).
		"RUNNING_UNDER_SYSTEMD=true",
	}
}

// erlArgs are the node's Erlang VM flags: the distribution listens on the
// loopback only. A cluster's node also connects to the others from an
// address of its own on the loopback (127.0.0.2, .3, .4), which is how the
// fault suite can cut the traffic between one node and the others
// (partition.go), and notices within about netTickTime that a node it
// cannot reach is gone: a minute by default.
func (r *rabbitmq) erlArgs() string {
	args := "-kernel inet_dist_use_interface {127,0,0,1}"
	if r.srcIP != "" {
		args += fmt.Sprintf(" -kernel inet_dist_connect_options [{ip,{%s}}] -kernel net_ticktime %d",
			strings.ReplaceAll(r.srcIP, ".", ","), netTickTime)
	}
	return args
}

// netTickTime is a cluster's net_ticktime, in seconds: a node that stays
// silent this long (give or take a quarter) is taken for down.
const netTickTime = 10

// start writes the node's configuration (the repository's rabbitmq.conf with
// the lab's listeners appended, and a cluster's peers) and starts the node.
// Its port mapper must be running.
func (r *rabbitmq) start() error {
	server, err := rabbitmqScript("rabbitmq-server")
	if err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	shared, err := os.ReadFile(filepath.Join(r.confDir, "rabbitmq.conf"))
	if err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	conf := fmt.Sprintf("%s\n## Appended by the native lab runner (lab/runner/rabbitmq.go):\n"+
		"listeners.tcp.default = 127.0.0.1:%d\nmanagement.tcp.ip = 127.0.0.1\nmanagement.tcp.port = %d\n",
		shared, r.amqpPort, r.mgmtPort)
	if len(r.peers) > 0 && r.peers[0] != r.nodeName() {
		// Peer discovery from this file: a node that starts on an empty
		// data folder joins the first of these nodes it reaches.
		conf += "cluster_formation.peer_discovery_backend = classic_config\n"
		for i, peer := range r.peers {
			conf += fmt.Sprintf("cluster_formation.classic_config.nodes.%d = %s\n", i+1, peer)
		}
	}
	if len(r.peers) > 0 {
		// A node cut off from the majority stops, closing its clients'
		// connections, so that they move to the majority; it starts again
		// once it reaches the others. RabbitMQ 4.3 accepts the key and
		// ignores it: its metadata store and its quorum queues, all Raft,
		// only ever work on the majority's side.
		conf += "cluster_partition_handling = pause_minority\n"
	}
	if err := os.WriteFile(filepath.Join(r.dir, "rabbitmq.conf"), []byte(conf), 0o644); err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	cmd := SystemCommand(context.Background(), server)
	cmd.Env, cmd.Dir = r.env(), r.dir
	// RabbitMQ's own log is long; it goes to its file only, never the terminal.
	p, err := startProcess(r.part, cmd, r.logFile(), nil, syscall.SIGTERM)
	if err != nil {
		return err
	}
	r.proc = p
	return nil
}

// running reports whether the node's VM was started and has not exited.
func (r *rabbitmq) running() bool { return r.proc != nil && !r.proc.exited() }

// epmd is the Erlang port mapper the lab's nodes register with, on a port
// of the lab's own, started in the foreground as a part of the broker.
// Left to the node, epmd would start as a daemon that leaves the runner's
// process groups, and outlive a runner that was killed.
type epmd struct {
	port int
	log  string
	proc *process
}

// start starts the port mapper unless it is already running (after a
// crash of a node, the fault suite starts the node again beside the same
// epmd).
func (e *epmd) start() error {
	if e.running() {
		return nil
	}
	bin, err := rabbitmqScript("epmd")
	if err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(e.log), 0o755); err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	cmd := SystemCommand(context.Background(), bin, "-port", strconv.Itoa(e.port), "-address", "127.0.0.1")
	p, err := startProcess("epmd", cmd, e.log, nil, syscall.SIGTERM)
	if err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	e.proc = p
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(e.port))
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		if p.exited() || time.Now().After(deadline) {
			p.stop(time.Second)
			// epmd exits 0, silently, when it cannot bind its port: it
			// takes whatever holds it for another epmd.
			return fmt.Errorf("rabbitmq: epmd did not listen on %s (%s): is the port in use? ss -tanp 'sport = :%d' shows by what; its log %s ends with:\n%s",
				addr, p.exitStatus(), e.port, p.log, p.tail(5))
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

func (e *epmd) running() bool { return e.proc != nil && !e.proc.exited() }

// stop stops the port mapper, and one on its port that is not the
// runner's own: rabbitmqctl, run while the nodes were down, starts one as
// a daemon.
func (e *epmd) stop() {
	if e.proc != nil {
		e.proc.stop(5 * time.Second)
	}
	e.stopDaemon()
}

// stopDaemon stops a port mapper on the port that the runner did not start.
func (e *epmd) stopDaemon() {
	if bin, err := rabbitmqScript("epmd"); err == nil {
		SystemCommand(context.Background(), bin, "-port", strconv.Itoa(e.port), "-kill").Run()
	}
}

// logFile is where the node's output goes.
func (r *rabbitmq) logFile() string { return filepath.Join(r.dir, "rabbitmq.log") }

// url is the AMQP URL of the node.
func (r *rabbitmq) url() string {
	u := url.URL{Scheme: "amqp", User: url.UserPassword(r.user, r.pass), Host: "127.0.0.1:" + strconv.Itoa(r.amqpPort), Path: "/"}
	return u.String()
}

// waitReady waits until the node accepts AMQP connections with the lab's
// login and its management API answers.
func (r *rabbitmq) waitReady(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var last error
	for {
		if r.proc.exited() {
			return fmt.Errorf("%s exited while starting (%v); its log %s ends with:\n%s", r.part, r.proc.exitStatus(), r.proc.log, r.proc.tail(15))
		}
		last = r.ready(ctx)
		if last == nil {
			return nil
		}
		var amqpErr *amqp.Error
		if errors.As(last, &amqpErr) && amqpErr.Code == amqp.AccessRefused {
			return fmt.Errorf("%s refused the login %q: its data in %s was created with another RABBITMQ_DEFAULT_USER/PASS; run make clean to start afresh, or set the old login", r.part, r.user, r.dir)
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s did not get ready within %s (%v); see %s", r.part, limit, last, r.proc.log)
			}
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (r *rabbitmq) ready(ctx context.Context) error {
	conn, err := amqp.DialConfig(r.url(), amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
	if err != nil {
		return err
	}
	conn.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/api/overview", r.mgmtPort), nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(r.user, r.pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("management API answered %s", resp.Status)
	}
	return nil
}

// stop stops the node gracefully.
func (r *rabbitmq) stop() {
	if r.proc != nil {
		r.proc.stop(60 * time.Second)
	}
}

// kill kills the node at once, as a crash or power cut would.
func (r *rabbitmq) kill() {
	if r.proc != nil {
		r.proc.kill()
	}
}

// ctl runs rabbitmqctl against the node and returns what it printed.
func (r *rabbitmq) ctl(ctx context.Context, args ...string) (string, error) {
	ctl, err := rabbitmqScript("rabbitmqctl")
	if err != nil {
		return "", err
	}
	cmd := SystemCommand(ctx, ctl, append([]string{"-n", r.nodeName()}, args...)...)
	cmd.Env = r.env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("rabbitmqctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
