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

// rabbitmq is the lab's own RabbitMQ node: its own node name, ports, data
// folder and Erlang port mapper, so it never meets a system-wide broker.
type rabbitmq struct {
	dir      string // data, logs and the Erlang cookie
	confDir  string // the repository's rabbitmq/ folder
	amqpPort int
	mgmtPort int
	distPort int // Erlang distribution (rabbitmqctl talks to the node on it)
	epmdPort int // the node's own epmd, stopped with the node
	user     string
	pass     string
	proc     *process // the Erlang VM running the node
	epmd     *process // the node's port mapper
}

func (r *rabbitmq) nodeName() string { return "lab-" + strconv.Itoa(r.amqpPort) + "@localhost" }

// env is the environment of the node and of rabbitmqctl.
func (r *rabbitmq) env() []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + r.dir, // the Erlang cookie lives here
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
		"ERL_EPMD_PORT=" + strconv.Itoa(r.epmdPort),
		"ERL_EPMD_ADDRESS=127.0.0.1",
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
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

// start writes the node's configuration (the repository's rabbitmq.conf with
// the lab's listeners appended) and starts the node.
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
	if err := os.WriteFile(filepath.Join(r.dir, "rabbitmq.conf"), []byte(conf), 0o644); err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	if err := r.startEPMD(); err != nil {
		return err
	}
	cmd := SystemCommand(context.Background(), server)
	cmd.Env, cmd.Dir = r.env(), r.dir
	// RabbitMQ's own log is long; it goes to its file only, never the terminal.
	p, err := startProcess("rabbitmq", cmd, r.logFile(), nil, syscall.SIGTERM)
	if err != nil {
		r.epmd.stop(5 * time.Second)
		return err
	}
	r.proc = p
	return nil
}

// startEPMD starts the node's port mapper in the foreground, as a part of
// its own, unless it is already running (after a crash of the node, the
// fault suite starts the node again beside the same epmd). Left to the
// node, epmd would start as a daemon that leaves the runner's process
// groups, and outlive a runner that was killed.
func (r *rabbitmq) startEPMD() error {
	if r.epmd != nil && !r.epmd.exited() {
		return nil
	}
	epmd, err := rabbitmqScript("epmd")
	if err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	cmd := SystemCommand(context.Background(), epmd, "-port", strconv.Itoa(r.epmdPort), "-address", "127.0.0.1")
	p, err := startProcess("epmd", cmd, filepath.Join(r.dir, "epmd.log"), nil, syscall.SIGTERM)
	if err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	r.epmd = p
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(r.epmdPort))
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
				addr, p.exitStatus(), r.epmdPort, p.log, p.tail(5))
		}
		time.Sleep(20 * time.Millisecond) // poll interval
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
			return fmt.Errorf("rabbitmq exited while starting (%v); its log %s ends with:\n%s", r.proc.exitStatus(), r.proc.log, r.proc.tail(15))
		}
		last = r.ready(ctx)
		if last == nil {
			return nil
		}
		var amqpErr *amqp.Error
		if errors.As(last, &amqpErr) && amqpErr.Code == amqp.AccessRefused {
			return fmt.Errorf("rabbitmq refused the login %q: its data in %s was created with another RABBITMQ_DEFAULT_USER/PASS; run make clean to start afresh, or set the old login", r.user, r.dir)
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("rabbitmq did not get ready within %s (%v); see %s", limit, last, r.proc.log)
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

// stop stops the node gracefully, then its port mapper.
func (r *rabbitmq) stop() {
	if r.proc != nil {
		r.proc.stop(60 * time.Second)
	}
	if r.epmd != nil {
		r.epmd.stop(5 * time.Second)
	}
	r.stopEPMD()
}

// kill kills the node at once, as a crash or power cut would.
func (r *rabbitmq) kill() {
	if r.proc != nil {
		r.proc.kill()
	}
}

// stopEPMD stops a port mapper on the node's port that is not the runner's
// own: rabbitmqctl, run while the node was down, starts one as a daemon.
func (r *rabbitmq) stopEPMD() {
	if epmd, err := rabbitmqScript("epmd"); err == nil {
		SystemCommand(context.Background(), epmd, "-port", strconv.Itoa(r.epmdPort), "-kill").Run()
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
