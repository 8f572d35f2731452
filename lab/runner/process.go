package runner

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is one running part of the lab: a child process in its own process
// group, so that stopping it reaches everything it started (nginx's workers)
// and so that the terminal's Ctrl-C reaches only the runner, which then stops
// the parts in order.
type process struct {
	name    string
	cmd     *exec.Cmd
	log     string         // path of the file with everything it printed
	stopSig syscall.Signal // what asks it to stop: SIGTERM, or nginx's SIGQUIT

	done chan struct{} // closed when the process has exited
	err  error         // its exit status, valid after done
}

// startProcess starts cmd with its output going to the file logPath and, when
// echo is not nil, also to echo, each line prefixed with the part's name.
// stopSig is the signal that stops it in order.
func startProcess(name string, cmd *exec.Cmd, logPath string, echo io.Writer, stopSig syscall.Signal) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	p := &process{name: name, cmd: cmd, log: logPath, stopSig: stopSig, done: make(chan struct{})}
	var copying sync.WaitGroup
	if echo == nil {
		// A plain file: nothing to copy, and no pipe that a daemon forked
		// by the process (RabbitMQ's epmd) could hold open after it exits.
		cmd.Stdout, cmd.Stderr = logFile, logFile
	} else {
		r, w, err := os.Pipe()
		if err != nil {
			logFile.Close()
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = w, w
		defer w.Close() // the child has its own copy once started
		copying.Add(1)
		go func() {
			defer copying.Done()
			defer r.Close()
			copyLines(r, logFile, echo, name)
		}()
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// Should the runner die before it has stopped the part (kill -9,
		// a crash), the kernel sends the part its stop signal: no part
		// outlives the runner. It reaches this one process only, not what
		// it starts, so each part is started as the process that does the
		// work and stops the rest: the Erlang VM itself, not a script that
		// forwards signals to it (rabbitmq.go); nginx's master, which stops
		// its workers; epmd in the foreground, not as a daemon. A service
		// whose output went through the runner dies of SIGPIPE at its
		// first log line after the runner is gone, before it has shut
		// down in order. Nothing is left running, and nothing confirmed is
		// lost: a request not yet answered got no 202, and a delivery not
		// yet acked goes back to the queue. (Linux
		// sends it when the thread that started the child ends; Go ends a
		// thread only when a goroutine locked to it exits, which the runner
		// never does.)
		Pdeathsig: stopSig,
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		copying.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// copyLines copies r to file as it is, and to echo with each line prefixed.
func copyLines(r io.Reader, file, echo io.Writer, prefix string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(file, line)
		fmt.Fprintf(echo, "%-9s | %s\n", prefix, line)
	}
	// On a line longer than the buffer, keep draining so the child never blocks.
	io.Copy(file, r)
}

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process's whole group.
func (p *process) signal(sig syscall.Signal) {
	if p.cmd.Process != nil {
		syscall.Kill(-p.cmd.Process.Pid, sig)
	}
}

// stop asks the process to stop with its stop signal and waits up to grace
// for it, then kills it. It returns once no process of the group is left.
func (p *process) stop(grace time.Duration) {
	if !p.exited() {
		p.signal(p.stopSig)
		select {
		case <-p.done:
		case <-time.After(grace):
			p.signal(syscall.SIGKILL)
			<-p.done
		}
	}
	p.waitGroupGone(grace)
}

// kill kills the process and its group at once (SIGKILL), as a crash would.
func (p *process) kill() {
	p.signal(syscall.SIGKILL)
	<-p.done
	p.waitGroupGone(10 * time.Second)
}

// waitGroupGone waits, up to limit, until no process of the group is left:
// the leader can exit a moment before what it started (the Erlang VM, nginx
// workers). Past the limit what is left is killed.
func (p *process) waitGroupGone(limit time.Duration) {
	if p.cmd.Process == nil {
		return
	}
	deadline := time.Now().Add(limit)
	for syscall.Kill(-p.cmd.Process.Pid, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	p.signal(syscall.SIGKILL)
}

// exitStatus says how the process ended, after done: "exit status 1", "exit
// status 0", or "killed by signal 9 (SIGKILL)".
func (p *process) exitStatus() string {
	if p.err == nil {
		return "exit status 0"
	}
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Sprintf("killed by signal %d (%s)", int(ws.Signal()), signalName(ws.Signal()))
		}
	}
	return p.err.Error()
}

// signalName is the name of a signal that ends a process, as kill -l
// prints it: "SIGKILL" rather than Go's "killed".
func signalName(sig syscall.Signal) string {
	names := map[syscall.Signal]string{
		syscall.SIGHUP: "SIGHUP", syscall.SIGINT: "SIGINT", syscall.SIGQUIT: "SIGQUIT",
		syscall.SIGILL: "SIGILL", syscall.SIGABRT: "SIGABRT", syscall.SIGBUS: "SIGBUS",
		syscall.SIGFPE: "SIGFPE", syscall.SIGKILL: "SIGKILL", syscall.SIGSEGV: "SIGSEGV",
		syscall.SIGPIPE: "SIGPIPE", syscall.SIGTERM: "SIGTERM",
	}
	if name, ok := names[sig]; ok {
		return name
	}
	return sig.String()
}

// tail returns the last n lines the process printed, for error messages.
func (p *process) tail(n int) string {
	data, err := os.ReadFile(p.log)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
