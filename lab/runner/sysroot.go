package runner

import (
	"context"
	"os"
	"os/exec"
)

// SysrootEnv names the variable that points the lab at another root file
// system's RabbitMQ, Erlang and nginx instead of the machine's own. make test
// sets it for its second round to a Debian forky tree (make sysroot builds
// it), so that every test also runs on the versions the compose images carry:
// RabbitMQ 4.3 and nginx 1.30.
const SysrootEnv = "LAB_SYSROOT"

// Sysroot is the root file system the lab takes RabbitMQ and nginx from, or
// "" for the machine's own.
func Sysroot() string { return os.Getenv(SysrootEnv) }

// SystemCommand is exec.CommandContext for a program that the machine's
// packages install under /usr (rabbitmq-server, rabbitmqctl, epmd, nginx).
// With a sysroot it runs in a mount namespace of its own, in which the
// sysroot's /usr is mounted over the machine's: the program, its libraries
// and every process it starts come from the sysroot, while all other paths
// (the lab's state folder, /tmp, /etc/hosts) stay the machine's. The mounts
// go when the last process in the namespace ends. Root may mount; any other
// user gets a user namespace of its own, in which it may too.
func SystemCommand(ctx context.Context, path string, args ...string) *exec.Cmd {
	root := Sysroot()
	if root == "" {
		return exec.CommandContext(ctx, path, args...)
	}
	unshare := []string{"--mount", "--propagation", "private"}
	if os.Geteuid() != 0 {
		unshare = append([]string{"--user", "--map-root-user"}, unshare...)
	}
	// The loader's cache names the machine's libraries; the sysroot's own
	// cache names its own. exec keeps the PID, so signals reach the program.
	script := `mount --bind "$0/usr" /usr && mount --bind "$0/etc/ld.so.cache" /etc/ld.so.cache && exec "$@"`
	return exec.CommandContext(ctx, "unshare", append(append(unshare, "--", "/bin/sh", "-c", script, root, path), args...)...)
}
