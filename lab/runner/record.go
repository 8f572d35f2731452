package runner

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// While a lab runs, its runner records in the state folder what it started:
// its own pid, and each part's pid, ports and stop signal. The record is the
// way out when a lab was left running anyway (by an older runner, or a
// machine that went down mid-stop): `lab stop` stops what it names, and a
// port clash at the next start says whether the port's holder is this
// checkout's own lab. Each runner writes a file of its own, named for its
// pid, since two labs on different ports may share one state folder.

// runRecord is one runner's record.
type runRecord struct {
	Boot   string            `json:"boot"` // the boot it was written in: pids mean nothing after a reboot
	Runner recordedProcess   `json:"runner"`
	Parts  []recordedProcess `json:"parts"` // in start order
}

// bootID names the machine's current boot.
func bootID() string {
	id, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(id))
}

// recordedProcess is a process that leads a process group of its own. Its
// start time (in clock ticks since boot, from /proc) tells it from a later
// process that got the same pid.
type recordedProcess struct {
	Name    string `json:"name"`
	PID     int    `json:"pid"`
	Start   uint64 `json:"start"`
	Ports   []int  `json:"ports,omitempty"`
	StopSig int    `json:"stop_signal,omitempty"`
}

func recordDir(state string) string { return filepath.Join(state, "running") }

