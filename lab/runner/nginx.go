package runner

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"pingpong/lab/gateway"
)

// nginxBin is Debian's nginx; PATH may not include /usr/sbin for a normal user.
// With a sysroot it is the sysroot's.
func nginxBin() (string, error) {
	if root := Sysroot(); root != "" {
		if _, err := os.Stat(root + "/usr/sbin/nginx"); err != nil {
			return "", fmt.Errorf("nginx: %w (%s=%s)", err, SysrootEnv, root)
		}
		return "/usr/sbin/nginx", nil
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx", nil
	}
	return "", fmt.Errorf("nginx: not found: nginx is not installed; run make deps (or apt-get install nginx)")
}

// gatewayConf is the main configuration of the native gateway: what the
// nginx image's /etc/nginx/nginx.conf provides in compose, with every path in
// the lab's state folder so nginx runs as any user. The lab's own settings
// are all in the shared template it includes.
const gatewayConf = `# Written by the native lab runner (lab/nginx.go); the gateway itself is
# conf.d/gateway.conf, rendered from nginx/templates/gateway.conf.template.
worker_processes auto;
# As many open files as worker_connections needs, each client connection
# with its upstream one: a shell's soft limit is often 1024.
worker_rlimit_nofile 8192;
pid %[1]s/nginx.pid;
error_log stderr notice;

events {
    worker_connections 4096;
}

http {
    client_body_temp_path %[1]s/tmp/client_body;
    proxy_temp_path       %[1]s/tmp/proxy;
    fastcgi_temp_path     %[1]s/tmp/fastcgi;
    uwsgi_temp_path       %[1]s/tmp/uwsgi;
    scgi_temp_path        %[1]s/tmp/scgi;

    include %[1]s/conf.d/*.conf;
}
`

// nginx is the lab's gateway, run from a folder of its own.
type nginx struct {
	dir       string // configuration, pid and temp files
	template  string // the repository's nginx/templates/gateway.conf.template
	vars      map[string]string
	accessLog string
	proc      *process
}

// render writes the gateway's configuration and checks it with nginx -t.
func (n *nginx) render() (bin string, err error) {
	bin, err = nginxBin()
	if err != nil {
		return "", err
	}
	tmpl, err := os.ReadFile(n.template)
	if err != nil {
		return "", fmt.Errorf("nginx: %w", err)
	}
	conf, err := gateway.Render(string(tmpl), n.vars, gateway.Filter)
	if err != nil {
		return "", fmt.Errorf("nginx: %w", err)
	}
	for _, d := range []string{"conf.d", "tmp"} {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o755); err != nil {
			return "", fmt.Errorf("nginx: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(n.dir, "conf.d", "gateway.conf"), []byte(conf), 0o644); err != nil {
		return "", fmt.Errorf("nginx: %w", err)
	}
	if err := os.WriteFile(filepath.Join(n.dir, "nginx.conf"), []byte(fmt.Sprintf(gatewayConf, n.dir)), 0o644); err != nil {
		return "", fmt.Errorf("nginx: %w", err)
	}
	if out, err := SystemCommand(context.Background(), bin, n.args("-t")...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("nginx: the rendered configuration %s is invalid: %s", filepath.Join(n.dir, "conf.d", "gateway.conf"), out)
	}
	return bin, nil
}

func (n *nginx) args(extra ...string) []string {
	return append([]string{"-p", n.dir, "-c", filepath.Join(n.dir, "nginx.conf"), "-e", "stderr"}, extra...)
}

func (n *nginx) start(logPath string, echo io.Writer) error {
	bin, err := n.render()
	if err != nil {
		return err
	}
	cmd := SystemCommand(context.Background(), bin, n.args("-g", "daemon off;")...)
	p, err := startProcess("nginx", cmd, logPath, echo, syscall.SIGQUIT) // nginx's graceful shutdown (SIGTERM is its fast one)
	if err != nil {
		return err
	}
	n.proc = p
	return nil
}

// reload makes nginx re-read its configuration without dropping connections.
func (n *nginx) reload() error {
	bin, err := n.render()
	if err != nil {
		return err
	}
	old := n.workers()
	if out, err := SystemCommand(context.Background(), bin, n.args("-s", "reload")...).CombinedOutput(); err != nil {
		return fmt.Errorf("nginx -s reload: %w: %s", err, out)
	}
	// The signal returns at once. Until the old workers close their
	// listening sockets, a new connection may still land on one of them and
	// be closed after it: wait until each has gone or is shutting down.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		current := n.workers()
		waiting := false
		for pid := range old {
			if title, ok := current[pid]; ok && !strings.Contains(title, "shutting down") {
				waiting = true
			}
		}
		if !waiting {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("nginx -s reload: the old workers still accept connections after 10 s")
}

// workers returns the pids and titles of nginx's worker processes: every
// process of the master's process group whose title names a worker.
func (n *nginx) workers() map[int]string {
	if n.proc == nil || n.proc.cmd.Process == nil {
		return nil
	}
	group := strconv.Itoa(n.proc.cmd.Process.Pid)
	workers := map[int]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command name, which may hold spaces: state,
		// ppid, pgrp.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) < 3 || f[2] != group {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if title := string(cmdline); strings.Contains(title, "worker process") {
			workers[pid] = title
		}
	}
	return workers
}

func (n *nginx) stop() {
	if n.proc != nil {
		n.proc.stop(10 * time.Second)
	}
}

// gatewayVars are the template's variables for the native lab.
func gatewayVars(cfg Config, accessLog string) map[string]string {
	return map[string]string{
		"GATEWAY_LISTEN":         net.JoinHostPort(cfg.GatewayAddress, strconv.Itoa(cfg.GatewayPort)),
		"GATEWAY_ACCESS_LOG":     accessLog,
		"GATEWAY_RATE_LIMIT":     cfg.RateLimit,
		"GATEWAY_RATE_BURST":     strconv.Itoa(cfg.RateBurst),
		"GATEWAY_CLIENT_TIMEOUT": cfg.ClientTimeout,
		"SERVICE01_ADDR":         "127.0.0.1:" + strconv.Itoa(cfg.Service01Port),
		"SERVICE02_ADDR":         "127.0.0.1:" + strconv.Itoa(cfg.Service02Port),
	}
}