// writeRecord replaces the runner's record with the parts running now, or
// removes it when none is left.
func (l *Lab) writeRecord() error {
	path := filepath.Join(recordDir(l.state), strconv.Itoa(os.Getpid())+".json")
	var rec runRecord
	for _, part := range l.started {
		for _, pp := range l.partProcesses(part) {
			if pp.proc == nil || pp.proc.exited() || pp.proc.cmd.Process == nil {
				continue
			}
			pid := pp.proc.cmd.Process.Pid
			rec.Parts = append(rec.Parts, recordedProcess{Name: pp.proc.name, PID: pid, Start: startTime(pid), Ports: pp.ports, StopSig: int(pp.proc.stopSig)})
		}
	}
	if len(rec.Parts) == 0 {
		err := os.Remove(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	rec.Boot = bootID()
	rec.Runner = recordedProcess{Name: "runner", PID: os.Getpid(), Start: startTime(os.Getpid())}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(recordDir(l.state), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// partProcess is a process of a part and the ports it listens on.
type partProcess struct {
	proc  *process
	ports []int
}

// partProcesses are the processes of one part: RabbitMQ has its nodes and
// their port mapper.
func (l *Lab) partProcesses(part string) []partProcess {
	switch part {
	case "rabbitmq":
		var pp []partProcess
		for _, n := range l.broker.nodes {
			pp = append(pp, partProcess{n.proc, []int{n.amqpPort, n.mgmtPort, n.distPort}})
		}
		return append(pp, partProcess{l.broker.epmd.proc, []int{l.broker.epmd.port}})
	case "nginx":
		return []partProcess{{l.gateway.proc, []int{l.cfg.GatewayPort}}}
	default:
		return []partProcess{{l.services[part].proc, []int{l.services[part].port}}}
	}
}

// readRecords reads every record in the state folder, with the path of each.
// A record from an earlier boot is removed: nothing it names still runs.
func readRecords(state string) (map[string]runRecord, error) {
	paths, err := filepath.Glob(filepath.Join(recordDir(state), "*.json"))
	if err != nil {
		return nil, err
	}
	recs := map[string]runRecord{}
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var rec runRecord
		if err := json.Unmarshal(data, &rec); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if rec.Boot != bootID() {
			os.Remove(path)
			continue
		}
		recs[path] = rec
	}
	return recs, nil
}

// pruneRecords removes the records of runners that are gone and left
// nothing running (a runner killed with SIGKILL cannot remove its own).
func pruneRecords(state string) {
	recs, _ := readRecords(state)
	for path, rec := range recs {
		if rec.Runner.alive() {
			continue
		}
		left := false
		for _, p := range rec.Parts {
			left = left || p.alive() || p.leftBehind()
		}
		if !left {
			os.Remove(path)
		}
	}
}

// startTime is the start time of the process pid in clock ticks since boot
// (field 22 of /proc/PID/stat), or 0 when there is no such process or it has
// exited (a zombie, waiting for its parent to read its exit status).
func startTime(pid int) uint64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 20 || fields[0] == "Z" {
		return 0
	}
	t, _ := strconv.ParseUint(fields[19], 10, 64)
	return t
}

// alive reports whether the recorded process still runs: the same pid,
// started at the same time.
func (p recordedProcess) alive() bool {
	return p.PID > 0 && p.Start != 0 && startTime(p.PID) == p.Start
}

// leftBehind reports whether the recorded process is gone but members of
// its process group are not (nginx's workers, once their master is
// killed). No process has the pid now, and while any process is in a
// group the kernel gives no new process the group's id: so the group is
// still the one the record names.
func (p recordedProcess) leftBehind() bool {
	if p.PID <= 0 {
		return false
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(p.PID)); err == nil {
		return false // alive, or a new process with its pid: not ours to kill
	}
	return syscall.Kill(-p.PID, 0) == nil
}

// holderOf names the part of a running lab recorded in state that listens
// on port, or "" when none does.
func holderOf(state string, port int) string {
	recs, err := readRecords(state)
	if err != nil {
		return ""
	}
	for _, rec := range recs {
		for _, p := range rec.Parts {
			if slices.Contains(p.Ports, port) && p.alive() {
				return fmt.Sprintf("%s, pid %d", p.Name, p.PID)
			}
		}
	}
	return ""
}

// StopRecorded stops every lab recorded in the state folder: a runner still
// running is asked to stop its lab, as Ctrl-C in its terminal would; the
// parts of a runner that is gone are stopped one by one, in reverse order,
// each with its stop signal and, past grace, SIGKILL. It says on w what it
// did.
func StopRecorded(state string, w io.Writer, grace time.Duration) error {
	recs, err := readRecords(state)
	if err != nil {
		return err
	}
	stopped := 0
	for path, rec := range recs {
		if rec.Runner.alive() {
			stopped++
			fmt.Fprintf(w, "Asking the lab's runner (pid %d) to stop the lab...\n", rec.Runner.PID)
			syscall.Kill(rec.Runner.PID, syscall.SIGTERM)
			// The runner stops the parts in order, the broker last, and
			// removes its record; what it has left, if anything, is
			// stopped below.
			if !waitGone(rec.Runner, 2*grace) {
				fmt.Fprintf(w, "The runner (pid %d) did not stop within %s; stopping the parts it left.\n", rec.Runner.PID, 2*grace)
			}
		}
		for _, p := range slices.Backward(rec.Parts) {
			if !p.alive() {
				if p.leftBehind() && syscall.Kill(-p.PID, syscall.SIGKILL) == nil {
					fmt.Fprintf(w, "Killed what was left of %s (process group %d).\n", p.Name, p.PID)
					stopped++
				}
				continue
			}
			sig := syscall.Signal(p.StopSig)
			if sig == 0 {
				sig = syscall.SIGTERM
			}
			syscall.Kill(-p.PID, sig)
			how := "stopped"
			if !waitGone(p, grace) {
				syscall.Kill(-p.PID, syscall.SIGKILL)
				waitGone(p, grace)
				how = "killed"
			}
			fmt.Fprintf(w, "%s %s (pid %d), left running by an earlier run.\n", strings.ToUpper(how[:1])+how[1:], p.Name, p.PID)
			stopped++
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if stopped == 0 {
		fmt.Fprintf(w, "No lab of this checkout is running (nothing is recorded in %s).\n", recordDir(state))
		return nil
	}
	fmt.Fprintln(w, "The lab is stopped.")
	return nil
}

// waitGone waits up to limit for the recorded process to be gone.
func waitGone(p recordedProcess, limit time.Duration) bool {
	for deadline := time.Now().Add(limit); p.alive(); {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	return true
}

// KillRecordedNode kills, with SIGKILL, the RabbitMQ node named node
// (lab-5673@localhost) of a lab recorded in the state folder, as a crash
// would, waits until it is gone, and says so on w. The runner running it
// notices and, in a cluster, starts it again (Lab.Wait).
func KillRecordedNode(state, node string, w io.Writer) error {
	port, ok := nodePort(node)
	if !ok {
		return fmt.Errorf("%q is not a node of the lab: its nodes are named lab-PORT@localhost, PORT being the node's AMQP port (make run's banner lists them)", node)
	}
	recs, err := readRecords(state)
	if err != nil {
		return err
	}
	for _, rec := range recs {
		for _, p := range rec.Parts {
			if !strings.HasPrefix(p.Name, "rabbitmq") || len(p.Ports) == 0 || p.Ports[0] != port || !p.alive() {
				continue
			}
			if err := syscall.Kill(-p.PID, syscall.SIGKILL); err != nil {
				return fmt.Errorf("kill node %s (pid %d): %w", node, p.PID, err)
			}
			if !waitGone(p, 10*time.Second) {
				return fmt.Errorf("node %s (pid %d) is still there 10 s after SIGKILL", node, p.PID)
			}
			fmt.Fprintf(w, "Killed node %s (%s, pid %d) with SIGKILL.\n", node, p.Name, p.PID)
			return nil
		}
	}
	return fmt.Errorf("no running lab of this checkout has a node %s (make run's banner lists its nodes; a node killed a moment ago is down until the runner starts it again)", node)
}

// nodePort is the AMQP port in a node's name, lab-PORT@localhost.
func nodePort(node string) (int, bool) {
	name, host, ok := strings.Cut(node, "@")
	if !ok || host != "localhost" {
		return 0, false
	}
	digits, ok := strings.CutPrefix(name, "lab-")
	if !ok {
		return 0, false
	}
	port, err := strconv.Atoi(digits)
	return port, err == nil && port > 0 && port < 65536
}

// RecordedBroker is what a running lab recorded in the state folder says
// of its broker whose first node listens on AMQP port amqpPort: its number
// of nodes and its port mapper's port; ok is false when no running lab has
// such a broker. lab ctl, run without the lab's RABBITMQ_NODES=3, or beside
// a test's lab whose port mapper is on a port of its own, finds the broker
// with it.
func RecordedBroker(state string, amqpPort int) (nodes, epmdPort int, ok bool) {
	recs, err := readRecords(state)
	if err != nil {
		return 0, 0, false
	}
	for _, rec := range recs {
		if !rec.Runner.alive() {
			continue
		}
		nodes, epmdPort, ok = 0, 0, false
		for _, p := range rec.Parts {
			if len(p.Ports) == 0 {
				continue
			}
			switch {
			case p.Name == "epmd":
				epmdPort = p.Ports[0]
			case p.Name == "rabbitmq" || strings.HasPrefix(p.Name, "rabbitmq-"):
				nodes++
				ok = ok || (p.Name == "rabbitmq" || p.Name == "rabbitmq-1") && p.Ports[0] == amqpPort
			}
		}
		if ok {
			return nodes, epmdPort, true
		}
	}
	return 0, 0, false
}
